"""Property tests of plan_job over whole simulated runs.

A tiny pure simulator plays the runtime and Mesos: it applies each plan (Launch -> a LAUNCHING
record, Kill -> TASK_KILLING since Mesos kills asynchronously, UpdateExecution, WriteStatus,
deletions), then hypothesis picks what happens next — a task starts, finishes, fails, is lost,
becomes unreachable or comes back, an intent is answered TASK_UNKNOWN as after a controller
crash (a few times per run) and may turn up after all, a kill completes — or the clock jumps to
the plan's requeue_after. Mesos' answers are recorded by the runtime's own rules
(`controller.updates.record_update`). After every plan it checks the invariants, and that
planning again right away (same state, same now) asks for nothing new.

Invariants: never two attempts of one index launched while one may run, parallelism, no task id
reused; launches bounded by the budgets plus the intents Mesos never saw (those cost nothing);
and while no task failure is recorded, every free slot is launched at once — system failures
and never-launched intents never hold a Job back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controller.api import ExecutionRecord, Job, JobPhase, JobStatus
from controller.mesos.backend import TaskUpdate
from controller.reconcile import (
    DeleteObject,
    DeleteOwnerData,
    JobInput,
    Kill,
    Launch,
    Plan,
    UpdateExecution,
    WriteStatus,
    plan_job,
)
from controller.reconcile.job import ACTIVE_STATES, NEVER_LAUNCHED, UNREACHABLE
from controller.updates import record_update
from tests.reconcile.helpers import NAME, NS, REV, T0, UID, job

MAX_STEPS = 400
# Intents answered TASK_UNKNOWN per run: they cost no budget, so without a bound a run could
# write off and relaunch forever.
MAX_UNKNOWN = 3

specs = st.fixed_dictionaries(
    {
        "completions": st.integers(1, 5),
        "parallelism": st.integers(1, 4),
        "completionMode": st.sampled_from(["NonIndexed", "Indexed"]),
        "backoffLimit": st.integers(0, 3),
        "systemRetryLimit": st.integers(0, 3),
        "backoff": st.fixed_dictionaries(
            {"initialSeconds": st.sampled_from([1, 5]), "factor": st.sampled_from([1, 1.5, 2]),
             "maxSeconds": st.sampled_from([5, 60])}
        ),
    },
    optional={
        "taskTimeoutSeconds": st.sampled_from([30, 120]),
        "activeDeadlineSeconds": st.sampled_from([200, 2000]),
    },
)

# What Mesos may report next for a task in a given state.
NEXT: dict[str, list[tuple[str, str | None]]] = {
    "LAUNCHING": [("TASK_RUNNING", None), ("TASK_DROPPED", None), ("TASK_LOST", None),
                  ("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED"), ("TASK_FINISHED", None),
                  ("TASK_UNKNOWN", "REASON_RECONCILIATION")],
    "TASK_RUNNING": [("TASK_FINISHED", None), ("TASK_FINISHED", None), ("TASK_FAILED", None),
                     ("TASK_KILLED", None), ("TASK_LOST", None), ("TASK_UNREACHABLE", None),
                     ("TASK_GONE", None)],
    "TASK_KILLING": [("TASK_KILLED", None), ("TASK_FINISHED", None)],
    "TASK_UNREACHABLE": [("TASK_RUNNING", None)],
    "TASK_UNKNOWN": [("TASK_RUNNING", None)],
}


class Sim:
    """The recorded world of one Job: spec, status, execution records, clock."""

    def __init__(self, spec: Job) -> None:
        self.job: Job | None = spec
        self.status: JobStatus | None = None
        self.records: dict[str, ExecutionRecord] = {}
        self.now: datetime = T0
        self.launched: list[str] = []
        self.unknowns_left = MAX_UNKNOWN

    def input(self) -> JobInput:
        return JobInput(namespace=NS, name=NAME, job=self.job,
                        spec_revision=REV if self.job else 0, uid=UID, status=self.status,
                        executions=tuple(self.records.values()), now=self.now)

    def plan(self) -> Plan:
        plan = plan_job(self.input())
        self.check(plan)
        self.apply(plan)
        again = plan_job(self.input())
        noisy = [a for a in again.actions
                 if isinstance(a, Launch | Kill | UpdateExecution | WriteStatus)]
        assert noisy == [], f"planning again asked for {noisy}"
        assert again.requeue_after == plan.requeue_after
        return plan

    def check(self, plan: Plan) -> None:
        launches = [a for a in plan.actions if isinstance(a, Launch)]
        if self.job is None:
            assert not launches
            return
        spec = self.job.spec
        occupying = [r for r in self.records.values()
                     if r.state in ACTIVE_STATES or r.state == "TASK_RUNNING"]
        done = {r.index for r in self.records.values() if r.state == "TASK_FINISHED"}
        busy = {r.index for r in occupying}
        status = plan.status or self.status
        assert isinstance(status, JobStatus)
        if (status.failed == 0 and not spec.suspend
                and status.phase not in (JobPhase.SUCCEEDED, JobPhase.FAILED)):
            # No failure of the task itself: nothing may hold back a free slot.
            todo = [i for i in range(spec.completions) if i not in done and i not in busy]
            # (A returning task may overfill the slots: it is killed, not counted as room.)
            room = max(0, min(spec.parallelism - len(occupying), len(todo)))
            assert len(launches) == room, (
                f"{len(launches)} launched, {room} free: held back without a task failure")
        if not launches:
            return
        assert len(occupying) + len(launches) <= spec.parallelism
        for launch in launches:
            assert launch.index not in done, "a succeeded index launched again"
            assert launch.index not in busy, "two attempts of one index at once"
            assert 0 <= launch.index < spec.completions
            assert launch.task_id not in self.records, "a task id reused"

    def apply(self, plan: Plan) -> None:
        for action in plan.actions:
            if isinstance(action, Launch):
                self.launched.append(action.task_id)
                self.records[action.task_id] = ExecutionRecord(
                    task_id=action.task_id, index=action.index, attempt=action.attempt,
                    state="LAUNCHING", submitted_at=self.now)
            elif isinstance(action, UpdateExecution):
                self.update(action.task_id, **action.changes)
            elif isinstance(action, Kill):
                self.update(action.task_id, state="TASK_KILLING")
            elif isinstance(action, WriteStatus):
                assert isinstance(action.status, JobStatus)
                self.status = action.status
            elif isinstance(action, DeleteObject):
                self.job = None
            elif isinstance(action, DeleteOwnerData):
                self.status = None
                self.records.clear()

    def update(self, task_id: str, **changes: Any) -> None:
        self.records[task_id] = self.records[task_id].model_copy(update=changes)

    def happen(self, data: st.DataObject, plan: Plan) -> bool:
        """Let one thing happen; False when nothing can happen any more."""
        movable = sorted(t for t, r in self.records.items() if r.state in NEXT)
        wait = plan.requeue_after
        if movable and (wait is None or data.draw(st.booleans())):
            tid = data.draw(st.sampled_from(movable))
            rec = self.records[tid]
            choices = [c for c in NEXT[rec.state]
                       if c[0] != "TASK_UNKNOWN" or self.unknowns_left]
            state, reason = data.draw(st.sampled_from(choices))
            if state == "TASK_UNKNOWN":
                self.unknowns_left -= 1
            self.now += timedelta(seconds=data.draw(st.sampled_from([0, 1, 7, 45])))
            update = TaskUpdate(task_id=tid, state=state, reason=reason,
                                timestamp=self.now.timestamp(),
                                agent_id=None if state == "TASK_UNKNOWN" else "agent-1")
            self.records[tid] = record_update(rec, update, "framework-1", self.now)
            return True
        if wait is not None:
            self.now += timedelta(seconds=wait)
            return True
        return False


def run(spec: Job, data: st.DataObject) -> Sim:
    sim = Sim(spec)
    for _ in range(MAX_STEPS):
        plan = sim.plan()
        if not sim.happen(data, plan):
            return sim
    raise AssertionError(f"no end after {MAX_STEPS} steps")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs, st.data())
def test_random_runs_end_succeeded_or_failed_within_budgets(spec_fields: dict[str, Any],
                                                           data: st.DataObject) -> None:
    spec = job(**spec_fields)
    sim = run(spec, data)
    assert sim.status is not None
    assert sim.status.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED)
    s = spec.spec
    never_launched = sum(r.kill_reason == NEVER_LAUNCHED for r in sim.records.values())
    # A task written off as unreachable was retried at once; if it then finished after all,
    # its success stands (it is no longer a system failure), so its retry was a launch no
    # budget paid for.
    came_back_finished = sum(r.kill_reason == UNREACHABLE and r.state == "TASK_FINISHED"
                             for r in sim.records.values())
    assert len(sim.launched) <= (s.completions + s.backoff_limit + s.system_retry_limit
                                 + never_launched + came_back_finished)
    assert len(set(sim.launched)) == len(sim.launched)
    finished = {r.index for r in sim.records.values() if r.state == "TASK_FINISHED"}
    if sim.status.phase == JobPhase.SUCCEEDED:
        assert finished >= set(range(s.completions))
        assert sim.status.succeeded == s.completions
    else:
        cond = sim.status.condition("Failed")
        assert cond is not None and cond.reason in (
            "BackoffLimitExceeded", "SystemRetryLimitExceeded", "DeadlineExceeded")
    assert sim.status.active == 0
    assert sim.status.completion_time is not None
    event(f"{sim.status.phase} after {len(sim.launched) // 4 * 4}+ launches")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs, st.data())
def test_suspend_resume_and_deletion_keep_the_invariants(spec_fields: dict[str, Any],
                                                        data: st.DataObject) -> None:
    spec = job(**spec_fields)
    suspended = job(suspend=True, **spec_fields)
    sim = Sim(spec)
    toggles = 4
    for _ in range(MAX_STEPS):
        plan = sim.plan()
        if sim.job is not None and toggles and data.draw(st.integers(0, 9)) == 0:
            toggles -= 1
            sim.job = suspended if sim.job is spec else spec
            continue
        if sim.job is not None and data.draw(st.integers(0, 29)) == 0:
            sim.job = None  # the user deletes it
            continue
        if not sim.happen(data, plan):
            break
    else:
        raise AssertionError(f"no end after {MAX_STEPS} steps")
    assert len(set(sim.launched)) == len(sim.launched)
    event("deleted" if sim.job is None else f"ended {sim.status.phase if sim.status else None}")
    if sim.job is None:
        assert sim.records == {} and sim.status is None
