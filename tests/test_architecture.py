"""The house rules that a reader relies on: imports form no circle, pipelines stay small, the CLI
imports plainly, and library code leaves process-wide state alone."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"mertk": ROOT / "toolkit", "mertk.pipelines": ROOT / "pipelines"}
PIPELINE_LINE_LIMIT = 400


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """mertk modules that `name` imports anywhere in its file (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import mertk.a.b.C` -> module mertk.a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_the_import_walk_sees_the_package():
    graph = import_graph()
    assert "mertk.cli.app" in graph and "mertk.shards.manifest" in graph
    # the walk follows plain imports: the CLI reaches every command module without importlib lists
    assert {"mertk.cli.validate", "mertk.cli.train", "mertk.cli.build_unimer"} <= graph["mertk.cli.app"]
    assert "mertk.shards.io" in graph["mertk.shards.manifest"]


def test_the_cycle_finder_finds_a_planted_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    circles = _cycles(import_graph())
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_cli_and_library_do_not_load_modules_by_name():
    """Only execution/ may import by name (warming up a later stage's imports in a thread)."""
    offenders = [
        str(path.relative_to(ROOT)) for name, path in _modules().items()
        if not name.startswith("mertk.execution") and "importlib.import_module" in path.read_text(encoding="utf-8")
    ]
    assert not offenders, f"modules loaded by name (a reader cannot follow them): {offenders}"


@pytest.mark.parametrize("path", sorted((ROOT / "pipelines").glob("*.py")), ids=lambda p: p.name)
def test_pipelines_only_compose_stages(path: Path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines < PIPELINE_LINE_LIMIT, f"{path.name}: {lines} lines; the method belongs in toolkit/"


def test_library_code_changes_no_process_wide_state():
    """Signal handlers, malloc settings and the multiprocessing start method belong to the program,
    not to a library a notebook imports; execution/ may scope such a change, nothing else may."""
    patterns = ("signal.signal(", "mallopt", "set_start_method(")
    offenders = [
        f"{path.relative_to(ROOT)}: {pattern}"
        for name, path in _modules().items() if not name.startswith("mertk.execution")
        for pattern in patterns if pattern in path.read_text(encoding="utf-8")
    ]
    assert not offenders, offenders
