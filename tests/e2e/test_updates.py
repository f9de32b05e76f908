"""The pure rules of recording a Mesos status update into an execution record
(controller.updates): idempotence, final states, times and the sandbox path."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.api import LAUNCHING, ExecutionRecord
from controller.mesos.backend import TaskUpdate
from controller.updates import end_reason, record_update, sandbox_path

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TID = "job.default.a.7.0.0"


def rec(**kw: object) -> ExecutionRecord:
    return ExecutionRecord(**{"task_id": TID, "index": 0, "attempt": 0, "state": LAUNCHING,
                              "submitted_at": NOW, **kw})


def up(state: str, ts: float | None = 1767225610.0, **kw: object) -> TaskUpdate:
    return TaskUpdate(task_id=TID, state=state, timestamp=ts, **kw)  # type: ignore[arg-type]


def test_running_sets_agent_host_start_and_sandbox() -> None:
    r = record_update(rec(), up("TASK_RUNNING", agent_id="S1", hostname="h1"), "F1", NOW)
    assert (r.state, r.agent_id, r.hostname) == ("TASK_RUNNING", "S1", "h1")
    assert r.started_at == datetime.fromtimestamp(1767225610.0, UTC)
    assert r.sandbox_path == sandbox_path("F1", TID) == \
        f"/frameworks/F1/executors/{TID}/runs/latest"


def test_finish_sets_exit_code_finish_time_and_duration() -> None:
    running = record_update(rec(), up("TASK_RUNNING", agent_id="S1"), "F1", NOW)
    done = record_update(running, up("TASK_FAILED", ts=1767225613.5, agent_id="S1",
                                     message="Command exited with status 3", exit_code=3),
                         "F1", NOW)
    assert done.state == "TASK_FAILED" and done.exit_code == 3
    assert done.duration_seconds == 3.5
    assert end_reason(done) == "failed"


def test_the_same_update_again_changes_nothing() -> None:
    running = record_update(rec(), up("TASK_RUNNING", agent_id="S1"), "F1", NOW)
    assert record_update(running, up("TASK_RUNNING", agent_id="S1"), "F1", NOW) is running


def test_a_final_state_is_kept_against_late_updates() -> None:
    done = record_update(rec(), up("TASK_FINISHED", agent_id="S1"), "F1", NOW)
    assert record_update(done, up("TASK_RUNNING", agent_id="S1"), "F1", NOW) is done
    assert record_update(done, up("TASK_LOST"), "F1", NOW) is done


def test_unreachable_can_come_back() -> None:
    lost = record_update(rec(), up("TASK_UNREACHABLE", agent_id="S1"), "F1", NOW)
    assert lost.finished_at is None
    back = record_update(lost, up("TASK_RUNNING", agent_id="S1"), "F1", NOW)
    assert back.state == "TASK_RUNNING"


def test_kill_reasons_name_the_end_reason() -> None:
    assert end_reason(rec(state="TASK_KILLED", kill_reason="TaskTimeout")) == "timeout"
    assert end_reason(rec(state="TASK_KILLED", kill_reason="DeadlineExceeded")) == "deadline"
    assert end_reason(rec(state="TASK_GONE_BY_OPERATOR")) == "gone"


def test_unwanted_tasks_killed_are_not_failures() -> None:
    from controller.updates import is_failure

    assert not is_failure(rec(state="TASK_FINISHED"))
    for reason in ("Suspended", "Deleted", "Superseded", "NotNeeded", "JobFinished"):
        assert not is_failure(rec(state="TASK_KILLED", kill_reason=reason)), reason
    for reason in ("TaskTimeout", "DeadlineExceeded", "Unreachable", None):
        assert is_failure(rec(state="TASK_KILLED", kill_reason=reason)), reason
    assert is_failure(rec(state="TASK_FAILED"))
    assert is_failure(rec(state="TASK_LOST"))
