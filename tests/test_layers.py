"""The package's layers: every import inside rlcore points down (or within a layer, without a
cycle), so a reader can read it bottom up: math core, language-model substrate, training, CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import rlcore

ROOT = Path(rlcore.__file__).parent

LAYERS = {
    0: {"_checks", "reproducibility", "plotting"},
    1: {"returns", "advantages", "masked", "tokens", "kl", "losses", "scan", "envs", "__init__"},
    2: {"tasks", "policy", "rollout", "evaluation", "pairs", "sft", "reward_model"},
    3: {"credit", "train", "presets", "settings", "runs", "scale", "pitfalls"},
    4: {"experiments", "compare", "credit_accuracy", "bench", "robustness", "overoptimisation"},
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def _imports(module: str) -> set[str]:
    """The rlcore modules ``module`` imports, anywhere in the file (function bodies included)."""
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "rlcore":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
    return found & set(LAYER_OF)


def test_every_module_has_a_layer():
    modules = {p.stem for p in ROOT.glob("*.py")}
    assert modules == set(LAYER_OF), modules ^ set(LAYER_OF)


def test_imports_point_down():
    for module in LAYER_OF:
        for imported in _imports(module):
            assert LAYER_OF[imported] <= LAYER_OF[module], f"{module} (layer {LAYER_OF[module]}) imports " \
                                                           f"{imported} (layer {LAYER_OF[imported]})"


def test_no_import_cycle():
    graph = {module: _imports(module) - {module} for module in LAYER_OF}
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle: " + " -> ".join(path + [module])
        state[module] = "open"
        for imported in graph[module]:
            visit(imported, path + [module])
        state[module] = "done"

    for module in graph:
        visit(module, [])


def test_the_import_reader_sees_known_edges():
    assert {"credit", "pairs", "policy", "reproducibility"} <= _imports("train")
    assert "compare" in _imports("experiments") and "experiments" not in _imports("compare")
    assert "settings" in _imports("runs") and "presets" in _imports("settings")
