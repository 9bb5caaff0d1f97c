"""The package's import graph: data flows one way through the layers below, with no circle,
inference and training never import each other, and no module imports another's private
names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "speechrnn"

# Bottom to top: a module may import from its own layer or the ones below, never above.
LAYERS = [
    ["fileio", "schema", "lazy"],
    ["audio", "text", "features", "decoding.checks", "decoding.hypothesis"],
    ["augment", "data", "decoding", "models.acoustic", "scoring", "formats"],
    ["models", "pretrained", "export"],
    ["transcriber", "training"],
    ["evaluation", "tuning", "plots", "pretrained.package"],
    ["distributed"],
    ["argtypes", "cli"],
]
INFERENCE = ("transcriber", "evaluation", "tuning", "export", "distributed", "pretrained")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative.with_suffix(".py")).exists() or (
        PACKAGE.parent / relative / "__init__.py").exists()


def imports() -> dict[str, set[str]]:
    """Module → the speechrnn modules it imports (``from speechrnn import audio`` is an
    import of speechrnn.audio, not of the package)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] == "speechrnn":
                submodules = [f"{node.module}.{a.name}" for a in node.names
                              if is_module(f"{node.module}.{a.name}")]
                found.update(submodules or [node.module])
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "speechrnn")
        graph[module_name(path)] = found - {module_name(path)}
    return graph


def layer(module: str) -> int:
    """The layer of the longest matching entry ("decoding.checks" before "decoding")."""
    name = module.removeprefix("speechrnn").lstrip(".")
    best, depth = len(LAYERS) - 1, -1
    for number, entries in enumerate(LAYERS):
        for entry in entries:
            if (name == entry or name.startswith(entry + ".")) and len(entry) > depth:
                best, depth = number, len(entry)
    return best


def test_no_import_runs_back_up_a_layer():
    upward = [(module, target) for module, targets in imports().items() for target in targets
              if module != "speechrnn" and layer(target) > layer(module)]
    assert upward == []


def test_the_import_graph_has_no_circle():
    graph = {m: {t for t in targets if t != "speechrnn"} for m, targets in imports().items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            assert state.get(target) != 1, " -> ".join([*trail, module, target])
            if state.get(target) is None:
                visit(target, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_inference_and_training_do_not_import_each_other():
    graph = imports()
    for module, targets in graph.items():
        name = module.removeprefix("speechrnn.")
        if name.startswith(INFERENCE):
            assert not [t for t in targets if t.startswith("speechrnn.training")], module
        if name.startswith("training"):
            assert not [t for t in targets
                        if t.removeprefix("speechrnn.").startswith(INFERENCE[:-1])], module
    code = ("import speechrnn.transcriber, sys; "
            "assert not any(m.startswith('speechrnn.training') for m in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_no_private_name_is_imported_across_modules():
    private = []
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "tools").rglob("*.py"),
                 *(PACKAGE.parent / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] == "speechrnn":
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.endswith("__")]
    assert private == []
