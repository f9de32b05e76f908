"""A Service instance through the adapter and the embedded Mesos' real agents: its named ports
reach the process as PORT0.. and PORT_<NAME>, its TaskInfo carries the health check, and its
updates carry the host ports it was given. Health checking itself is the agent's business and
is not exercised here (the check's delay is longer than the test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.api.service import HealthCheck
from controller.api.template import TaskTemplate
from controller.localmesos import LocalMesos
from controller.mesos.adapter import MemoryFrameworkIdStore, MesosAdapter, MesosConfig
from controller.mesos.backend import (
    LaunchRequest,
    MesosEvent,
    Subscribed,
    TaskLaunched,
    TaskUpdate,
)
from tests.mesos.test_adapter import poll, update_of, wait_for

pytestmark = pytest.mark.integration

TID = "service.default.web.7.0.0"


@pytest.fixture
def adapter(local_mesos: Callable[..., LocalMesos]) -> Iterator[tuple[LocalMesos, MesosAdapter]]:
    mesos = local_mesos(agents=1, heartbeat_interval=0.3)
    a = MesosAdapter(MesosConfig(master=mesos.master_url, refuse_seconds=5.0,
                                 tick_seconds=0.05), MemoryFrameworkIdStore())
    a.start()
    yield mesos, a
    a.stop()


def test_named_ports_reach_the_task_and_its_updates(
        adapter: tuple[LocalMesos, MesosAdapter], tmp_path: Path) -> None:
    mesos, a = adapter
    sub = wait_for(a, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    out = tmp_path / "ports"
    t = TaskTemplate.model_validate({
        "command": f'echo "$PORT0 $PORT1 $PORT2 $PORTS $PORT_HTTP $PORT_ADMIN_API" > {out}.tmp'
                   f" && mv {out}.tmp {out} && sleep 60",
        "ports": [{"name": "http"}, {"name": "admin-api"}],
        "resources": {"cpus": 0.1, "mem": 16, "ports": 1},
    })
    hc = HealthCheck.model_validate({"type": "HTTP", "portName": "admin-api",
                                     "path": "/ready", "delaySeconds": 3600})
    a.launch([LaunchRequest(TID, t, health_check=hc)])

    seen: list[MesosEvent] = []
    launched = wait_for(a, lambda e: isinstance(e, TaskLaunched) and e.task_id == TID)
    assert isinstance(launched, TaskLaunched) and len(launched.ports) == 3
    ports = launched.ports
    running = wait_for(a, update_of(TID, "TASK_RUNNING"), seen)
    assert isinstance(running, TaskUpdate) and running.host_ports == ports
    assert all(u.host_ports == ports for u in seen if isinstance(u, TaskUpdate))

    poll(out.exists)
    p0, p1, p2 = (str(p) for p in ports)
    assert out.read_text().split() == [p0, p1, p2, f"{p0},{p1},{p2}", p0, p1]

    # The master keeps the TaskInfo's health check as sent: the named port's host port.
    task = mesos.master.all_tasks[(sub.framework_id, TID)]
    assert task.info["health_check"] == {
        "type": "HTTP", "http": {"port": ports[1], "path": "/ready", "scheme": "http"},
        "delay_seconds": 3600.0, "interval_seconds": 60.0, "timeout_seconds": 20.0,
        "consecutive_failures": 3, "grace_period_seconds": 300.0}

    a.kill(TID, launched.agent_id, grace_seconds=0)
    killed = wait_for(a, update_of(TID, "TASK_KILLED"))
    assert isinstance(killed, TaskUpdate) and killed.host_ports == ports
    # Ended: a later answer about it (reconciliation) no longer names ports.
    a.reconcile([(TID, launched.agent_id)])
    answer = wait_for(a, lambda e: isinstance(e, TaskUpdate) and e.task_id == TID
                      and e.reason == "REASON_RECONCILIATION")
    assert isinstance(answer, TaskUpdate) and answer.host_ports is None
