"""plan_job through repeated partitions of one indexed Job (chaos issue 14, scenario 4).

The history replayed is the one the chaos suite recorded for `long-idx-4` (6 completions,
parallelism 3, each task 12 s): its first three slots were cut off by three partitions in a row.

1. attempt 0 of indexes 0-2 runs on agent S0; S0 is partitioned: attempts 0 UNREACHABLE, retried
   at once as attempts 1 (on S1);
2. S0 returns: attempts 0 report RUNNING again and are killed (Unreachable);
3. S1 is partitioned: attempts 1 UNREACHABLE, retried at once as attempts 2 (on S0);
4. S1 returns: attempts 1 ran to the end meanwhile and report TASK_FINISHED. Indexes 0-2 have
   succeeded, and attempts 2 still run on them;
5. the third partition cuts S0 off, with attempts 2 on it.

The bug: at step 4 nothing killed attempts 2. They held the Job's three places of parallelism
(indexes 3-5 waited), and when S0 was partitioned in step 5 they were written off once more -
three "unreachable tasks never replaced", on slots that needed no other attempt. A slot that
succeeded is never run again, so an attempt still active there is a duplicate, killed as
NotNeeded the moment the slot succeeds; the slots left are launched once it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from controller.api import ExecutionRecord, Job, JobPhase, JobStatus
from controller.reconcile import Kill, Launch, Plan, UpdateExecution, plan_job
from tests.reconcile.helpers import at, inp, job, rec, tid

S0, S1 = "agent-S0", "agent-S1"
FIRST = (0, 1, 2)


def long_job(**overrides: Any) -> Job:
    """The chaos workload's long Job."""
    spec: dict[str, Any] = {
        "completions": 6, "parallelism": 3, "completionMode": "Indexed",
        "backoffLimit": 6, "systemRetryLimit": 1000,
        "backoff": {"initialSeconds": 1, "maxSeconds": 5},
    }
    spec.update(overrides)
    return job(**spec)


def kills(plan: Plan) -> dict[str, str]:
    return {a.task_id: a.reason for a in plan.actions if isinstance(a, Kill)}


def marks(plan: Plan) -> dict[str, Any]:
    return {a.task_id: a.changes.get("kill_reason") for a in plan.actions
            if isinstance(a, UpdateExecution)}


def launched(plan: Plan) -> list[tuple[int, int]]:
    return [(a.index, a.attempt) for a in plan.actions if isinstance(a, Launch)]


def written(plan: Plan) -> JobStatus | None:
    assert plan.status is None or isinstance(plan.status, JobStatus)
    return plan.status


def status_of(plan: Plan) -> JobStatus:
    s = written(plan)
    assert s is not None, "expected a status write"
    return s


# The records of the first three slots, attempt by attempt, at each step of the history.
def a0_running() -> list[ExecutionRecord]:
    return [rec(i, 0, agent_id=S0, started_at=at(0)) for i in FIRST]


def a0_unreachable(marked: bool) -> list[ExecutionRecord]:
    return [rec(i, 0, "TASK_UNREACHABLE", agent_id=S0, started_at=at(0),
                unreachable_at=at(1), kill_reason="Unreachable" if marked else None)
            for i in FIRST]


def a0_back_running() -> list[ExecutionRecord]:
    return [rec(i, 0, "TASK_RUNNING", agent_id=S0, started_at=at(0), unreachable_at=at(1),
                kill_reason="Unreachable") for i in FIRST]


def a0_killed() -> list[ExecutionRecord]:
    return [rec(i, 0, "TASK_KILLED", agent_id=S0, started_at=at(0), unreachable_at=at(1),
                finished_at=at(10), reason="REASON_AGENT_REREGISTERED",
                kill_reason="Unreachable") for i in FIRST]


def a1(state: str, **fields: Any) -> list[ExecutionRecord]:
    return [rec(i, 1, state, agent_id=S1, submitted_at=at(1), started_at=at(2), **fields)
            for i in FIRST]


def a1_unreachable(marked: bool) -> list[ExecutionRecord]:
    return a1("TASK_UNREACHABLE", unreachable_at=at(12),
              kill_reason="Unreachable" if marked else None)


def a1_back_finished() -> list[ExecutionRecord]:
    return a1("TASK_FINISHED", unreachable_at=at(12), finished_at=at(20),
              reason="REASON_AGENT_REREGISTERED", kill_reason="Unreachable")


