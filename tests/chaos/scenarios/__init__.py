"""The chaos scenarios, by name: every module of this package that defines `SCENARIO` (a
`Scenario`) is one, found when the registry is first read — adding a scenario is adding a
module, nothing here changes.

A scenario is a name, a one-line description and `run(options) -> Report`: the same call
runs the short version (`options.minutes is None`, the pytest suite) and the full one
(`--minutes M`, the runner). Most scenarios are a fault phase handed to `base.execute`, which
starts the World, runs the workload, settles, and checks the invariants.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.invariants import Report

_NOT_SCENARIOS = {"base"}


def _quiet(line: str) -> None:
    pass


@dataclass(frozen=True)
class Options:
    seed: int = 1
    # Full length: the fault phase's budget in minutes (the scenario's own full-length fault
    # count applies). None: the short version of the test suite.
    minutes: float | None = None
    workdir: Path | None = None  # None: a temporary directory, removed after a clean run
    log: Callable[[str], None] = field(default=_quiet)  # progress lines

    @property
    def short(self) -> bool:
        return self.minutes is None

    @property
    def length(self) -> str:
        return "short" if self.minutes is None else f"full ({self.minutes:g} min)"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[[Options], Report]


_registry: dict[str, Scenario] | None = None


def registry() -> dict[str, Scenario]:
    """name -> Scenario, for every module of this package that defines SCENARIO."""
    global _registry
    if _registry is None:
        found: dict[str, Scenario] = {}
        for module in pkgutil.iter_modules(__path__):
            if module.name.startswith("_") or module.name in _NOT_SCENARIOS:
                continue
            scenario = getattr(importlib.import_module(f"{__name__}.{module.name}"),
                               "SCENARIO", None)
            if isinstance(scenario, Scenario):
                if scenario.name in found:
                    raise ValueError(f"two scenarios named {scenario.name!r}")
                found[scenario.name] = scenario
        _registry = dict(sorted(found.items()))
    return _registry


def get(name: str) -> Scenario:
    scenarios = registry()
    if name not in scenarios:
        raise KeyError(f"no scenario {name!r}; known: {', '.join(scenarios)}")
    return scenarios[name]
