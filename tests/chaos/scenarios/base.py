"""What every chaos scenario does around its faults, once: start a World, start the mixed
workload, hand a `Run` to the scenario's fault phase, then stop producing, wait for the
controller to finish what it owes (bounded), read the sources of truth and check every
invariant. A scenario module is its fault phase plus its sizes (`execute(...)`).

`Run` is what the fault phase uses: the World, the Workload, the seeded random source (the
only randomness allowed), a figures dict and a violations list of its own (e.g. "/readyz
did not say why"), and `pause(seconds)`, which keeps the workload producing while it waits —
a pause chooses when the next fault happens; nothing waits on it for correctness.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from controller.api import JobStatus
from tests.chaos import evidence, invariants
from tests.chaos.invariants import Report, Violation
from tests.chaos.scenarios import Options
from tests.chaos.workload import FULL, SHORT, Workload, WorkloadSize
from tests.chaos.world import World, WorldConfig

SETTLE_SECONDS = 90.0  # at most, after the faults, for the controller to finish its work


@dataclass
class Run:
    world: World
    workload: Workload
    rng: random.Random
    options: Options
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.options.log(f"[{self.world.elapsed():7.2f}s] {line}")

    def pause(self, seconds: float) -> None:
        """Let `seconds` pass, producing work meanwhile (unless etcd is away)."""
        end = time.monotonic() + max(0.0, seconds)
        while True:
            if not self.world.windows or self.world.windows[-1].end is not None:
                self.workload.tick()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))

    def check_alive(self) -> None:
        for name, code in self.world.unexpected_exits():
            self.violations.append(Violation("controller-exited", name, f"exit code {code}",
                                             "it must never exit on a transient fault"))
            self.world.controllers[int(name.rsplit("-", 1)[1])].should_run = False


def execute(name: str, options: Options, faults: Callable[[Run], None], *,
            config: WorldConfig | None = None, short: WorkloadSize = SHORT,
            full: WorkloadSize = FULL,
            world_type: Callable[[Path, WorldConfig], World] = World) -> Report:
    """Run a scenario: World, workload, `faults(run)`, settle, evidence, invariants.
    `world_type` builds the World (a subclass, e.g. masters in HA: ha_world.py)."""
    own_dir = options.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-")) if own_dir \
        else Path(str(options.workdir))
    config = config or WorldConfig()
    report = Report(name, options.seed, options.length)
    started = time.monotonic()
    try:
        with world_type(workdir, config) as world:
            workload = Workload(world, random.Random(f"{options.seed}-workload"),
                                short if options.short else full)
            run = Run(world, workload, random.Random(options.seed), options)
            try:
                workload.start()
                run.log(f"workload started; world in {workdir}")
                faults(run)
                run.check_alive()
                workload.finish()
                world.wait_ready(60)
                settle, left = workload.wait_settled(SETTLE_SECONDS)
                run.log(f"settled in {settle:.1f}s" + (f"; NOT: {left}" if left else ""))
                run.check_alive()
                report.violations += run.violations
                report.violations += [Violation("not-settled", what.split(":", 1)[0],
                                                "", what.split(":", 1)[-1].strip())
                                      for what in left]
                ev = evidence.collect(world, workload.expected)
                lag = timedelta(seconds=2.0 * config.clock_speed)
                report.violations += invariants.check_all(
                    workload.expected, ev, _job_counts(world), lag)
                report.figures = {
                    **run.figures, "faults": dict(world.faults),
                    "work": {**workload.figures(),
                             **invariants.figures(workload.expected, ev)},
                    "settle_seconds": round(settle, 2),
                    "injected_minutes": round((world.now() - world.clock.t0)
                                              .total_seconds() / 60, 1)}
            finally:
                workload.close()
                if not report.ok or not own_dir:
                    report.figures["workdir"] = str(workdir)
    finally:
        report.figures["seconds"] = round(time.monotonic() - started, 1)
        if own_dir and report.ok:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def _job_counts(world: World) -> dict[str, tuple[int, list[int]]]:
    """Docket's own count of each Job's successes, checked against Mesos by the invariants."""
    out = {}
    for (_ns, name), found in world.user.list_statuses("jobs").items():
        status = found.status
        if isinstance(status, JobStatus) and status.phase == "Succeeded":
            out[name] = (status.succeeded, list(status.completed_indexes))
    return out


def seconds_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"max": round(max(values), 2), "mean": round(sum(values) / len(values), 2)}