def a2(state: str, **fields: Any) -> list[ExecutionRecord]:
    return [rec(i, 2, state, agent_id=S0, submitted_at=at(12), started_at=at(12), **fields)
            for i in FIRST]


def rest(state: str, attempt: int = 0, **fields: Any) -> list[ExecutionRecord]:
    return [rec(i, attempt, state, agent_id=S1, submitted_at=at(22), **fields)
            for i in (3, 4, 5)]


@dataclass
class Step:
    what: str
    now: datetime
    records: list[ExecutionRecord]
    marks: dict[str, str] = field(default_factory=dict)
    kills: dict[str, str] = field(default_factory=dict)
    launched: list[tuple[int, int]] = field(default_factory=list)
    # Expected status: (phase, active, succeeded, failed, system_failures).
    counts: tuple[JobPhase, int, int, int, int] | None = None


def marked(attempt: int, reason: str = "Unreachable") -> dict[str, str]:
    return {tid(i, attempt): reason for i in FIRST}


HISTORY = [
    Step("the Job starts: indexes 0-2 launched", at(0), [],
         launched=[(0, 0), (1, 0), (2, 0)], counts=(JobPhase.RUNNING, 3, 0, 0, 0)),
    Step("attempts 0 run on S0", at(0.5), a0_running(), counts=None),
    Step("partition 1 (S0): attempts 0 written off, slots retried at once", at(1),
         a0_unreachable(marked=False),
         marks=marked(0), launched=[(0, 1), (1, 1), (2, 1)],
         counts=(JobPhase.RUNNING, 3, 0, 0, 3)),
    Step("attempts 1 run on S1", at(2), a0_unreachable(marked=True) + a1("TASK_RUNNING"),
         counts=None),
    Step("heal 1: attempts 0 report RUNNING again and are killed", at(10),
         a0_back_running() + a1("TASK_RUNNING"),
         kills=marked(0), counts=None),
    Step("attempts 0 killed: still the system failures they were written off as", at(11),
         a0_killed() + a1("TASK_RUNNING"), counts=None),
    Step("partition 2 (S1): attempts 1 written off, slots retried at once", at(12),
         a0_killed() + a1_unreachable(marked=False),
         marks=marked(1), launched=[(0, 2), (1, 2), (2, 2)],
         counts=(JobPhase.RUNNING, 3, 0, 0, 6)),
    Step("attempts 2 run on S0", at(13),
         a0_killed() + a1_unreachable(marked=True) + a2("TASK_RUNNING"), counts=None),
    # The step the bug was in: the slots succeeded, their duplicates must go.
    Step("heal 2: attempts 1 come back TASK_FINISHED, the duplicates (attempts 2) are killed",
         at(20), a0_killed() + a1_back_finished() + a2("TASK_RUNNING"),
         marks=marked(2, "NotNeeded"), kills=marked(2, "NotNeeded"),
         counts=(JobPhase.RUNNING, 0, 3, 0, 3)),
    Step("the kills are under way: nothing else to do", at(20.1),
         a0_killed() + a1_back_finished() + a2("TASK_KILLING", kill_reason="NotNeeded"),
         counts=None),
    Step("the duplicates are gone (no failure): indexes 3-5 launched", at(20.5),
         a0_killed() + a1_back_finished()
         + a2("TASK_KILLED", kill_reason="NotNeeded", finished_at=at(20.5)),
         launched=[(3, 0), (4, 0), (5, 0)],
         counts=(JobPhase.RUNNING, 3, 3, 0, 3)),
    Step("partition 3 (S0) finds no task of this Job on S0", at(22),
         a0_killed() + a1_back_finished()
         + a2("TASK_KILLED", kill_reason="NotNeeded", finished_at=at(20.5))
         + rest("TASK_RUNNING"), counts=None),
    Step("the rest finishes: Succeeded, each index counted once", at(34),
         a0_killed() + a1_back_finished()
         + a2("TASK_KILLED", kill_reason="NotNeeded", finished_at=at(20.5))
         + rest("TASK_FINISHED", finished_at=at(34)),
         counts=(JobPhase.SUCCEEDED, 0, 6, 0, 3)),
]


