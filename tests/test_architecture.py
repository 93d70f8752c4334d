"""The layering of docs/architecture.md, checked on the source: each module imports only from
lower layers (or inside its own package), so no module imports one that imports it back."""

import ast
from pathlib import Path

import grokkit

PACKAGE = Path(grokkit.__file__).parent

# Lowest first. A module may import from its own layer's package or any lower layer.
LAYERS = [
    ["errors", "console", "outcome", "signals", "schedule", "objectives", "theory"],
    ["integrators"],
    ["lightning_adapter", "wandb_setup", "data", "models", "ntk", "rundir", "metrics"],
    ["callbacks", "batching"],
    ["task"],
    ["report"],
    ["session", "preflight"],
    ["lightning_cli"],
    ["sweep", "figures", "ensemble"],
    ["cli", "__init__"],
    ["__main__"],
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    """grokkit.callbacks.ntk -> callbacks; grokkit.task -> task."""
    return module.split(".")[1] if "." in module else "__init__"


def _imports() -> dict[str, set[str]]:
    """Every grokkit module and the grokkit modules it imports (at any depth in its code)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("grokkit"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("grokkit")}
        graph[name] = found
    return graph


def test_every_module_has_a_layer():
    units = {_unit(m) for m in _imports()}
    assert units <= set(LAYER_OF), f"modules without a layer: {units - set(LAYER_OF)}"


def test_modules_import_only_lower_layers_or_their_own_package():
    wrong = []
    for module, imported in _imports().items():
        for target in imported:
            mine, theirs = _unit(module), _unit(target)
            if mine != theirs and LAYER_OF[theirs] >= LAYER_OF[mine]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = _imports()

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for target in graph.get(stack.pop(), ()):
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    cycles = [
        f"{a} <-> {b}"
        for a in graph
        for b in graph[a]
        if b != a and not a.startswith(b + ".") and a in reachable(b)
    ]
    assert not cycles, cycles
