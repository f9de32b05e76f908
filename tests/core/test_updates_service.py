"""record_update for a Service instance's record: health (kept when an update says nothing of
it), host ports (written once), unreachable_at (set on entering TASK_UNREACHABLE) — and still
the same object when an update says nothing new."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controller.api import LAUNCHING, ExecutionRecord
from controller.mesos.backend import TaskUpdate
from controller.updates import record_update

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TID = "service.default.web.7.0.0"
T0 = 1767225610.0
HEALTH = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"


def rec(**kw: object) -> ExecutionRecord:
    return ExecutionRecord(**{"task_id": TID, "index": 0, "attempt": 0, "state": LAUNCHING,
                              "submitted_at": NOW, **kw})


def up(state: str, ts: float = T0, **kw: Any) -> TaskUpdate:
    return TaskUpdate(task_id=TID, state=state, timestamp=ts, agent_id="S1", **kw)


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def apply(record: ExecutionRecord, *updates: TaskUpdate) -> ExecutionRecord:
    for u in updates:
        record = record_update(record, u, "F1", NOW)
    return record


def test_health_is_recorded_with_the_time_it_changed() -> None:
    running = apply(rec(), up("TASK_RUNNING"))
    assert running.healthy is None and running.health_changed_at is None
    healthy = apply(running, up("TASK_RUNNING", T0 + 20, healthy=True, reason=HEALTH))
    assert healthy.healthy is True and healthy.health_changed_at == at(T0 + 20)
    sick = apply(healthy, up("TASK_RUNNING", T0 + 80, healthy=False, reason=HEALTH))
    assert sick.healthy is False and sick.health_changed_at == at(T0 + 80)
    # Mesos repeats every unhealthy result: the time of the change stays.
    again = record_update(sick, up("TASK_RUNNING", T0 + 140, healthy=False, reason=HEALTH),
                          "F1", NOW)
    assert again is sick


def test_an_update_without_health_keeps_the_last_known() -> None:
    sick = apply(rec(), up("TASK_RUNNING"),
                 up("TASK_RUNNING", T0 + 20, healthy=False, reason=HEALTH))
    # A plain RUNNING (a reconciliation answer, a resent update) says nothing of health.
    assert record_update(sick, up("TASK_RUNNING", T0 + 20, reason=HEALTH), "F1",
                         NOW) is sick
    plain = apply(sick, up("TASK_RUNNING", T0 + 30, reason="REASON_RECONCILIATION"))
    assert plain.healthy is False and plain.health_changed_at == at(T0 + 20)
    killing = apply(plain, up("TASK_KILLING", T0 + 40))
    assert killing.healthy is False


def test_killed_by_its_check_is_recorded_unhealthy() -> None:
    healthy = apply(rec(), up("TASK_RUNNING", healthy=True, reason=HEALTH))
    assert healthy.healthy is True and healthy.health_changed_at == at(T0)
    killed = apply(healthy, up("TASK_KILLED", T0 + 9, healthy=False))
    assert (killed.state, killed.healthy, killed.health_changed_at) == (
        "TASK_KILLED", False, at(T0 + 9))


def test_host_ports_are_written_once() -> None:
    staging = apply(rec(), up("TASK_STAGING", host_ports=(31000, 31001)))
    assert staging.host_ports == [31000, 31001]
    # After a controller restart the adapter no longer knows them: the record keeps them.
    running = apply(staging, up("TASK_RUNNING", T0 + 1))
    assert running.host_ports == [31000, 31001]
    # The same ports again change nothing.
    assert record_update(running, up("TASK_RUNNING", T0 + 1, host_ports=(31000, 31001)),
                         "F1", NOW) is running


def test_ports_first_seen_on_a_later_update_are_recorded() -> None:
    running = apply(rec(), up("TASK_RUNNING"))
    assert running.host_ports is None
    assert apply(running, up("TASK_RUNNING", host_ports=(31005,))).host_ports == [31005]


def test_unreachable_at_is_set_on_entering_the_state() -> None:
    running = apply(rec(), up("TASK_RUNNING"))
    lost = apply(running, up("TASK_UNREACHABLE", T0 + 60, reason="REASON_AGENT_REMOVED"))
    assert lost.unreachable_at == at(T0 + 60) and lost.finished_at is None
    # Reconciliation repeats it: the clock of the unreachable strategy keeps running from the
    # first report.
    again = apply(lost, up("TASK_UNREACHABLE", T0 + 120, reason="REASON_RECONCILIATION"))
    assert again.unreachable_at == at(T0 + 60)
    assert record_update(again, up("TASK_UNREACHABLE", T0 + 120,
                                   reason="REASON_RECONCILIATION"), "F1", NOW) is again
    # Back: kept, so the planner can tell a returning original; the state says it is back.
    back = apply(again, up("TASK_RUNNING", T0 + 200))
    assert back.state == "TASK_RUNNING" and back.unreachable_at == at(T0 + 60)
    # Unreachable once more: a new episode, a new time.
    lost2 = apply(back, up("TASK_UNREACHABLE", T0 + 300))
    assert lost2.unreachable_at == at(T0 + 300)


def test_a_record_unreachable_without_a_time_gets_one() -> None:
    # Written before the field existed.
    old = rec(state="TASK_UNREACHABLE", agent_id="S1")
    assert apply(old, up("TASK_UNREACHABLE", T0 + 5)).unreachable_at == at(T0 + 5)


def test_a_final_record_takes_no_health_or_ports() -> None:
    done = apply(rec(), up("TASK_KILLED"))
    late = up("TASK_RUNNING", T0 + 5, healthy=True, host_ports=(31000,))
    assert record_update(done, late, "F1", NOW) is done


def test_updates_of_a_task_without_checks_or_ports_write_none_of_it() -> None:
    r = apply(rec(), up("TASK_RUNNING"), up("TASK_FINISHED", T0 + 1))
    assert (r.healthy, r.health_changed_at, r.host_ports, r.unreachable_at) == (
        None, None, None, None)
    assert "healthy" not in r.model_dump(exclude_none=True)
