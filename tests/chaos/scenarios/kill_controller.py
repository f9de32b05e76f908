"""Scenario 1: the controller killed with SIGKILL at seeded random instants (50 at full
length, 8 in the suite) and started again each time, while the mixed workload runs.

The instants are drawn up front, uniformly over the fault phase. After each restart the
scenario waits for /readyz 200 unless the next instant comes first: then the kill lands during
start-up (imports, leader election, subscription, cache sync), which is as much a part of the
fault as a kill mid-work. The invariants afterwards are the common ones; the figures add the
kills, how many hit a controller still starting, and the restart-to-ready seconds.
"""

from __future__ import annotations

import time

from tests.chaos.invariants import Report
from tests.chaos.scenarios import Options, Scenario
from tests.chaos.scenarios.base import Run, execute, seconds_summary

SHORT_KILLS, SHORT_SECONDS = 8, 14.0
FULL_KILLS = 50


def faults(run: Run) -> None:
    world, rng = run.world, run.rng
    kills = SHORT_KILLS if run.options.short else FULL_KILLS
    budget = SHORT_SECONDS if run.options.minutes is None else run.options.minutes * 60
    start = time.monotonic()
    instants = sorted(rng.uniform(0.5, budget) for _ in range(kills))
    recoveries: list[float] = []
    during_startup = 0
    for n, instant in enumerate(instants):
        run.pause(start + instant - time.monotonic())
        starting = world.windows[-1].end is None if world.windows else False
        during_startup += starting
        world.kill_controller(0)
        run.log(f"kill {n + 1}/{kills}" + (" (while starting)" if starting else ""))
        world.start_controller(0)
        upcoming = instants[n + 1] if n + 1 < kills else budget + 60
        took = world.ready_within(max(0.0, start + upcoming - time.monotonic()))
        if took is not None:
            recoveries.append(took)
        run.check_alive()
    run.figures.update({
        "kills": kills, "kills_while_starting": during_startup,
        "restart_to_ready_seconds": seconds_summary(recoveries)})


def run(options: Options) -> Report:
    return execute("kill_controller", options, faults)


SCENARIO = Scenario("kill_controller", "kill -9 the controller at seeded random instants, "
                                       "restarting it each time", run)
