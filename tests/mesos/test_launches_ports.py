"""`Launches` without a master: the host ports it gives a task at ACCEPT ride on that task's
updates until it ends, a health check reaches the TaskInfo, and a check on a port the task
lacks fails the launch at once."""

from __future__ import annotations

import queue
from typing import Any

from controller.api.service import HealthCheck
from controller.api.template import TaskTemplate
from controller.mesos.backend import LaunchRequest, MesosEvent, TaskLaunched, TaskUpdate
from controller.mesos.config import MesosConfig
from controller.mesos.launches import Launches
from tests.mesos.offers_util import offer_json

TID = "service.default.web.7.0.0"


class Calls:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.reconciled: list[list[tuple[str, str | None]]] = []

    def call(self, what: str, body: dict[str, Any]) -> bool:
        self.sent.append((what, body))
        return self.ok

    def reconcile(self, known: Any) -> None:
        self.reconciled.append(list(known))


def launches(calls: Calls) -> tuple[Launches, queue.Queue[MesosEvent]]:
    events: queue.Queue[MesosEvent] = queue.Queue()
    lm = Launches(MesosConfig(master="127.0.0.1:5050"), events, call=calls.call,
                  reconcile=calls.reconcile, master=lambda: None,
                  group_of=lambda _t: "g", clock=lambda: 0.0)
    return lm, events


def drain(events: queue.Queue[MesosEvent]) -> list[MesosEvent]:
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


def status(task_id: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"task_id": {"value": task_id}, "state": state, "agent_id": {"value": "agent-h1"},
            **kw}


WEB = TaskTemplate.model_validate({"command": "serve", "ports": [{"name": "http"}],
                                   "resources": {"ports": 1}})


def test_host_ports_ride_on_updates_until_the_task_ends() -> None:
    calls = Calls()
    lm, events = launches(calls)
    hc = HealthCheck.model_validate({"type": "HTTP", "portName": "http"})
    assert lm.add([LaunchRequest(TID, WEB, health_check=hc),
                   LaunchRequest("job.default.a.1.0.0", TaskTemplate.model_validate(
                       {"command": "true"}))])
    lm.on_offers([offer_json("o1", "h1", ports=[(31000, 31010)])])
    (what, body), = calls.sent
    assert what == "ACCEPT"
    infos = body["accept"]["operations"][0]["launch"]["task_infos"]
    assert infos[0]["health_check"]["http"]["port"] == 31000
    launched = [e for e in drain(events) if isinstance(e, TaskLaunched)]
    assert [(e.task_id, e.ports) for e in launched] == [(TID, (31000, 31001)),
                                                        ("job.default.a.1.0.0", ())]

    running = lm.on_update(status(TID, "TASK_RUNNING"))
    assert running.host_ports == (31000, 31001) and running.healthy is None
    healthy = lm.on_update(status(TID, "TASK_RUNNING", healthy=True,
                                  reason="REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"))
    assert healthy.healthy is True and healthy.host_ports == (31000, 31001)
    # Without ports, nothing is kept: None, as for a task launched before a restart.
    assert lm.on_update(status("job.default.a.1.0.0", "TASK_RUNNING")).host_ports is None
    # Unreachable may come back: kept.
    assert lm.on_update(status(TID, "TASK_UNREACHABLE")).host_ports == (31000, 31001)
    killed = lm.on_update(status(TID, "TASK_KILLED", healthy=False))
    assert killed.host_ports == (31000, 31001) and killed.healthy is False
    # Ended: forgotten.
    assert lm.on_update(status(TID, "TASK_KILLED")).host_ports is None


def test_unknown_drops_the_ports_too() -> None:
    lm, _ = launches(Calls())
    lm.add([LaunchRequest(TID, WEB)])
    lm.on_offers([offer_json("o1", "h1", ports=[(31000, 31010)])])
    assert lm.on_update(status(TID, "TASK_UNKNOWN")).host_ports == (31000, 31001)
    assert lm.on_update(status(TID, "TASK_RUNNING")).host_ports is None


def test_ports_are_kept_when_the_accept_seems_to_fail() -> None:
    # The master may have the task anyway: the answers to the reconciliation are its updates.
    calls = Calls(ok=False)
    lm, events = launches(calls)
    lm.add([LaunchRequest(TID, WEB)])
    lm.on_offers([offer_json("o1", "h1", ports=[(31000, 31010)])])
    assert calls.reconciled == [[(TID, "agent-h1")]]
    assert not [e for e in drain(events) if isinstance(e, TaskLaunched)]
    assert lm.on_update(status(TID, "TASK_RUNNING")).host_ports == (31000, 31001)


def test_a_check_on_a_missing_port_fails_the_launch_at_once() -> None:
    calls = Calls()
    lm, events = launches(calls)
    hc = HealthCheck.model_validate({"type": "TCP", "portIndex": 5})
    assert not lm.add([LaunchRequest(TID, WEB, health_check=hc)])
    (error,) = drain(events)
    assert isinstance(error, TaskUpdate) and error.state == "TASK_ERROR"
    assert error.reason == "REASON_TASK_INVALID" and "PORT5 does not exist" in (
        error.message or "")
    assert lm.pending_count == 0


def test_tasks_of_a_failed_accept_stay_to_reconcile_until_mesos_answers() -> None:
    """Regression (a chaos master_failover run): the master died with an ACCEPT, the
    reconciliation sent at once failed too, and the controller — which still counted the
    tasks as handed over, so kept them out of its own reconciliation — never asked again: the
    tasks stayed LAUNCHING forever. They are kept as uncertain until any update names them,
    and the adapter reconciles them on every subscription."""
    calls = Calls(ok=False)
    lm, _ = launches(calls)
    lm.add([LaunchRequest(TID, WEB)])
    lm.on_offers([offer_json("o1", "h1", ports=[(31000, 31010)])])
    assert lm.uncertain() == [(TID, "agent-h1")]
    lm.on_update(status(TID, "TASK_GONE"))
    assert lm.uncertain() == []
