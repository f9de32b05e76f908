"""The import rules of docs/architecture.md §2, checked on the source: a planner that starts
doing I/O, a store that reaches for Mesos, or a controller that comes to depend on the embedded
Mesos fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "controller"

# Layer -> the other layers of Docket it may import (its own modules always).
ALLOWED: dict[str, set[str]] = {
    "api": set(),
    "reconcile": {"api"},
    "store": {"api"},
    "mesos": {"api", "reconcile", "clock"},
    "runtime": {"metrics", "clock"},
    "localmesos": set(),
    # A Queue's sources: their I/O, read through the pure planner's vocabulary.
    "queues": {"api", "reconcile", "store", "clock", "metrics"},
    # The Python client: objects over etcd, no Mesos knowledge.
    "client": {"api", "store", "queues"},
}


def _layer_of(module: str) -> str:
    """'controller.store.keys' -> 'store'; 'controller.metrics' -> 'metrics'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "controller":
                # `from controller import metrics` imports the module controller.metrics.
                found.update(f"controller.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    return {m for m in found if m.startswith("controller.")}


def _violations(layer: str) -> list[str]:
    allowed = ALLOWED[layer] | {layer}
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for module in sorted(_imports(path)):
            if _layer_of(module) not in allowed:
                bad.append(f"{path.relative_to(ROOT.parent)} imports {module}")
    return bad


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    assert _violations(layer) == []


def test_only_the_cli_imports_localmesos() -> None:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("cli", "localmesos"):
            continue
        bad += [f"{rel} imports {m}" for m in _imports(path) if _layer_of(m) == "localmesos"]
    assert bad == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    # The rules above pass vacuously if _imports finds nothing: prove it finds both forms.
    source = tmp_path / "x.py"
    source.write_text("from controller import metrics\nimport controller.store.keys\n"
                      "def f():\n    from controller.mesos.backend import TaskUpdate\n")
    assert _imports(source) == {"controller.metrics", "controller.store.keys",
                                "controller.mesos.backend"}
