"""The house's imports run one way: no package imports itself in a circle, and convert reads train's run folder alone.

Read from the source (nothing is imported), counting imports inside functions too: one
there that only keeps TensorFlow lazy is fine, one that hides a circle is not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("train", "convert", "cxr_edge")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """Modules of the house that ``tree`` imports at run time (``if TYPE_CHECKING:`` blocks left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    files = {".".join(path.relative_to(ROOT).with_suffix("").parts): path
             for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    files = {name.removesuffix(".__init__"): path for name, path in files.items()}
    modules = set(files)
    return {name: _imports(ast.parse(path.read_text()), modules) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target in PACKAGES:  # a package's face (__init__) hands names on; its own imports are its modules'
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if not state.get(target):
                cycle = walk(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            cycle = walk(node)
            if cycle:
                return cycle
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_itself_in_no_circle(package):
    graph = {name: targets for name, targets in import_graph().items() if name.split(".")[0] == package}
    assert find_cycle(graph) is None


def test_convert_reads_train_through_the_run_folder_module_alone():
    """Even a split remade from its seed (``add_gate``, ``add_views``) comes through ``train.rundir``."""
    allowed = {"train.rundir"}
    reached = {target for name, targets in import_graph().items() if name.startswith("convert")
               for target in targets if target.split(".")[0] == "train"}
    assert reached <= allowed


def test_the_edge_package_imports_no_training_code():
    reached = {target for name, targets in import_graph().items() if name.startswith("cxr_edge")
               for target in targets if target.split(".")[0] in ("train", "convert")}
    assert not reached


def test_the_cycle_finder_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_convert_reads_labelled_folders_without_the_evaluation():
    reached = {target for name, targets in import_graph().items() if name.startswith("convert") for target in targets}
    assert "cxr_edge.review.evaluate" not in reached


#: The command layer offers the review tools (``cxr-edge evaluate``); it is not the core.
COMMAND_LAYER = {"cxr_edge.cli", "cxr_edge.__main__"}


def _is_part_of(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_edge_core_never_imports_the_review_tools_or_the_test_films():
    """The per-film path (discover, decode, interpreter, decision, report, page) runs on a Pi without the tools that
    read labelled folders; those may import the core, never the other way."""
    core = {name: targets for name, targets in import_graph().items()
            if _is_part_of(name, "cxr_edge") and name not in COMMAND_LAYER
            and not _is_part_of(name, "cxr_edge.review") and not _is_part_of(name, "cxr_edge.testing")}
    reached = {(name, target) for name, targets in core.items() for target in targets
               if _is_part_of(target, "cxr_edge.review") or _is_part_of(target, "cxr_edge.testing")}
    assert core and not reached
