"""What a controller crash and infrastructure faults may cost a Job (issue 9 §6), one table per
rule, on the pure update rules (controller.updates) and the planner (plan_job):

- a launch intent Mesos never saw (still LAUNCHING when reconciliation answers TASK_UNKNOWN) is
  marked NeverLaunched and its slot launched again at once, under the next attempt id, with no
  failure of either kind counted and no backoff; should the task turn up after all it is
  killed and still counts as nothing;
- system failures count against systemRetryLimit but never delay a launch;
- the task's own failures still back off, by their own number only.

Why: a leader that dies with launches in flight used to leave every one of them counted as a
system failure, and the job-wide backoff then held the whole Job for minutes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from controller.api import LAUNCHING, ExecutionRecord, JobPhase, JobStatus
from controller.mesos.backend import TaskUpdate
from controller.reconcile import Kill, Launch, Plan, UpdateExecution, plan_job
from controller.reconcile.job import NEVER_LAUNCHED
from controller.updates import is_failure, record_update
from tests.reconcile.helpers import T0, at, inp, job, rec, tid

BACKOFF = {"initialSeconds": 10, "factor": 2, "maxSeconds": 360}


def launched(plan: Plan) -> list[tuple[int, int]]:
    return [(a.index, a.attempt) for a in plan.actions if isinstance(a, Launch)]


def kills(plan: Plan) -> dict[str, str]:
    return {a.task_id: a.reason for a in plan.actions if isinstance(a, Kill)}


def status(plan: Plan) -> JobStatus:
    assert isinstance(plan.status, JobStatus), "expected a status write"
    return plan.status


def unknown(index: int, attempt: int = 0, **fields: Any) -> ExecutionRecord:
    """A written-off intent as record_update leaves it."""
    return rec(index, attempt, state="TASK_UNKNOWN", reason="REASON_RECONCILIATION",
               kill_reason=NEVER_LAUNCHED, **fields)


def answer(record: ExecutionRecord, state: str, now: datetime = T0,
           **fields: Any) -> ExecutionRecord:
    update = TaskUpdate(task_id=record.task_id, state=state, **fields)
    return record_update(record, update, "F1", now)


# -- recording: which TASK_UNKNOWN is an intent Mesos never saw ---------------------------

MARKS = [
    # (recorded state, kill reason already recorded, update) -> kill_reason afterwards
    ((LAUNCHING, None, "TASK_UNKNOWN"), NEVER_LAUNCHED),
    # Mesos saw it once: lost afterwards, a system failure as before.
    (("TASK_STAGING", None, "TASK_UNKNOWN"), None),
    (("TASK_RUNNING", None, "TASK_UNKNOWN"), None),
    # Other answers to an intent are Mesos' own verdicts on a launch it received.
    ((LAUNCHING, None, "TASK_DROPPED"), None),
    ((LAUNCHING, None, "TASK_LOST"), None),
    ((LAUNCHING, None, "TASK_GONE"), None),
    # A reason Docket recorded first (a kill under way) is kept.
    ((LAUNCHING, "Suspended", "TASK_UNKNOWN"), "Suspended"),
]


@pytest.mark.parametrize(("given", "expected"), MARKS, ids=[str(m[0]) for m in MARKS])
def test_only_an_intent_answered_unknown_is_marked_never_launched(
        given: tuple[str, str | None, str], expected: str | None) -> None:
    state, kill_reason, update = given
    before = rec(0, state=state, kill_reason=kill_reason,
                 agent_id=None if state == LAUNCHING else "S1")
    after = answer(before, update, reason="REASON_RECONCILIATION")
    assert after.state == update
    assert after.kill_reason == expected


def test_the_mark_is_written_with_the_unknown_state_and_repeats_change_nothing() -> None:
    intent = rec(0, state=LAUNCHING)
    written_off = answer(intent, "TASK_UNKNOWN", reason="REASON_RECONCILIATION")
    assert (written_off.state, written_off.kill_reason) == ("TASK_UNKNOWN", NEVER_LAUNCHED)
    # Periodic reconciliation answers the same again: no write.
    assert answer(written_off, "TASK_UNKNOWN", reason="REASON_RECONCILIATION") is written_off


# -- planning: a never-launched intent is relaunched, not counted, not backed off ----------

NEVER_SEEN = [
    # (spec, records, now) -> (launched, failed, system_failures)
    pytest.param({}, [unknown(0)], at(0), ([(0, 1)], 0, 0), id="one intent"),
    pytest.param({"completions": 100, "parallelism": 10, "completionMode": "Indexed"},
                 [rec(i, state="TASK_FINISHED", finished_at=at(1)) for i in range(32)]
                 + [unknown(i) for i in range(32, 42)], at(2),
                 ([(i, 1) for i in range(32, 42)], 0, 0), id="a failover: ten intents"),
    pytest.param({}, [unknown(0, 0), unknown(0, 1), unknown(0, 2)], at(0), ([(0, 3)], 0, 0),
                 id="written off thrice: the next attempt id"),
    pytest.param({"systemRetryLimit": 0, "backoffLimit": 0}, [unknown(0), unknown(0, 1)],
                 at(0), ([(0, 2)], 0, 0), id="no budget used"),
    pytest.param({"completions": 2, "parallelism": 2},
                 [unknown(0), rec(1, state="TASK_LOST", finished_at=at(0))], at(0),
                 ([(0, 1), (1, 1)], 0, 1), id="beside a system failure"),
]


@pytest.mark.parametrize(("spec", "records", "now", "expected"), NEVER_SEEN)
def test_a_never_launched_intent_is_launched_again_at_once_and_counts_as_nothing(
        spec: dict[str, Any], records: list[ExecutionRecord], now: datetime,
        expected: tuple[list[tuple[int, int]], int, int]) -> None:
    plan = plan_job(inp(job(backoff=BACKOFF, **spec), records, now=now))
    s = status(plan)
    assert (launched(plan), s.failed, s.system_failures) == expected
    assert s.phase == JobPhase.RUNNING
    assert plan.requeue_after is None, "a backoff wake-up was planned"


def test_from_intent_to_relaunch_the_slot_never_has_two_live_attempts() -> None:
    spec = job(backoff=BACKOFF)
    intent = rec(0, state=LAUNCHING, submitted_at=at(0))
    # While the intent stands (Mesos may still know it), nothing else runs in its slot.
    assert launched(plan_job(inp(spec, [intent], now=at(30)))) == []
    written_off = answer(intent, "TASK_UNKNOWN", reason="REASON_RECONCILIATION", now=at(31))
    plan = plan_job(inp(spec, [written_off], now=at(31)))
    assert launched(plan) == [(0, 1)]
    assert (status(plan).failed, status(plan).system_failures) == (0, 0)
    assert not any(isinstance(a, UpdateExecution) for a in plan.actions)


def test_a_never_launched_task_that_turns_up_is_killed_and_still_counts_as_nothing() -> None:
    spec = job(completions=2, parallelism=3, backoff=BACKOFF)
    written_off = answer(rec(0, state=LAUNCHING), "TASK_UNKNOWN",
                         reason="REASON_RECONCILIATION")
    # It was on an agent Mesos had not heard back from after all.
    back = answer(written_off, "TASK_RUNNING", agent_id="S1", now=at(5))
    assert back.kill_reason == NEVER_LAUNCHED
    plan = plan_job(inp(spec, [back, rec(0, 1, state="TASK_RUNNING")], now=at(5)))
    assert kills(plan) == {tid(0): NEVER_LAUNCHED}
    # Index 0 runs once (attempt 1); the stray still takes room until its kill is confirmed.
    assert launched(plan) == [(1, 0)]
    s = status(plan)
    assert (s.active, s.failed, s.system_failures) == (2, 0, 0)
    killed = answer(back, "TASK_KILLED", agent_id="S1", now=at(6))
    assert not is_failure(killed)  # not in docket_tasks_failed_total
    after = plan_job(inp(spec, [killed, rec(0, 1, state="TASK_RUNNING")], now=at(6)))
    assert (status(after).failed, status(after).system_failures) == (0, 0)


# -- system failures: counted against systemRetryLimit, never a backoff --------------------

SYSTEM = [
    rec(0, 0, state="TASK_LOST", finished_at=at(0)),
    rec(0, 1, state="TASK_DROPPED", finished_at=at(1)),
    rec(0, 2, state="TASK_GONE", finished_at=at(2)),
    rec(0, 3, state="TASK_UNREACHABLE", kill_reason="Unreachable"),
    rec(0, 4, state="TASK_FAILED", reason="REASON_AGENT_REMOVED", finished_at=at(3)),
    rec(0, 5, state="TASK_UNKNOWN", agent_id="S1", finished_at=at(4)),  # seen, then lost
]


@pytest.mark.parametrize("count", range(1, len(SYSTEM) + 1))
def test_system_failures_do_not_delay_launches(count: int) -> None:
    spec = job(systemRetryLimit=10, backoff=BACKOFF)
    plan = plan_job(inp(spec, SYSTEM[:count], now=at(4.5)))
    assert launched(plan) == [(0, count)]
    assert (status(plan).failed, status(plan).system_failures) == (0, count)
    assert plan.requeue_after is None


@pytest.mark.parametrize(("limit", "phase"), [(5, JobPhase.RUNNING), (4, JobPhase.FAILED)])
def test_system_failures_still_count_against_the_system_retry_limit(
        limit: int, phase: JobPhase) -> None:
    s = status(plan_job(inp(job(systemRetryLimit=limit, backoff=BACKOFF), SYSTEM[:5],
                            now=at(4.5))))
    assert (s.phase, s.system_failures) == (phase, 5)
    if phase == JobPhase.FAILED:
        cond = s.condition("Failed")
        assert cond is not None and cond.reason == "SystemRetryLimitExceeded"


# -- task failures: still back off, by their own number, from the latest of them ----------

TASK_BACKOFF = [
    # (task failures at t=0, system failures after them, now) -> (launch, requeue_after)
    (1, 0, 5, False, 5.0),      # 10 s after t=0
    (1, 4, 5, False, 5.0),      # system failures neither grow the delay ...
    (1, 4, 10, True, None),     # ... nor move its start (the latest is at t=8)
    (2, 0, 15, False, 5.0),     # 20 s
    (2, 3, 15, False, 5.0),
    (3, 3, 35, False, 5.0),     # 40 s
    (3, 3, 40, True, None),
]


@pytest.mark.parametrize(("tasks", "systems", "now", "launch", "requeue"), TASK_BACKOFF)
def test_task_failures_back_off_by_their_own_count(tasks: int, systems: int, now: float,
                                                    launch: bool,
                                                    requeue: float | None) -> None:
    execs = [rec(0, a, state="TASK_FAILED", finished_at=at(0)) for a in range(tasks)]
    execs += [rec(1, a, state="TASK_LOST", finished_at=at(8)) for a in range(systems)]
    spec = job(completions=2, parallelism=2, backoffLimit=10, systemRetryLimit=10,
               backoff=BACKOFF)
    plan = plan_job(inp(spec, execs, now=at(now)))
    assert bool(launched(plan)) is launch
    assert plan.requeue_after == requeue
    assert (status(plan).failed, status(plan).system_failures) == (tasks, systems)
