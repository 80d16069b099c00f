"""The package's import graph: no cycles, and the low-level modules stay low.

Imports are read from the source (ast), including those inside functions, which run later but
still tie the modules together. Those under `if TYPE_CHECKING:` never run: they name a type for
annotations alone (resume's functions take a Trainer), so they are no edge of the graph.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "facegan"
TYPE_CHECKING = ("TYPE_CHECKING", "typing.TYPE_CHECKING")
# The low-level modules and the only facegan modules each may import. errors is the lowest;
# config takes the image sizes from images, so that one check serves settings and images alike;
# refcache takes only the cache folder and the atomic write from data. checkpoint rebuilds
# facegan's generator; the history file and the run lock take only its atomic writes; a run's
# batches need the ranks' shares and the image conversion.
LOW_LEVEL = {
    "errors": set(),
    "images": {"errors"},
    "runtime": {"errors"},
    "config": {"errors", "images"},
    "refcache": {"data"},
    "checkpoint": {"errors", "models"},
    "history": {"checkpoint"},
    "runlock": {"checkpoint", "errors"},
    "batches": {"distributed", "errors", "images"},
}


def facegan_imports(path: Path) -> set[str]:
    """The facegan modules a file imports, by name ("__init__" for the package itself)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    tree = ast.parse(path.read_text())
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in TYPE_CHECKING
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "facegan":
            names = [f"facegan.{alias.name}" for alias in node.names]  # modules, or __init__'s
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "facegan":
                continue
            found.add(parts[1] if len(parts) > 1 and parts[1] in modules else "__init__")
    found.discard(path.stem)
    return found


def import_graph() -> dict[str, set[str]]:
    return {path.stem: facegan_imports(path) for path in sorted(PACKAGE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_lazy_imports_and_every_import_form():
    graph = import_graph()
    assert "attributes" in graph["evaluate"]  # imported inside Evaluator.__call__
    assert "synthfaces" in graph["data"]  # `from facegan import synthfaces`, in a function
    assert "trainer" in graph["__main__"]  # `from facegan.trainer import Trainer`
    assert "history" in graph["resume"] and "trainer" not in graph["resume"]  # type only


def test_no_module_of_the_package_imports_itself_back():
    assert find_cycle(import_graph()) is None


def test_low_level_modules_import_nothing_above_them():
    graph = import_graph()
    for module, allowed in LOW_LEVEL.items():
        assert graph[module] <= allowed, f"{module} imports {sorted(graph[module] - allowed)}"
