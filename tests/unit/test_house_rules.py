"""Rules of the house, read from the source (every import, also inside functions).

- `producers/` imports only the wire contract and config: `pipeline.{events,topics,settings,
  errors}`, so a Dom0 or a guest never pulls in the worker;
- `pipeline/policy/` imports nothing that does I/O: the policies are pure functions over a
  snapshot, so the live dispatcher and the simulator can call the same code;
- no two modules import each other, however indirectly (no import cycles).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "producers", "benchmarks")

#: What producers may import of the pipeline.
PRODUCER_CONTRACT = {"pipeline.events", "pipeline.topics", "pipeline.settings", "pipeline.errors"}
#: What the policies may import beyond the standard library.
POLICY_MAY_IMPORT = {"pipeline.policy", "pipeline.events", "pipeline.errors"}
#: Standard-library modules that do I/O, which no policy may touch.
IO_MODULES = {"socket", "subprocess", "os", "time", "asyncio", "urllib", "http", "threading"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports(path: Path, name: str) -> Iterator[str]:
    """Every module an import statement in `path` names (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:  # `from pipeline import events` imports a module too
                yield f"{base}.{alias.name}"


MODULES = modules()


def own_imports(name: str) -> set[str]:
    """The project's modules that module `name` imports."""
    return {target for target in imports(MODULES[name], name) if target in MODULES}


def test_producers_import_only_the_wire_contract_and_config():
    offenders = {
        name: sorted(
            target
            for target in imports(path, name)
            if target.startswith("pipeline")
            and not any(target == c or target.startswith(c + ".") for c in PRODUCER_CONTRACT)
        )
        for name, path in MODULES.items()
        if name.startswith("producers")
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_policies_import_nothing_that_does_io():
    offenders = {}
    for name, path in MODULES.items():
        if not name.startswith("pipeline.policy"):
            continue
        bad = sorted(
            target
            for target in imports(path, name)
            if (target.split(".")[0] in PACKAGES or target.split(".")[0] in IO_MODULES)
            and not any(target == m or target.startswith(m + ".") for m in POLICY_MAY_IMPORT)
            and target.split(".")[0] != "__future__"
        )
        third_party = sorted(
            target
            for target in imports(path, name)
            if target.split(".")[0] in {"faust", "aiokafka", "kafka", "libvirt", "mode"}
        )
        if bad or third_party:
            offenders[name] = bad + third_party
    assert offenders == {}


def cycles() -> list[list[str]]:
    """Every import cycle among the project's modules (Tarjan's strongly connected sets)."""
    graph = {name: own_imports(name) - {name} for name in MODULES}
    # A package's __init__ re-exporting its own modules is not a cycle of design.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from pipeline.events import IoSample", {"pipeline.events", "pipeline.events.IoSample"}),
        ("from . import view", {"pipeline.fleet", "pipeline.fleet.view"}),
        ("import faust", {"faust"}),
    ],
)
def test_imports_are_read_as_written(tmp_path, source, expected):
    path = tmp_path / "consumer.py"
    path.write_text(source)
    assert set(imports(path, "pipeline.fleet.consumer")) == expected
