"""One behavioural suite run against every `MesosBackend`: the real adapter on localmesos and
the in-memory fake the controller's unit tests use, so the fake cannot drift from reality."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator

import pytest

from controller.api.template import TaskTemplate
from controller.localmesos import LocalMesos
from controller.mesos.adapter import MemoryFrameworkIdStore, MesosAdapter, MesosConfig
from controller.mesos.backend import (
    LaunchRequest,
    MesosBackend,
    MesosEvent,
    Subscribed,
    TaskLaunched,
    TaskUpdate,
)
from tests.mesos.fake import FakeMesos

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "adapter"])
def backend(request: pytest.FixtureRequest,
            local_mesos: Callable[..., LocalMesos]) -> Iterator[MesosBackend]:
    b: MesosBackend
    if request.param == "fake":
        b = FakeMesos()
    else:
        mesos = local_mesos()
        b = MesosAdapter(MesosConfig(master=mesos.master_url, tick_seconds=0.05),
                         MemoryFrameworkIdStore())
    b.start()
    yield b
    b.stop()


def next_event(b: MesosBackend, pred: Callable[[MesosEvent], bool],
               timeout: float = 15.0) -> MesosEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = b.events.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, TaskUpdate):
            b.acknowledge(event)
        if pred(event):
            return event
    raise AssertionError("expected event did not come")


def test_launch_reconcile_kill(backend: MesosBackend) -> None:
    assert isinstance(next_event(backend, lambda e: isinstance(e, Subscribed)), Subscribed)
    assert backend.connected
    task_id = "job.default.conf.1.0.0"
    t = TaskTemplate.model_validate({"command": "sleep 30", "resources": {"cpus": 0.1,
                                                                          "mem": 16}})
    backend.launch([LaunchRequest(task_id, t)])
    launched = next_event(backend, lambda e: isinstance(e, TaskLaunched))
    assert isinstance(launched, TaskLaunched) and launched.task_id == task_id
    running = next_event(backend, lambda e: isinstance(e, TaskUpdate)
                         and e.state == "TASK_RUNNING")
    assert isinstance(running, TaskUpdate) and running.uuid
    assert running.agent_id == launched.agent_id
    assert not backend.cancel(task_id)  # already sent: cancel cannot take it back
    assert backend.pending_count == 0

    backend.reconcile([(task_id, running.agent_id)])
    answer = next_event(backend, lambda e: isinstance(e, TaskUpdate)
                        and e.reason == "REASON_RECONCILIATION")
    assert isinstance(answer, TaskUpdate)
    assert answer.state == "TASK_RUNNING" and answer.uuid is None

    backend.kill(task_id, running.agent_id)
    killed = next_event(backend, lambda e: isinstance(e, TaskUpdate) and e.terminal)
    assert isinstance(killed, TaskUpdate) and killed.state == "TASK_KILLED"
    backend.stop()
    assert not backend.connected
