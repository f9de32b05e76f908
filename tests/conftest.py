"""Test-suite wiring: every module in tests/fixtures is loaded as a pytest plugin, so each
fixture family (real etcd, embedded Mesos, ...) lives in its own file. One of them,
tests/fixtures/integration.py, fails any test that starts a server or a subprocess without
the `integration` marker: `pytest -m "not integration"` is the fast, server-free run."""

from __future__ import annotations

import pkgutil
from pathlib import Path

pytest_plugins = [
    f"tests.fixtures.{m.name}"
    for m in pkgutil.iter_modules([str(Path(__file__).parent / "fixtures")])
    if not m.name.startswith("_")
]
