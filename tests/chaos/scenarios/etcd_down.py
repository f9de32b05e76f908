"""Scenario 2: etcd away while the mixed workload runs — killed (connections fail at once),
then frozen with SIGSTOP (connections hang instead of failing) — 30 s each at full length,
3 s each in the suite.

During each outage the controller must not exit and /readyz must answer 503 saying that etcd
is failing (a probe times out after `PROBE_TIMEOUT` s, as an orchestrator's would); after
etcd's return it must be ready again within `RECOVERY_BOUND` s, and every status update Mesos
produced meanwhile (tasks that ended during the outage: Mesos resends what was not
acknowledged) must be recorded in etcd soon after. The common invariants follow.
"""

from __future__ import annotations

import time

from controller.localmesos import TERMINAL_STATES
from tests.chaos.invariants import Report, Violation
from tests.chaos.scenarios import Options, Scenario
from tests.chaos.scenarios.base import Run, execute

SHORT_OUTAGE, FULL_OUTAGE = 3.0, 30.0
PROBE_TIMEOUT = 2.0  # what an orchestrator's readiness probe would wait
RECOVERY_BOUND = 2.0  # from etcd's return to /readyz 200 (issue 14)
RECORD_BOUND = 15.0  # from readiness to every update of the outage recorded


def _ended_between(run: Run, start: float, end: float) -> dict[str, str]:
    """Job and Service tasks whose terminal update Mesos made in [start, end] (time.time()),
    with that state. Queue tasks are left to the queue invariants: a finished batch's
    records are deleted once its messages are acked."""
    out = {}
    for task in run.world.lm.tasks():
        if task.state not in TERMINAL_STATES or task.task_id.startswith("queue."):
            continue
        ended = [s for s in task.statuses if s["state"] == task.state]
        if ended and start <= float(ended[-1]["timestamp"]) <= end:
            out[task.task_id] = task.state
    return out


def _unrecorded(run: Run, ended: dict[str, str]) -> dict[str, str]:
    records = run.world.user
    missing = {}
    by_owner: dict[tuple[str, str], dict[str, str]] = {}
    for task_id in ended:
        kind, ns, name = task_id.split(".")[:3]
        plural = {"job": "jobs", "service": "services"}[kind]
        if (plural, name) not in by_owner:
            by_owner[(plural, name)] = {e.record.task_id: e.record.state
                                        for e in records.list_executions(plural, ns, name)}
        recorded = by_owner[(plural, name)].get(task_id)
        if recorded is not None and recorded != ended[task_id]:
            missing[task_id] = f"recorded {recorded}, Mesos says {ended[task_id]}"
    return missing


def outage(run: Run, mode: str, seconds: float) -> dict[str, object]:
    world = run.world
    controller = world.controllers[0]
    run.pause(run.rng.uniform(1.0, 2.5))  # work in flight when etcd goes
    wall_start = time.time()
    (world.kill_etcd if mode == "killed" else world.freeze_etcd)()
    run.log(f"etcd {mode} for {seconds:g}s")
    start = time.monotonic()
    said_why: str | None = None
    answers: list[int] = []
    while time.monotonic() - start < seconds:
        code, body = controller.readyz(timeout=PROBE_TIMEOUT)
        answers.append(code)
        failing = [line for line in body.splitlines() if line.startswith("[-]etcd")]
        if code == 503 and failing and said_why is None:
            said_why = failing[0]
        run.check_alive()
        time.sleep(min(0.2, max(0.0, seconds - (time.monotonic() - start))))
    if said_why is None:
        run.violations.append(Violation(
            "readyz-silent", controller.name, f"etcd {mode}",
            f"/readyz never answered 503 naming etcd within {PROBE_TIMEOUT}s; "
            f"answers {sorted(set(answers))}"))
    (world.restart_etcd if mode == "killed" else world.thaw_etcd)()
    wall_back = time.time()
    recovery = world.wait_ready(60)
    run.log(f"etcd back; ready after {recovery:.2f}s")
    if recovery > RECOVERY_BOUND:
        run.violations.append(Violation(
            "slow-recovery", controller.name, f"etcd {mode}",
            f"ready {recovery:.2f}s after etcd's return (bound {RECOVERY_BOUND}s)"))
    ended = _ended_between(run, wall_start, wall_back)
    deadline = time.monotonic() + RECORD_BOUND
    missing = _unrecorded(run, ended)
    while missing and time.monotonic() < deadline:
        time.sleep(0.1)  # poll interval of a bounded wait
        missing = _unrecorded(run, ended)
    recorded_after = round(time.monotonic() - deadline + RECORD_BOUND, 2)
    for task_id, what in sorted(missing.items()):
        run.violations.append(Violation("update-lost-in-outage", task_id.split(".")[2],
                                        task_id, what))
    return {"outage_seconds": seconds, "readyz_said": said_why,
            "recovery_seconds": round(recovery, 2), "updates_during_outage": len(ended),
            "recorded_within_seconds": recorded_after}


def faults(run: Run) -> None:
    seconds = SHORT_OUTAGE if run.options.minutes is None else FULL_OUTAGE
    run.figures["outages"] = {mode: outage(run, mode, seconds) for mode in ("killed", "frozen")}
    if run.options.minutes is not None:
        # Full length: the rest of the budget runs the workload with etcd up, so the
        # invariants also cover the catch-up after two long outages.
        left = run.options.minutes * 60 - run.world.elapsed()
        run.pause(max(0.0, left))


def run(options: Options) -> Report:
    return execute("etcd_down", options, faults)


SCENARIO = Scenario("etcd_down", "etcd killed, then frozen (SIGSTOP), while the controller "
                                 "runs: it waits, says why, resumes", run)
