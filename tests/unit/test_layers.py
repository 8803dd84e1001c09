"""Lower layers never import higher ones: config, errors… ← db ← broker, ingest, auth ← api…"""

from __future__ import annotations

import ast
from pathlib import Path

import eventflow

_SOURCE = Path(eventflow.__file__).parent
#: Each top-level module or package of the product, by layer; a module may import its own layer
#: and the ones below. Modules not named here are not checked.
_LAYERS = {
    "config": 0,
    "config_checks": 0,
    "errors": 0,
    "clock": 0,
    "ids": 0,
    "private_files": 0,
    "metrics": 0,
    "logs": 0,
    "db": 1,
    "broker": 2,
    "ingest": 2,
    "auth": 2,
    "api": 3,
    "services": 3,
    "segment": 3,
    "worker": 3,
    "runtime": 4,
    "cli": 5,
}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "eventflow" else None


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "eventflow":
                found += [f"eventflow.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for path in sorted(_SOURCE.rglob("*.py")):
        module = ".".join(("eventflow", *path.relative_to(_SOURCE).with_suffix("").parts))
        own = _layer_of(module)
        if own not in _LAYERS:
            continue
        for imported in _imports(path):
            target = _layer_of(imported)
            if target in _LAYERS and _LAYERS[target] > _LAYERS[own]:
                upward.append(f"{module} imports {imported}")
    assert upward == []
