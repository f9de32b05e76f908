"""plan_job, one table per rule: failures and budgets, backoff, timeouts, deadline, startAt,
suspend, TTL, deletion, invalid specs, older incarnations, partitions, conditions."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api import Condition, ExecutionRecord, JobPhase, JobStatus
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
from tests.reconcile.helpers import NAME, NS, REV, T0, UID, at, inp, invalid, job, rec, tid


def kinds(plan: Plan) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


def kills(plan: Plan) -> dict[str, str]:
    return {a.task_id: a.reason for a in plan.actions if isinstance(a, Kill)}


def marks(plan: Plan) -> dict[str, Any]:
    return {a.task_id: a.changes.get("kill_reason") for a in plan.actions
            if isinstance(a, UpdateExecution)}


def launched(plan: Plan) -> list[tuple[int, int]]:
    return [(a.index, a.attempt) for a in plan.actions if isinstance(a, Launch)]


def status(plan: Plan) -> JobStatus:
    assert plan.status is not None, "expected a status write"
    return plan.status


# -- how each terminal record counts ------------------------------------------------------

COUNTS = [
    # (state, reason, kill_reason, failure_class) -> (failed, system_failures)
    (("TASK_FAILED", None, None, None), (1, 0)),
    (("TASK_ERROR", "REASON_TASK_INVALID", None, None), (1, 0)),
    (("TASK_KILLED", None, None, None), (1, 0)),
    (("TASK_KILLED", None, "TaskTimeout", None), (1, 0)),
    (("TASK_KILLED", None, "Suspended", None), (0, 0)),
    (("TASK_KILLED", None, "Deleted", None), (0, 0)),
    (("TASK_KILLED", None, "DeadlineExceeded", None), (0, 0)),
    (("TASK_LOST", None, None, None), (0, 1)),
    (("TASK_DROPPED", None, None, None), (0, 1)),
    (("TASK_GONE", None, None, None), (0, 1)),
    (("TASK_GONE_BY_OPERATOR", None, None, None), (0, 1)),
    (("TASK_UNKNOWN", None, None, None), (0, 1)),
    (("TASK_UNREACHABLE", None, None, None), (0, 1)),
    (("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED", None, None), (0, 1)),
    (("TASK_FAILED", "REASON_INVALID_OFFERS", None, None), (0, 1)),
    (("TASK_FAILED", "REASON_AGENT_REMOVED", None, None), (0, 1)),
    (("TASK_RUNNING", None, "Unreachable", None), (0, 1)),
    (("TASK_FAILED", None, None, "system"), (0, 1)),
    (("TASK_LOST", None, None, "task"), (1, 0)),
]


@pytest.mark.parametrize(("given", "expected"), COUNTS, ids=[str(c[0]) for c in COUNTS])
def test_how_an_attempt_counts(given: tuple[Any, ...], expected: tuple[int, int]) -> None:
    state, reason, kill_reason, failure_class = given
    r = rec(0, state=state, reason=reason, kill_reason=kill_reason,
            failure_class=failure_class, finished_at=T0)
    s = status(plan_job(inp(job(completions=2, parallelism=1), [r], now=at(3600))))
    assert (s.failed, s.system_failures) == expected


# -- budgets ------------------------------------------------------------------------------

def test_backoff_limit_exceeded_fails_the_job_and_kills_the_rest() -> None:
    execs = [rec(0, state="TASK_FAILED", finished_at=at(1)),
             rec(1, state="TASK_FAILED", finished_at=at(2)),
             rec(2, agent_id="a1")]
    plan = plan_job(inp(job(completions=3, parallelism=3, backoffLimit=1), execs, now=at(10)))
    s = status(plan)
    assert s.phase == JobPhase.FAILED
    failed = s.condition("Failed")
    assert failed is not None and failed.status == "True"
    assert failed.reason == "BackoffLimitExceeded"
    assert "2 task failures" in failed.message
    assert s.completion_time == at(10)
    assert marks(plan) == {tid(2): "BackoffLimitExceeded"}
    assert kills(plan) == {tid(2): "BackoffLimitExceeded"}
    kill = next(a for a in plan.actions if isinstance(a, Kill))
    assert kill.agent_id == "a1" and kill.grace_seconds == 10
    assert launched(plan) == []
    # The update of the kill reason comes before the kill it explains.
    assert kinds(plan) == ["UpdateExecution", "Kill", "WriteStatus"]


def test_at_the_backoff_limit_the_job_still_retries() -> None:
    execs = [rec(0, state="TASK_FAILED", finished_at=at(0))]
    plan = plan_job(inp(job(backoffLimit=1), execs, now=at(3600)))
    assert launched(plan) == [(0, 1)]
    assert status(plan).phase == JobPhase.RUNNING


def test_system_retry_limit_exceeded() -> None:
    execs = [rec(0, 0, state="TASK_LOST"), rec(0, 1, state="TASK_DROPPED")]
    s = status(plan_job(inp(job(systemRetryLimit=1), execs, now=at(3600))))
    assert s.phase == JobPhase.FAILED
    cond = s.condition("Failed")
    assert cond is not None and cond.reason == "SystemRetryLimitExceeded"


def test_finished_job_stays_finished_when_the_spec_changes() -> None:
    execs = [rec(0, state="TASK_FAILED", finished_at=at(1))]
    first = status(plan_job(inp(job(backoffLimit=0), execs, now=at(5))))
    assert first.phase == JobPhase.FAILED
    plan = plan_job(inp(job(backoffLimit=5), execs, status=first, now=at(50), rev=REV + 1))
    assert launched(plan) == []
    s = status(plan)
    assert (s.phase, s.observed_revision) == (JobPhase.FAILED, REV + 1)
    assert s.completion_time == at(5)


# -- backoff ------------------------------------------------------------------------------

BACKOFF = {"initialSeconds": 10, "factor": 2, "maxSeconds": 25}


@pytest.mark.parametrize(
    ("failures", "now", "launch", "requeue"),
    [
        (1, 5, False, 5.0),     # 1st failure at t=0: wait 10 s
        (1, 10, True, None),
        (2, 15, False, 5.0),    # 2nd: 20 s
        (2, 20, True, None),
        (3, 24, False, 1.0),    # 3rd: 40 s capped at 25
        (3, 25, True, None),
    ],
)
def test_exponential_backoff_per_job(failures: int, now: float, launch: bool,
                                     requeue: float | None) -> None:
    execs = [rec(0, a, state="TASK_FAILED", finished_at=at(0)) for a in range(failures)]
    plan = plan_job(inp(job(completions=2, parallelism=2, backoff=BACKOFF), execs, now=at(now)))
    # The backoff holds every slot, also slot 1 that never ran.
    assert bool(launched(plan)) is launch
    assert plan.requeue_after == requeue


def test_backoff_counts_from_the_latest_failure() -> None:
    execs = [rec(0, 0, state="TASK_FAILED", finished_at=at(0)),
             rec(1, 0, state="TASK_FAILED", finished_at=at(30))]
    plan = plan_job(inp(job(completions=2, parallelism=2, backoff=BACKOFF), execs, now=at(40)))
    assert launched(plan) == []
    assert plan.requeue_after == 10.0  # 2 failures -> 20 s after t=30


# -- task timeout -------------------------------------------------------------------------

def test_task_timeout_kills_and_then_counts_as_failure() -> None:
    spec = job(taskTimeoutSeconds=60, backoff={"initialSeconds": 5})
    running = rec(0, started_at=at(10), agent_id="a")
    early = plan_job(inp(spec, [running], now=at(30)))
    assert kills(early) == {}
    assert early.requeue_after == 40.0
    plan = plan_job(inp(spec, [running], now=at(70)))
    assert marks(plan) == {tid(0): "TaskTimeout"}
    assert kills(plan) == {tid(0): "TaskTimeout"}
    assert launched(plan) == []  # the slot is busy until the kill is confirmed
    s = status(plan)
    assert (s.active, s.failed) == (0, 0)
    killed = rec(0, state="TASK_KILLED", kill_reason="TaskTimeout", started_at=at(10))
    after = plan_job(inp(spec, [killed], status=s, now=at(71)))
    assert status(after).failed == 1
    # Backoff runs from the instant it timed out (t=70): ready at t=75.
    assert launched(after) == []
    assert after.requeue_after == 4.0
    assert launched(plan_job(inp(spec, [killed], status=s, now=at(75)))) == [(0, 1)]


def test_timeout_of_a_launch_that_never_started_counts_from_submission() -> None:
    spec = job(taskTimeoutSeconds=60)
    plan = plan_job(inp(spec, [rec(0, state="LAUNCHING", submitted_at=at(0))], now=at(60)))
    assert kills(plan) == {tid(0): "TaskTimeout"}
    assert [a.agent_id for a in plan.actions if isinstance(a, Kill)] == [None]


def test_timeout_exceeded_on_last_allowed_attempt_fails_the_job() -> None:
    killed = rec(0, state="TASK_KILLED", kill_reason="TaskTimeout", finished_at=at(60))
    s = status(plan_job(inp(job(taskTimeoutSeconds=60, backoffLimit=0), [killed], now=at(61))))
    assert s.phase == JobPhase.FAILED
    cond = s.condition("Failed")
    assert cond is not None and cond.reason == "BackoffLimitExceeded"


# -- kills in progress --------------------------------------------------------------------

def test_a_kill_in_progress_is_not_resent_but_a_lost_one_is() -> None:
    spec = job(suspend=True)
    killing = rec(0, state="TASK_KILLING", kill_reason="Suspended")
    assert kills(plan_job(inp(spec, [killing]))) == {}
    still_running = rec(0, kill_reason="Suspended")
    plan = plan_job(inp(spec, [still_running]))
    assert kills(plan) == {tid(0): "Suspended"}
    assert marks(plan) == {}


# -- deadline -----------------------------------------------------------------------------

def test_active_deadline_kills_all_and_fails() -> None:
    spec = job(completions=3, parallelism=2, activeDeadlineSeconds=100)
    started = JobStatus(phase=JobPhase.RUNNING, uid=UID, start_time=at(0), active=2,
                        observed_revision=REV)
    execs = [rec(0), rec(1, state="TASK_KILLING", kill_reason="TaskTimeout")]
    before = plan_job(inp(spec, execs, status=started, now=at(40)))
    assert before.requeue_after == 60.0
    plan = plan_job(inp(spec, execs, status=started, now=at(100)))
    s = status(plan)
    assert s.phase == JobPhase.FAILED
    cond = s.condition("Failed")
    assert cond is not None and cond.reason == "DeadlineExceeded"
    assert kills(plan) == {tid(0): "DeadlineExceeded"}  # tid(1) is being killed already
    assert launched(plan) == []


# -- startAt ------------------------------------------------------------------------------

def test_start_at_in_the_future_waits() -> None:
    spec = job(startAt=at(300).isoformat())
    plan = plan_job(inp(spec, now=at(0)))
    assert launched(plan) == []
    assert status(plan).phase == JobPhase.PENDING
    assert status(plan).start_time is None
    assert plan.requeue_after == 300.0
    later = plan_job(inp(spec, status=plan.status, now=at(300)))
    assert launched(later) == [(0, 0)]
    assert status(later).start_time == at(300)


# -- suspend ------------------------------------------------------------------------------

def test_suspend_kills_without_counting_and_resume_relaunches() -> None:
    spec = job(completions=3, parallelism=2, activeDeadlineSeconds=100)
    running = JobStatus(phase=JobPhase.RUNNING, uid=UID, start_time=at(0), active=2,
                        succeeded=1, observed_revision=REV)
    execs = [rec(0, state="TASK_FINISHED"), rec(1, agent_id="a"), rec(2, state="LAUNCHING")]
    plan = plan_job(inp(job(completions=3, parallelism=2, suspend=True), execs, status=running,
                        now=at(10), rev=REV + 1))
    assert kills(plan) == {tid(1): "Suspended", tid(2): "Suspended"}
    s = status(plan)
    assert s.phase == JobPhase.SUSPENDED
    assert (s.active, s.succeeded, s.failed) == (0, 1, 0)
    assert s.start_time is None  # the deadline clock stops
    cond = s.condition("Suspended")
    assert cond is not None and (cond.status, cond.reason) == ("True", "JobSuspended")
    assert plan.requeue_after is None
    # Killed for suspension: no failure; on resume, new attempt ids.
    execs = [execs[0], rec(1, state="TASK_KILLED", kill_reason="Suspended"),
             rec(2, state="TASK_KILLED", kill_reason="Suspended")]
    resumed = plan_job(inp(spec, execs, status=s, now=at(500), rev=REV + 2))
    assert launched(resumed) == [(1, 1), (2, 1)]
    r = status(resumed)
    assert (r.phase, r.failed, r.start_time) == (JobPhase.RUNNING, 0, at(500))
    cond = r.condition("Suspended")
    assert cond is not None and (cond.status, cond.reason) == ("False", "JobResumed")
    assert resumed.requeue_after == 100.0


# -- TTL ----------------------------------------------------------------------------------

def test_ttl_after_finished_deletes_the_spec_then_the_data() -> None:
    spec = job(ttlSecondsAfterFinished=60)
    execs = [rec(0, state="TASK_FINISHED")]
    done = plan_job(inp(spec, execs, now=at(10)))
    assert status(done).phase == JobPhase.SUCCEEDED
    assert done.requeue_after == 60.0
    assert not any(isinstance(a, DeleteObject) for a in done.actions)
    expired = plan_job(inp(spec, execs, status=done.status, now=at(70)))
    assert expired.actions == (DeleteObject("jobs", NS, NAME, REV),)
    gone = plan_job(inp(None, execs, status=done.status, now=at(71), rev=0))
    assert gone.actions == (DeleteOwnerData("jobs", NS, NAME),)
    assert plan_job(inp(None, (), status=None, now=at(72), rev=0)).actions == ()


# -- deletion -----------------------------------------------------------------------------

def test_deletion_kills_every_active_task_then_deletes_data() -> None:
    execs = [rec(0, agent_id="a"), rec(1, state="TASK_FINISHED"), rec(2, uid=7),
             rec(3, state="TASK_KILLING", kill_reason="Deleted")]
    recorded = JobStatus(phase=JobPhase.RUNNING, uid=UID)
    plan = plan_job(inp(None, execs, status=recorded, rev=0))
    assert marks(plan) == {tid(0): "Deleted", tid(2, uid=7): "Deleted"}
    assert kills(plan) == {tid(0): "Deleted", tid(2, uid=7): "Deleted"}
    assert not any(isinstance(a, WriteStatus | DeleteOwnerData) for a in plan.actions)
    done = [rec(0, state="TASK_KILLED", kill_reason="Deleted"), execs[1]]
    assert plan_job(inp(None, done, status=recorded, rev=0)).actions == (
        DeleteOwnerData("jobs", NS, NAME),)


# -- invalid specs ------------------------------------------------------------------------

def test_invalid_spec_sets_status_and_leaves_tasks_alone() -> None:
    running = JobStatus(phase=JobPhase.RUNNING, uid=UID, start_time=at(0), active=1,
                        observed_revision=REV)
    plan = plan_job(inp(invalid(), [rec(0)], status=running, now=at(5), rev=REV + 1))
    assert kinds(plan) == ["WriteStatus"]
    s = status(plan)
    assert s.phase == JobPhase.INVALID
    assert s.observed_revision == REV + 1
    cond = s.condition("Invalid")
    assert cond is not None
    assert (cond.status, cond.reason) == ("True", "InvalidSpec")
    assert "spec.completions" in cond.message and "must be >= 1" in cond.message
    assert cond.last_transition_time == at(5)
    assert s.active == 1
    # Fixing the spec proceeds, and says the spec is valid again.
    fixed = plan_job(inp(job(completions=2, parallelism=2), [rec(0)], status=s, now=at(9),
                         rev=REV + 2))
    assert launched(fixed) == [(1, 0)]
    f = status(fixed)
    assert f.phase == JobPhase.RUNNING
    cond = f.condition("Invalid")
    assert cond is not None and (cond.status, cond.last_transition_time) == ("False", at(9))


def test_invalid_new_object_launches_nothing() -> None:
    plan = plan_job(inp(invalid(), status=None))
    assert kinds(plan) == ["WriteStatus"]


# -- older incarnations and out-of-range slots --------------------------------------------

def test_tasks_of_an_older_incarnation_are_killed_and_not_counted() -> None:
    execs = [rec(0, uid=50), rec(0, 3, state="TASK_FAILED", uid=50),
             rec(1, state="TASK_FINISHED", uid=50), ExecutionRecord(
                 task_id="something-else", index=0, attempt=0, state="TASK_RUNNING")]
    old_status = JobStatus(phase=JobPhase.FAILED, uid=50, failed=9, conditions=[
        Condition(type="Failed", status="True", reason="BackoffLimitExceeded")])
    plan = plan_job(inp(job(completions=2, parallelism=2), execs, status=old_status))
    assert kills(plan) == {tid(0, uid=50): "Superseded"}
    assert launched(plan) == [(0, 0), (1, 0)]
    s = status(plan)
    assert (s.phase, s.failed, s.succeeded, s.uid) == (JobPhase.RUNNING, 0, 0, UID)
    assert s.conditions == []


def test_slots_beyond_lowered_completions_are_killed() -> None:
    execs = [rec(0, state="TASK_FINISHED"), rec(1), rec(2)]
    plan = plan_job(inp(job(completions=2, parallelism=3), execs))
    assert kills(plan) == {tid(2): "NotNeeded"}
    assert launched(plan) == []


# -- partitions ---------------------------------------------------------------------------

def test_unreachable_is_a_system_failure_marked_and_retried() -> None:
    spec = job(backoff={"initialSeconds": 1})
    r = rec(0, state="TASK_UNREACHABLE", finished_at=at(0))
    plan = plan_job(inp(spec, [r], now=at(5)))
    assert marks(plan) == {tid(0): "Unreachable"}
    assert kills(plan) == {}
    assert launched(plan) == [(0, 1)]
    assert status(plan).system_failures == 1
    # It comes back: still that system failure, and killed.
    back = rec(0, state="TASK_RUNNING", kill_reason="Unreachable", agent_id="a")
    again = plan_job(inp(spec, [back, rec(0, 1, state="LAUNCHING")], status=plan.status,
                         now=at(6)))
    assert kills(again) == {tid(0): "Unreachable"}
    assert marks(again) == {}
    assert again.status is None  # counts unchanged


# -- conditions ---------------------------------------------------------------------------

def test_condition_transition_time_kept_while_unchanged() -> None:
    spec = job(suspend=True)
    first = status(plan_job(inp(spec, now=at(0))))
    cond = first.condition("Suspended")
    assert cond is not None and cond.last_transition_time == at(0)
    again = plan_job(inp(spec, status=first, now=at(100)))
    assert again.status is None and again.actions == ()


def test_unknown_state_is_treated_as_active() -> None:
    plan = plan_job(inp(job(completions=2, parallelism=2), [rec(0, state="TASK_SOMETHING")]))
    assert launched(plan) == [(1, 0)]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        plan_job(inp(job(), now=T0.replace(tzinfo=None)))


def test_huge_failure_counts_cap_the_backoff_without_overflow() -> None:
    execs = [rec(0, a, state="TASK_FAILED", finished_at=at(0)) for a in range(1100)]
    spec = job(backoffLimit=5000, backoff={"initialSeconds": 1, "factor": 2, "maxSeconds": 30})
    plan = plan_job(inp(spec, execs, now=at(10)))
    assert plan.requeue_after == 20.0
    assert launched(plan) == []


def test_a_key_name_mesos_would_refuse_makes_the_job_invalid() -> None:
    plan = plan_job(JobInput(namespace=NS, name="Bad_Name", job=job(), spec_revision=REV,
                             uid=UID, status=None, executions=(), now=T0))
    assert kinds(plan) == ["WriteStatus"]
    s = status(plan)
    cond = s.condition("Invalid")
    assert s.phase == JobPhase.INVALID and cond is not None
    assert "metadata.name" in cond.message


def test_uid_is_required_for_an_existing_job() -> None:
    with pytest.raises(ValueError, match="uid"):
        plan_job(inp(job(), uid=None))


def test_requeue_after_is_the_earliest_wakeup_and_actions_are_ordered() -> None:
    spec = job(completions=3, parallelism=3, taskTimeoutSeconds=50, activeDeadlineSeconds=400)
    started = JobStatus(phase=JobPhase.RUNNING, uid=UID, start_time=at(0), active=2,
                        observed_revision=REV - 1)
    execs = [rec(0, started_at=at(0)), rec(1, started_at=at(20))]
    plan = plan_job(inp(spec, execs, status=started, now=at(60)))
    # tid(0) timed out at 50; tid(1) times out at 70; the fresh launch at 110; deadline 400.
    assert kinds(plan) == ["UpdateExecution", "Kill", "Launch", "WriteStatus"]
    assert launched(plan) == [(2, 0)]
    assert plan.requeue_after == 10.0


def test_records_of_other_objects_are_ignored() -> None:
    other = ExecutionRecord(task_id="job.default.other.100.0.0", index=0, attempt=0,
                            state="TASK_RUNNING")
    plan = plan_job(inp(job(), [other]))
    assert launched(plan) == [(0, 0)]
    assert kills(plan) == {}
