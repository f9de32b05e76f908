"""plan_job: launching slots, parallelism, completions, modes, success."""

from __future__ import annotations

from controller.api import JobPhase
from controller.reconcile import Launch, WriteStatus, plan_job
from controller.reconcile.actions import Plan
from tests.reconcile.helpers import NAME, NS, OWNER, REV, T0, UID, at, inp, job, rec, tid


def launches(plan: Plan) -> list[tuple[int, int]]:
    return [(a.index, a.attempt) for a in plan.actions if isinstance(a, Launch)]


def test_new_job_launches_first_slots_up_to_parallelism() -> None:
    plan = plan_job(inp(job(completions=5, parallelism=2)))
    assert launches(plan) == [(0, 0), (1, 0)]
    first = plan.actions[0]
    assert isinstance(first, Launch)
    assert first.task_id == f"job.{NS}.{NAME}.{UID}.0.0"
    assert first.owner == OWNER
    assert first.template.command == "echo hello"
    assert first.env == {"DOCKET_JOB_NAME": NAME, "DOCKET_JOB_NAMESPACE": NS,
                         "DOCKET_TASK_ID": first.task_id, "DOCKET_ATTEMPT": "0"}
    assert plan.status is not None
    assert plan.status.phase == JobPhase.RUNNING
    assert plan.status.active == 2
    assert plan.status.start_time == T0
    assert plan.status.observed_revision == REV
    assert plan.status.uid == UID
    assert isinstance(plan.actions[-1], WriteStatus)
    assert plan.actions[-1].status == plan.status
    assert plan.requeue_after is None


def test_indexed_mode_passes_the_index() -> None:
    plan = plan_job(inp(job(completions=3, parallelism=3, completionMode="Indexed")))
    envs = [a.env for a in plan.actions if isinstance(a, Launch)]
    assert [e["DOCKET_JOB_INDEX"] for e in envs] == ["0", "1", "2"]
    assert [e["JOB_COMPLETION_INDEX"] for e in envs] == ["0", "1", "2"]


def test_running_tasks_fill_parallelism() -> None:
    execs = [rec(0), rec(1, state="LAUNCHING")]
    plan = plan_job(inp(job(completions=5, parallelism=3), execs))
    assert launches(plan) == [(2, 0)]


def test_never_more_than_remaining_completions() -> None:
    execs = [rec(0, state="TASK_FINISHED"), rec(1, state="TASK_FINISHED"), rec(2)]
    plan = plan_job(inp(job(completions=4, parallelism=10), execs))
    assert launches(plan) == [(3, 0)]


def test_succeeded_index_never_relaunched_and_status_counts() -> None:
    execs = [rec(0, state="TASK_FINISHED", finished_at=at(5)),
             rec(1, 0, state="TASK_FAILED", finished_at=at(1)),
             rec(1, 1, state="TASK_FINISHED", finished_at=at(30))]
    plan = plan_job(inp(job(completions=2, parallelism=2, completionMode="Indexed"), execs,
                        now=at(40)))
    assert launches(plan) == []
    s = plan.status
    assert s is not None
    assert s.phase == JobPhase.SUCCEEDED
    assert (s.succeeded, s.failed, s.system_failures, s.active) == (2, 1, 0, 0)
    assert s.completed_indexes == [0, 1]
    assert s.completion_time == at(40)
    complete = s.condition("Complete")
    assert complete is not None and complete.status == "True"
    assert complete.reason == "CompletionsReached"


def test_nonindexed_keeps_completed_indexes_empty() -> None:
    plan = plan_job(inp(job(), [rec(0, state="TASK_FINISHED")]))
    assert plan.status is not None and plan.status.phase == JobPhase.SUCCEEDED
    assert plan.status.completed_indexes == []


def test_new_attempt_follows_highest_recorded_attempt() -> None:
    execs = [rec(0, 0, state="TASK_FAILED"), rec(0, 3, state="TASK_FAILED"),
             rec(0, 1, state="TASK_LOST")]
    plan = plan_job(inp(job(backoffLimit=5, backoff={"initialSeconds": 1}), execs,
                        now=at(1000)))
    assert launches(plan) == [(0, 4)]
    launch = plan.actions[0]
    assert isinstance(launch, Launch) and launch.task_id == tid(0, 4)
    assert launch.env["DOCKET_ATTEMPT"] == "4"


def test_planning_again_after_writing_status_is_quiet() -> None:
    spec = job(completions=3, parallelism=2)
    first = plan_job(inp(spec))
    assert first.status is not None
    execs = [rec(a.index, a.attempt, state="LAUNCHING") for a in first.actions
             if isinstance(a, Launch)]
    again = plan_job(inp(spec, execs, status=first.status))
    assert again.actions == ()
    assert again.status is None
