"""Tables of the task rules every task-launching kind shares (controller/reconcile/tasks.py,
backoff.py, conditions.py), read without any kind's planner: the Job tests cover them through
plan_job; these pin them down for the next kind that uses them."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api import Backoff, Condition, ExecutionRecord, JobStatus
from controller.reconcile import DeleteOwnerData, Kill, ObjectKey, Plan, UpdateExecution, task_id
from controller.reconcile.backoff import backoff_delay, failure_time, retry_at
from controller.reconcile.conditions import has_condition, update_conditions
from controller.reconcile.tasks import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Outcome,
    came_back,
    current_incarnation,
    kill_actions,
    kill_superseded,
    may_be_running,
    needs_unreachable_mark,
    next_attempts,
    outcome,
    plan_deleted_owner,
    timeout_at,
)
from tests.reconcile.helpers import UID, at, rec

A, S, T, Y, N = (Outcome.ACTIVE, Outcome.SUCCESS, Outcome.TASK_FAILURE,
                 Outcome.SYSTEM_FAILURE, Outcome.NEUTRAL)


@pytest.mark.parametrize(("state", "fields", "expected"), [
    ("LAUNCHING", {}, A),
    ("TASK_STAGING", {}, A),
    ("TASK_RUNNING", {}, A),
    ("TASK_KILLING", {"kill_reason": "Suspended"}, A),
    ("TASK_SOMETHING_NEW", {}, A),  # an unknown state: wait rather than launch a duplicate
    ("TASK_RUNNING", {"failure_class": "task"}, A),  # a failure class says nothing while active
    ("TASK_FINISHED", {}, S),
    ("TASK_FINISHED", {"kill_reason": "Unreachable"}, S),
    ("TASK_FINISHED", {"kill_reason": "NeverLaunched"}, S),
    ("TASK_FAILED", {}, T),
    ("TASK_ERROR", {}, T),
    ("TASK_KILLED", {}, T),  # killed, but not by Docket
    ("TASK_KILLED", {"kill_reason": "TaskTimeout"}, T),
    ("TASK_FAILED", {"reason": "REASON_CONTAINER_LAUNCH_FAILED"}, Y),
    ("TASK_KILLED", {"reason": "REASON_AGENT_REMOVED"}, Y),
    ("TASK_FAILED", {"reason": "REASON_COMMAND_EXECUTOR_FAILED"}, T),
    ("TASK_LOST", {}, Y),
    ("TASK_DROPPED", {}, Y),
    ("TASK_GONE", {}, Y),
    ("TASK_GONE_BY_OPERATOR", {}, Y),
    ("TASK_UNKNOWN", {}, Y),
    ("TASK_UNREACHABLE", {}, Y),
    ("TASK_RUNNING", {"kill_reason": "Unreachable"}, Y),  # came back: still that failure
    ("TASK_UNKNOWN", {"kill_reason": "NeverLaunched"}, N),
    ("TASK_RUNNING", {"kill_reason": "NeverLaunched"}, N),
    ("TASK_KILLED", {"kill_reason": "Suspended"}, N),
    ("TASK_KILLED", {"kill_reason": "SomeKindsOwnReason"}, N),
    ("TASK_LOST", {"kill_reason": "Deleted"}, N),
    ("TASK_FAILED", {"failure_class": "system"}, Y),  # an explicit class wins
    ("TASK_LOST", {"failure_class": "task"}, T),
    ("TASK_KILLED", {"kill_reason": "Suspended", "failure_class": "task"}, T),
])
def test_what_a_recorded_attempt_counts_as(state: str, fields: dict[str, Any],
                                           expected: Outcome) -> None:
    assert outcome(rec(0, state=state, **fields)) == expected


def test_state_sets_are_disjoint_and_final_states_are_never_running() -> None:
    assert not ACTIVE_STATES & TERMINAL_STATES
    for state in TERMINAL_STATES:
        assert not may_be_running(rec(0, state=state))
    for state in ACTIVE_STATES:
        assert may_be_running(rec(0, state=state))


@pytest.mark.parametrize(("state", "kill_reason", "back", "mark"), [
    ("TASK_RUNNING", None, False, False),
    ("TASK_UNREACHABLE", None, False, True),
    ("TASK_UNREACHABLE", "Unreachable", False, False),
    ("TASK_RUNNING", "Unreachable", True, False),
    ("TASK_RUNNING", "NeverLaunched", True, False),
    ("TASK_KILLED", "Unreachable", False, False),
])
def test_written_off_tasks_that_come_back(state: str, kill_reason: str | None, back: bool,
                                          mark: bool) -> None:
    r = rec(0, state=state, kill_reason=kill_reason)
    assert (came_back(r), needs_unreachable_mark(r)) == (back, mark)


def test_a_kill_records_its_reason_first_and_is_resent_until_mesos_is_killing() -> None:
    fresh = rec(0, agent_id="S1")
    assert kill_actions(fresh, "Suspended", 5.0) == [
        UpdateExecution(fresh.task_id, {"kill_reason": "Suspended"}),
        Kill(fresh.task_id, "S1", 5.0, "Suspended")]
    # A reason is recorded: the Kill is sent again under the first reason, not the new one.
    sent = rec(0, agent_id="S1", kill_reason="TaskTimeout")
    assert kill_actions(sent, "Suspended", None) == [Kill(sent.task_id, "S1", None, "TaskTimeout")]
    assert kill_actions(rec(0, state="TASK_KILLING", kill_reason="Suspended"), "X", None) == []


@pytest.mark.parametrize(("fields", "timeout", "expected"), [
    ({}, None, None),
    ({}, 30, at(30)),  # submitted at T0, not started yet
    ({"started_at": at(10)}, 30, at(40)),
    ({"submitted_at": None}, 30, None),
])
def test_timeout_runs_from_start_else_from_submission(fields: dict[str, Any],
                                                      timeout: float | None,
                                                      expected: object) -> None:
    assert timeout_at(rec(0, **fields), timeout) == expected


def test_next_attempt_follows_the_highest_recorded_attempt_of_each_index() -> None:
    records = [rec(0, 0), rec(0, 3), rec(0, 1), rec(2, 0)]
    assert next_attempts(records) == {0: 4, 2: 1}
    assert next_attempts([]) == {}


OWNER = ObjectKey("Job", "default", "hello")


def _of(kind: str, uid: int, state: str = "TASK_RUNNING") -> ExecutionRecord:
    tid = task_id(ObjectKey(kind, "default", "hello"), uid, 0, 0)
    return ExecutionRecord(task_id=tid, index=0, attempt=0, state=state)


def test_incarnations_are_told_apart_by_uid_and_other_kinds_are_ignored() -> None:
    current, old, old_done = _of("Job", UID), _of("Job", UID - 1), _of("Job", 7, "TASK_FAILED")
    other_kind = _of("Service", UID - 1)
    foreign = ExecutionRecord(task_id="not-docket", index=0, attempt=0, state="TASK_RUNNING")
    records = [current, old, old_done, other_kind, foreign]
    assert current_incarnation(records, OWNER, UID) == [current]
    assert kill_superseded(records, OWNER, UID) == kill_actions(old, "Superseded", None)


def test_a_deleted_owner_kills_what_may_run_then_forgets_everything() -> None:
    running, done = _of("Job", UID), _of("Job", UID, "TASK_FINISHED")
    assert plan_deleted_owner("jobs", "default", "hello", None, [running, done]) == Plan(
        tuple(kill_actions(running, "Deleted", None)))
    assert plan_deleted_owner("jobs", "default", "hello", None, [done]) == Plan(
        (DeleteOwnerData("jobs", "default", "hello"),))
    assert plan_deleted_owner("jobs", "default", "hello", JobStatus(), []) == Plan(
        (DeleteOwnerData("jobs", "default", "hello"),))
    assert plan_deleted_owner("jobs", "default", "hello", None, []) == Plan()


B = Backoff(initial_seconds=10, factor=2, max_seconds=360)


@pytest.mark.parametrize(("backoff", "failures", "delay"), [
    (B, 1, 10),
    (B, 2, 20),
    (B, 6, 320),
    (B, 7, 360),  # capped
    (B, 100_000, 360),  # factor^n overflows floats: the cap
    (Backoff(initial_seconds=5, factor=1, max_seconds=60), 50, 5),
])
def test_backoff_grows_by_factor_up_to_the_cap(backoff: Backoff, failures: int,
                                               delay: float) -> None:
    assert backoff_delay(backoff, failures) == delay


def test_retry_waits_from_the_latest_failure_only_after_one() -> None:
    assert retry_at(B, 0, at(0)) is None
    assert retry_at(B, 3, None) is None
    assert retry_at(B, 3, at(100)) == at(140)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"finished_at": at(50), "kill_reason": "TaskTimeout", "started_at": at(1)}, at(50)),
    ({"kill_reason": "TaskTimeout", "started_at": at(1)}, at(31)),  # when it timed out
    ({"kill_reason": "TaskTimeout", "submitted_at": None}, None),
    ({"started_at": at(1)}, at(1)),
    ({}, at(0)),  # only the intent's time is known
])
def test_when_a_failure_happened(fields: dict[str, Any], expected: object) -> None:
    assert failure_time(rec(0, state="TASK_FAILED", **fields), 30) == expected


def _cond(type_: str, status: str, when: float, reason: str = "r") -> Condition:
    return Condition.model_validate({"type": type_, "status": status, "reason": reason,
                                     "lastTransitionTime": at(when)})


def test_last_transition_time_moves_only_when_the_status_changes() -> None:
    recorded = [_cond("Invalid", "True", 0), _cond("Suspended", "True", 0),
                _cond("Complete", "True", 0), _cond("Stale", "True", 0)]
    now = at(60)
    out = update_conditions(
        recorded,
        {"Suspended": ("True", "Again", "new message"), "Invalid": ("False", "SpecValid", "")},
        order=("Complete", "Failed", "Suspended", "Invalid"), keep=("Complete",), now=now)
    assert out == [
        _cond("Complete", "True", 0),  # kept as it was
        Condition(type="Suspended", status="True", reason="Again", message="new message",
                  last_transition_time=at(0)),  # same status: the time stays
        Condition(type="Invalid", status="False", reason="SpecValid", message="",
                  last_transition_time=now),  # flipped: the time moves
    ]  # Stale: outside the order, dropped
    assert update_conditions(recorded, {}, order=("Suspended",), keep=(), now=now) == []
    assert update_conditions([], {"Failed": ("True", "R", "m")}, order=("Failed",), keep=(),
                             now=now)[0].last_transition_time == now


def test_has_condition_looks_at_the_type_whatever_its_status() -> None:
    status = JobStatus(conditions=[_cond("Suspended", "False", 0)])
    assert has_condition(status, "Suspended")
    assert not has_condition(status, "Invalid")
    assert not has_condition(None, "Suspended")
