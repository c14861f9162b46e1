"""Property tests (hypothesis) of every event schema's decode path: total, and faithful.

- any bytes decode to an event or an EventError, never any other exception, for every schema;
- any JSON value (nested, huge numbers, wrong types) likewise;
- every documented example survives any one field being dropped, retyped or replaced: an event
  (still valid) or an EventError naming a field;
- a valid event re-encodes to bytes that decode to the same event;
- a dead letter of anything is valid, bounded, and describes the original.
"""

from __future__ import annotations

import hashlib
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import EventError
from pipeline.events import EVENT_TYPES, MAX_DEAD_PAYLOAD_BYTES, DeadLetter, Event
from pipeline.topics import REPO_ROOT

SCHEMAS = sorted(EVENT_TYPES.values(), key=lambda cls: cls.__name__)
DOC = (REPO_ROOT / "docs" / "events.md").read_text()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


def examples() -> list[tuple[type[Event], dict]]:
    found = []
    for section in re.split(r"^## ", DOC, flags=re.MULTILINE)[1:]:
        name = section.split()[0]
        for block in re.findall(r"```json\n(.*?)```", section, flags=re.DOTALL):
            found.append((EVENT_TYPES[name], json.loads(block)))
    return found


EXAMPLES = examples()


def decode(schema: type[Event], raw: bytes) -> Event | None:
    """The event, or None for an EventError; any other exception fails the property."""
    try:
        return schema.from_bytes(raw)
    except EventError:
        return None


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(schema=st.sampled_from(SCHEMAS), raw=st.binary(max_size=300))
def test_any_bytes_give_an_event_or_an_event_error(schema, raw):
    decode(schema, raw)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(schema=st.sampled_from(SCHEMAS), value=json_values)
def test_any_json_gives_an_event_or_an_event_error(schema, value):
    decode(schema, json.dumps(value, allow_nan=True).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    example=st.sampled_from(EXAMPLES),
    data=st.data(),
    replacement=json_values,
    drop=st.booleans(),
)
def test_a_documented_example_with_one_field_changed_is_valid_or_refused_by_name(
    example, data, replacement, drop
):
    schema, fields = example
    name = data.draw(st.sampled_from(sorted(fields)))
    changed = dict(fields)
    if drop:
        del changed[name]
    else:
        changed[name] = replacement
    raw = json.dumps(changed, allow_nan=True).encode()
    event = decode(schema, raw)
    if event is None:
        try:
            schema.from_bytes(raw)
        except EventError as exc:
            assert str(exc).startswith(schema.__name__)
    else:
        assert schema.from_bytes(event.to_bytes()) == event  # what is accepted re-encodes


@settings(max_examples=100)
@given(example=st.sampled_from(EXAMPLES))
def test_a_valid_event_round_trips(example):
    schema, fields = example
    event = schema.from_bytes(json.dumps(fields).encode())
    assert schema.from_bytes(event.to_bytes()) == event


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.text(max_size=300),
    key=st.none() | st.binary(max_size=3000),
    value=st.none() | st.binary(max_size=200_000),
    reason=st.text(max_size=5000),
    partition=st.none() | st.integers(min_value=0, max_value=1000),
)
def test_a_dead_letter_of_anything_is_valid_bounded_and_describes_the_original(
    topic, key, value, reason, partition
):
    letter = DeadLetter.of(topic, partition, 7, key, value, reason=reason, stage="t", at=1.0)
    encoded = letter.to_bytes()
    assert DeadLetter.from_bytes(encoded) == letter
    assert len(encoded) < 4 * MAX_DEAD_PAYLOAD_BYTES + 50_000
    if value is not None:
        assert letter.payload_bytes == len(value)
        assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()
        assert letter.payload_truncated == (len(value) > MAX_DEAD_PAYLOAD_BYTES)
