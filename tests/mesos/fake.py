"""`FakeMesos`: an in-memory `MesosBackend` for unit tests of the controller.

No threads, no sockets: launches are placed on a fake agent either at once (`auto_run`) or
when the test calls `place()`; the test then drives tasks with `finish()` / `update()`.
Updates carry uuids and are remembered until acknowledged, like Mesos, so a test can check
that the controller acknowledges only what it recorded (`unacknowledged`). Like the real
adapter, a placed task gets host ports (consecutive, from 31000) that its updates carry until
it ends, and `update(..., healthy=...)` sends a health result as Mesos' executors do.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterable
from typing import Any

from controller.mesos.backend import (
    TERMINAL_STATES,
    Disconnected,
    LaunchRequest,
    MesosEvent,
    Subscribed,
    TaskLaunched,
    TaskUpdate,
)
from controller.mesos.taskinfo import port_count


class FakeMesos:
    def __init__(self, *, auto_run: bool = True, agent_id: str = "agent-0",
                 hostname: str = "fake-host", framework_id: str = "fake-framework") -> None:
        self.auto_run = auto_run
        self.agent_id = agent_id
        self.hostname = hostname
        self.framework_id = framework_id
        self._events: queue.Queue[MesosEvent] = queue.Queue()
        self.pending: dict[str, LaunchRequest] = {}
        self.tasks: dict[str, str] = {}  # task id -> current state, while not terminal
        self.launched: list[str] = []  # every task id ever launched, in order
        self.requests: dict[str, LaunchRequest] = {}  # task id -> what it was launched as
        self.killed: list[str] = []
        self.unacknowledged: dict[str, TaskUpdate] = {}  # uuid -> update
        self.host_ports: dict[str, tuple[int, ...]] = {}  # task id -> ports, while it runs
        self._next_port = 31000
        self._connected = False

    # --- MesosBackend ----------------------------------------------------------------------
    @property
    def events(self) -> queue.Queue[MesosEvent]:
        return self._events

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def pending_count(self) -> int:
        return len(self.pending)

    def start(self) -> None:
        self._connected = True
        self._events.put(Subscribed(self.framework_id))

    def stop(self) -> None:
        if self._connected:
            self._connected = False
            self._events.put(Disconnected("stopped"))

    def launch(self, requests: Iterable[LaunchRequest]) -> None:
        for req in requests:
            if req.task_id not in self.pending and req.task_id not in self.tasks:
                self.pending[req.task_id] = req
        if self.auto_run:
            self.place()

    def cancel(self, task_id: str) -> bool:
        return self.pending.pop(task_id, None) is not None

    def kill(self, task_id: str, agent_id: str | None = None,
             grace_seconds: float | None = None) -> None:
        self.pending.pop(task_id, None)
        self.killed.append(task_id)
        if task_id in self.tasks:
            self.update(task_id, "TASK_KILLED", reason="REASON_TASK_KILLED_DURING_LAUNCH"
                        if self.tasks[task_id] == "TASK_STAGING" else None)
        else:
            self._emit(task_id, "TASK_LOST", reason="REASON_RECONCILIATION", with_uuid=False)

    def reconcile(self, known: Iterable[tuple[str, str | None]]) -> None:
        ids = [t for t, _ in known] or list(self.tasks)
        for task_id in ids:
            state = self.tasks.get(task_id, "TASK_GONE")
            self._emit(task_id, state, reason="REASON_RECONCILIATION", with_uuid=False)

    def acknowledge(self, update: TaskUpdate) -> None:
        if update.uuid:
            self.unacknowledged.pop(update.uuid, None)

    # --- test controls ---------------------------------------------------------------------
    def place(self, task_ids: Iterable[str] | None = None, state: str = "TASK_RUNNING") -> None:
        """Launch pending tasks (all, or these) and move them to `state`."""
        for task_id in list(task_ids if task_ids is not None else self.pending):
            req = self.pending.pop(task_id, None)
            if req is None:
                continue
            count = port_count(req.template)
            if count:
                self.host_ports[task_id] = tuple(range(self._next_port, self._next_port + count))
                self._next_port += count
            self.launched.append(task_id)
            self.requests[task_id] = req
            self.tasks[task_id] = "TASK_STAGING"
            self._events.put(TaskLaunched(task_id, self.agent_id, self.hostname, "offer",
                                          self.host_ports.get(task_id, ())))
            self.update(task_id, state)

    def finish(self, task_id: str, state: str = "TASK_FINISHED", exit_code: int = 0) -> None:
        message = f"Command exited with status {exit_code}"
        self.update(task_id, state, message=message)

    def update(self, task_id: str, state: str, *, reason: str | None = None,
               message: str | None = None, healthy: bool | None = None) -> None:
        """Send an update; `healthy` makes it a health check result (reason
        REASON_TASK_HEALTH_CHECK_STATUS_UPDATED unless another is given), as Mesos does."""
        if healthy is not None and reason is None:
            reason = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
        self._emit(task_id, state, reason=reason, message=message, with_uuid=True,
                   healthy=healthy)
        if state in TERMINAL_STATES:
            self.tasks.pop(task_id, None)
            self.host_ports.pop(task_id, None)
        else:
            self.tasks[task_id] = state

    def drain(self) -> list[MesosEvent]:
        out: list[MesosEvent] = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def _emit(self, task_id: str, state: str, *, reason: str | None = None,
              message: str | None = None, with_uuid: bool, healthy: bool | None = None
              ) -> None:
        status: dict[str, Any] = {
            "task_id": {"value": task_id}, "state": state, "agent_id": {"value": self.agent_id},
            "timestamp": time.time(), "source": "SOURCE_EXECUTOR",
        }
        if reason:
            status["reason"] = reason
        if message:
            status["message"] = message
        if with_uuid:
            status["uuid"] = uuid.uuid4().hex
        if healthy is not None:
            status["healthy"] = healthy
        event = TaskUpdate.from_status(status, self.hostname, self.host_ports.get(task_id))
        if event.uuid:
            self.unacknowledged[event.uuid] = event
        self._events.put(event)
