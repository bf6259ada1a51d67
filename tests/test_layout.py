"""The house rules of the code's layout (issue #19): no import cycles, one direction between the library's
layers, and modules short enough to read in one sitting.

Every ``.py`` file under ``as_ai/``, ``space/`` and ``train/`` is parsed; every import of a project module
counts, including imports inside functions (a lazy import is still a dependency), except those under
``if TYPE_CHECKING:``. A ``from package import name`` where ``name`` is a submodule counts as importing that
submodule (and not the package, unless another name comes from the package itself).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("as_ai", "space", "train")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "demo_models" not in path.parts:
                found[_module_name(path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, anywhere in its file but ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(stem + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules.keys()
            out.update(submodules)
            if len(submodules) < len(node.names):  # some names are the module's (or package's) own
                out.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    if name.startswith("space."):  # the Space runs with space/ as its root: `import ui.x` is space.ui.x
        out |= {f"space.{m}" for m in out if f"space.{m}" in modules}
    return {m for m in out if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _loop(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One import loop through a strongly connected component, as a path that ends where it starts."""
    inside = set(component)
    start = component[0]
    path, seen = [start], {start}

    def walk(v: str) -> bool:
        for w in sorted(graph[v] & inside):
            if w == start:
                path.append(w)
                return True
            if w not in seen:
                seen.add(w)
                path.append(w)
                if walk(w):
                    return True
                path.pop()
        return False

    walk(start)
    return path


def test_no_import_cycles():
    graph = _graph()
    cycles = [" -> ".join(_loop(graph, c)) for c in _cycles(graph)]
    assert not cycles, "import cycles (move the shared part into a module both can import): " + "; ".join(cycles)


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _loop(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_resolved_as_python_does(tmp_path):
    modules = {m: tmp_path for m in ("pkg", "pkg.sub", "pkg.sub.deep", "pkg.other", "pkg.sub.mod")}
    src = tmp_path / "mod.py"
    src.write_text("from . import deep\nfrom .. import other\nfrom ..sub import CONSTANT\n"
                   "if TYPE_CHECKING:\n    import pkg\n"
                   "def f():\n    import pkg.other\n", encoding="utf-8")
    assert _imports("pkg.sub.mod", src, modules) == {"pkg.sub.deep", "pkg.other", "pkg.sub"}


def test_the_space_is_ui_over_the_library():
    """The Space's modules (``ui/`` beside ``app.py``) are seen as project modules, and none reaches into the
    library's privates or the training code."""
    graph = _graph()
    assert {"space.ui.handlers", "space.ui.tabs", "space.ui.render"} <= graph["space.app"]
    for m, deps in graph.items():
        if m.split(".")[0] == "space":
            assert not {d for d in deps if d.split(".")[0] == "train" or d.split(".")[-1].startswith("_")}, m


def test_explanations_never_import_the_diagnoser():
    """``as_ai.explain`` works on the public ``Explainable`` protocol; ``as_ai.diagnoser`` imports it on request."""
    graph = _graph()
    explain = [m for m in graph if m == "as_ai.explain" or m.startswith("as_ai.explain.")]
    assert len(explain) > 3
    for m in explain:
        assert not graph[m] & {"as_ai.diagnosis", "as_ai.diagnoser", "as_ai.result"}, m
    assert "as_ai.explain" in graph["as_ai.diagnoser"]


def test_the_library_imports_nothing_from_train_or_space():
    graph = _graph()
    for m, deps in graph.items():
        if m.split(".")[0] == "as_ai":
            assert not {d for d in deps if d.split(".")[0] in ("train", "space")}, m


def test_no_module_is_longer_than_a_sitting():
    long = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "demo_models" in path.parts:
                continue
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > MAX_LINES:
                long.append(f"{path.relative_to(ROOT).as_posix()}: {n} lines")
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): " + ", ".join(long)
