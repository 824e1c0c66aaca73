"""The layers of docs/architecture.md, checked on the import graph (ast): no upward import, no cycle.

Every import counts, also one inside a function (a lazy import is still a dependency);
only ``if TYPE_CHECKING:`` blocks are skipped, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Bottom to top: a module may import its own layer and the layers below it.
LAYERS = [
    "ntm_spark.core",
    "lightning_module",
    "ntm_spark.serving",
    "ntm_spark.spark",
    "ntm_spark.mlops",
    "ntm_spark.report",
    "ntm_spark.tools",
    "jobs",
]
#: Third-party packages a layer must never import (not even lazily).
FORBIDDEN = {
    "ntm_spark.core": ("pyspark", "mlflow", "torch", "lightning", "pytorch_lightning", "kafka"),
    "lightning_module": ("pyspark", "mlflow", "kafka"),
    "ntm_spark.serving": ("pyspark", "kafka"),
}
#: Root-level modules of ``ntm_spark`` that only re-export (kept so models registered by
#: earlier versions still unpickle): they sit above every layer and nothing may import them.
COMPAT = {"ntm_spark.pyfunc_model"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for n in ast.walk(node))
    names: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)  # ``from pkg import module``
    return names


def _graph() -> dict[str, set[str]]:
    files = [p for d in ("ntm_spark", "lightning_module", "jobs") for p in (ROOT / d).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _layer(module: str) -> int:
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return i
    if module == "ntm_spark":
        return 0  # the package root: its version only
    raise AssertionError(f"module {module!r} belongs to no layer: put it in one of {LAYERS} (docs/architecture.md)")


def test_every_module_is_in_a_layer_and_imports_only_downwards():
    graph = _graph()
    upward = []
    for module, deps in sorted(graph.items()):
        if module in COMPAT:
            continue
        for dep in sorted(deps):
            if dep in COMPAT:
                upward.append(f"{module} -> {dep} (a compatibility shim: import the real module)")
            elif _layer(dep) > _layer(module):
                upward.append(f"{module} ({LAYERS[_layer(module)]}) -> {dep} ({LAYERS[_layer(dep)]})")
    assert not upward, "upward imports:\n  " + "\n  ".join(upward)


def test_no_import_cycles_between_files():
    graph = _graph()
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_lower_layers_never_import_heavy_frameworks():
    bad = []
    for d in ("ntm_spark", "lightning_module"):
        for path in (ROOT / d).rglob("*.py"):
            module = _module_name(path)
            for layer, banned in FORBIDDEN.items():
                if module == layer or module.startswith(layer + "."):
                    bad += [f"{module} imports {m}" for m in sorted(_imports(path)) if m.split(".")[0] in banned]
    assert not bad, "\n".join(bad)
