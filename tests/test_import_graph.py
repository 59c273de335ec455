"""The package's modules form a layered graph: no import cycles, and imports point down only.

Every ``import``/``from ... import`` statement counts, at top level or inside a function (a lazy import
is still a dependency); only ``if TYPE_CHECKING:`` blocks are exempt. A lower layer that must find an upper
one (the registry finding model classes) names it by a "module:attribute" string instead.

``LAYERS`` is the table of docs/architecture.md, lowest first: a module may import its own layer and the
layers below it. A module belongs to the layer of the longest name in the table that it is or lies inside.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "zeroforge"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "schema", "io"),  # leaves
    ("modules", "scratch"),  # building blocks; scratch is the NumPy engine (no torch)
    ("models", "registry"),
    # tokens and data; the measures and figures of eval/ (its package file imports nothing)
    ("tokenizers", "datasets", "data", "eval", "eval.metrics", "eval.plots"),
    ("weights",),
    ("config",),  # the recipe schema
    ("train",),
    # use
    (
        "generation",
        "decoding",
        "chat",
        "embedding",
        "eval.evaluate",
        "eval.instructions",
        "beam",
        "translation",
        "quantization",
    ),
    ("explain",),  # attention maps and saliency of a loaded model
    ("pretraining", "finetuning", "fitting", "training", "demo"),  # entry points
    ("sweep", "lr_find"),  # run recipes many times: hyperparameter search, learning-rate range test
    ("cli", "serve", "__main__", ""),  # front; "" is the package itself (zeroforge/__init__.py)
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules that ``path`` imports (``from a import b`` counts a.b when it is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:
                found.add(f"{target}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    out = set()
    for target in found:
        # the deepest package module the statement names (``zeroforge.data.text.prepare`` -> data.text)
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and target != "zeroforge":
            out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    graph = {module_name(f): imported_modules(f, known) for f in files}
    # importing a.b.c runs a/__init__.py and a/b/__init__.py first
    for name, deps in graph.items():
        for dep in list(deps):
            parts = dep.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in known and parent != name and not name.startswith(parent + "."):
                    deps.add(parent)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                stack.append((nxt, sorted(graph[nxt])))
                path.append(nxt)
    return None


def test_graph_sees_imports() -> None:
    graph = import_graph()
    assert "zeroforge.registry" in graph
    assert any(graph.values()), "the parser found no imports at all"


def layer_of(module: str) -> int:
    """The index in ``LAYERS`` of ``module`` (a dotted name such as ``zeroforge.data.text``)."""
    name = module.removeprefix("zeroforge").removeprefix(".")
    best: tuple[int, int] | None = None  # (length of the matched entry, layer)
    for layer, entries in enumerate(LAYERS):
        for entry in entries:
            inside = name == entry or (entry != "" and name.startswith(entry + "."))
            if inside and (best is None or len(entry) > best[0]):
                best = (len(entry), layer)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every edge that imports a module of a higher layer, as "a (layer) -> b (layer)"."""
    return [
        f"{name} ({layer_of(name)}) -> {dep} ({layer_of(dep)})"
        for name, deps in sorted(graph.items())
        for dep in sorted(deps)
        if layer_of(dep) > layer_of(name)
    ]


def test_every_module_has_a_layer() -> None:
    for name in import_graph():
        layer_of(name)
    assert layer_of("zeroforge") == len(LAYERS) - 1
    assert layer_of("zeroforge.eval.plots") < layer_of("zeroforge.eval.evaluate")
    assert layer_of("zeroforge.data.clean.text") == layer_of("zeroforge.data")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("zeroforge.somewhere_new")


def test_upward_import_is_found() -> None:
    graph = {"zeroforge.modules.lora": {"zeroforge.registry", "zeroforge.errors"}}
    assert upward_imports(graph) == ["zeroforge.modules.lora (1) -> zeroforge.registry (2)"]


def test_imports_point_down_only() -> None:
    upward = upward_imports(import_graph())
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