def test_three_partitions_of_one_indexed_job_replay() -> None:
    spec = long_job()
    status: JobStatus | None = None
    launches_so_far: set[str] = set()
    for step in HISTORY:
        plan = plan_job(inp(spec, step.records, status=status, now=step.now))
        assert marks(plan) == step.marks, step.what
        assert kills(plan) == step.kills, step.what
        assert launched(plan) == step.launched, step.what
        new = {a.task_id for a in plan.actions if isinstance(a, Launch)}
        assert not new & launches_so_far, f"{step.what}: a task id reused"
        launches_so_far |= new
        if plan.status is not None:
            status = written(plan)
        if step.counts is not None:
            assert status is not None, step.what
            assert (status.phase, status.active, status.succeeded, status.failed,
                    status.system_failures) == step.counts, step.what
    assert status is not None and status.completed_indexes == [0, 1, 2, 3, 4, 5]
    assert status.condition("Complete") is not None


# What a slot that succeeded does with another attempt still active, whatever the attempt
# was written off as or is doing (one table over the heal-2 moment and its variants).
BACK_FINISHED = [
    pytest.param(
        a2("TASK_RUNNING"),
        marked(2, "NotNeeded"), marked(2, "NotNeeded"), [], 3,
        id="duplicate-running-killed"),
    pytest.param(
        a2("LAUNCHING"),
        marked(2, "NotNeeded"), marked(2, "NotNeeded"), [], 3,
        id="duplicate-intent-killed"),
    pytest.param(
        # Partition 3 came before the kill: the duplicate is written off, not replaced (its
        # slot succeeded); the free places go to indexes 3-5.
        a2("TASK_UNREACHABLE", unreachable_at=at(21)),
        marked(2), {}, [(3, 0), (4, 0), (5, 0)], 6,
        id="duplicate-unreachable-not-replaced"),
    pytest.param(
        # ... and returns running later: killed, still that system failure.
        a2("TASK_RUNNING", unreachable_at=at(21), kill_reason="Unreachable"),
        {}, marked(2), [], 6,
        id="duplicate-unreachable-came-back-killed"),
    pytest.param(
        # Written off as NotNeeded, then unreachable: no failure, not replaced.
        a2("TASK_UNREACHABLE", unreachable_at=at(21), kill_reason="NotNeeded"),
        {}, {}, [(3, 0), (4, 0), (5, 0)], 3,
        id="duplicate-killing-then-unreachable"),
    pytest.param(
        # It finished too: the index still counts once.
        a2("TASK_FINISHED", finished_at=at(20)),
        {}, {}, [(3, 0), (4, 0), (5, 0)], 3,
        id="duplicate-finished-counts-once"),
]


@pytest.mark.parametrize(("duplicates", "want_marks", "want_kills", "want_launched",
                          "system_failures"), BACK_FINISHED)
def test_slot_succeeded_by_a_returning_attempt(
    duplicates: list[ExecutionRecord], want_marks: dict[str, str],
    want_kills: dict[str, str], want_launched: list[tuple[int, int]], system_failures: int,
) -> None:
    records = a0_killed() + a1_back_finished() + duplicates
    plan = plan_job(inp(long_job(), records, now=at(22)))
    assert marks(plan) == want_marks
    assert kills(plan) == want_kills
    assert launched(plan) == want_launched
    s = status_of(plan)
    assert (s.succeeded, s.completed_indexes[:3], s.system_failures) \
        == (3, [0, 1, 2], system_failures)
    assert s.phase == JobPhase.RUNNING


def test_never_launched_intent_that_finished_after_all_ends_its_replacement() -> None:
    """The same for an intent written off as never launched (TASK_UNKNOWN after a controller
    crash) that ran after all: its replacement is a duplicate of a slot that succeeded."""
    records = [rec(0, 0, "TASK_FINISHED", kill_reason="NeverLaunched", finished_at=at(5)),
               rec(0, 1, "TASK_RUNNING", started_at=at(2))]
    plan = plan_job(inp(job(completions=2, parallelism=2), records, now=at(6)))
    assert kills(plan) == {tid(0, 1): "NotNeeded"}
    assert launched(plan) == [(1, 0)]
    s = status_of(plan)
    assert (s.succeeded, s.active, s.system_failures) == (1, 1, 0)


def test_system_retries_exhausted_by_partitions_fail_the_job() -> None:
    """Had the budget been spent, the Job would have failed at once - not waited: partitions 1
    and 2 cost six system failures (attempts 0 killed on their return, attempts 1 written off)."""
    records = a0_killed() + a1_unreachable(marked=False)
    plan = plan_job(inp(long_job(systemRetryLimit=5), records, now=at(12)))
    assert launched(plan) == []
    s = status_of(plan)
    assert s.phase == JobPhase.FAILED
    cond = s.condition("Failed")
    assert cond is not None and cond.reason == "SystemRetryLimitExceeded"
    assert s.system_failures == 6
