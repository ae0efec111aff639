"""The package's shape: dependencies declared, stage contracts kept, no module importing itself round a loop.

deptry checks that every import of `newsletter/` and `dags/` is a declared dependency and every declared
dependency is imported ([tool.deptry]). `lint-imports` checks the stage contracts ([tool.importlinter]: stages
import only earlier stages, no sibling cycles, no Airflow in the library). The cycle check below is stricter
than import-linter's sibling check: it looks at every module of `newsletter`, at any depth and across
packages, imports inside functions included, and names the loop it finds.
"""

from __future__ import annotations

import subprocess
import sys

import grimp
import pytest

from tests.conftest import ROOT


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one concrete loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                loops.append(_loop_through(graph, sorted(component)))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(loops)


def _loop_through(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    """One loop inside a strongly connected component: from its first module to a module it imports, and back."""
    first = component[0]
    for imported in sorted(graph.find_modules_directly_imported_by(first)):
        if imported in component:
            back = graph.find_shortest_chain(importer=imported, imported=first)
            if back:
                return [first, *back]
    return component  # unreachable for a real component; still names the modules


def test_dependencies_are_declared_and_used():
    proc = subprocess.run([sys.executable, "-m", "deptry", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stage_contracts_hold():
    """Stages import only earlier ones; no sibling cycles; the library never imports Airflow (pyproject.toml).
    In a child process: lint-imports configures logging (disabling the loggers that exist), which would silence
    the library's loggers for every later test of this session."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("newsletter", cache_dir=None)
    assert len(graph.modules) > 30  # the whole package was read
    loops = import_cycles(graph)
    assert loops == [], "import cycles: " + "; ".join(" -> ".join(loop) for loop in loops)


@pytest.mark.parametrize(
    ("imports", "expected"),
    [
        ([("a", "b"), ("b", "c")], []),
        ([("a", "b"), ("b", "a")], [["a", "b", "a"]]),
        ([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")], [["a", "b", "c", "a"]]),
        ([("a", "b"), ("b", "a"), ("x", "y"), ("y", "x")], [["a", "b", "a"], ["x", "y", "x"]]),
    ],
)
def test_cycle_finder_names_the_loop(imports, expected):
    graph = grimp.ImportGraph()
    for importer, imported in imports:
        graph.add_import(importer=importer, imported=imported)
    assert import_cycles(graph) == expected
