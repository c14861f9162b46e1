"""Every JSON example in docs/events.md is valid for the schema of its section."""

import json
import re

from pipeline.events import EVENT_TYPES
from pipeline.topics import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "events.md").read_text()


def _examples() -> list[tuple[str, str]]:
    found = []
    for section in re.split(r"^## ", DOC, flags=re.MULTILINE)[1:]:
        name = section.split()[0]
        for block in re.findall(r"```json\n(.*?)```", section, flags=re.DOTALL):
            found.append((name, block))
    return found


def test_every_schema_has_a_documented_example():
    assert {name for name, _ in _examples()} == set(EVENT_TYPES)


def test_every_example_validates():
    for name, block in _examples():
        EVENT_TYPES[name].from_dict(json.loads(block))
