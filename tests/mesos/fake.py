"""`FakeMesos`: an in-memory `MesosBackend` for unit tests of the controller.

No threads, no sockets: launches are placed on a fake agent either at once (`auto_run`) or
when the test calls `place()`; the test then drives tasks with `finish()` / `update()`.
Updates carry uuids and are remembered until acknowledged, like Mesos, so a test can check
that the controller acknowledges only what it recorded (`unacknowledged`). Like the real
adapter, a placed task gets host ports (consecutive, from 31000) that its updates carry until
it ends, and `update(..., healthy=...)` sends a health result as Mesos' executors do.

Throttles (`set_throttle_source`): `place()` applies the same gate as the adapter's offer
rounds (controller.mesos.throttle) to the launches it is asked to place, tells the source what
it holds, and leaves held launches pending. With `auto_run`, held launches are tried again
whenever the controller reads `events` (as the adapter's ticks look for room), so they start
once the ends that make room are recorded.
"""

from __future__ import annotations

import queue
import threading
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
    ThrottleSource,
    docket_group,
)
from controller.mesos.taskinfo import port_count
from controller.mesos.throttle import Waiting, gate, live_counts


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
        self.throttle_source: ThrottleSource | None = None
        self.held: dict[str, tuple[str, ...]] = {}  # throttle -> held task ids, last place()
        # The controller's threads launch while its pump reads `events` (which may place).
        self._lock = threading.RLock()

    # --- MesosBackend ----------------------------------------------------------------------
    @property
    def events(self) -> queue.Queue[MesosEvent]:
        if self.auto_run and any(self.held.values()):
            self.place()  # the adapter's ticks: held launches may have room now
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
        with self._lock:
            for req in requests:
                if req.task_id not in self.pending and req.task_id not in self.tasks:
                    self.pending[req.task_id] = req
            if self.auto_run:
                self.place()

    def pending_ids(self) -> list[str]:
        return list(self.pending)

    def cancel(self, task_id: str) -> bool:
        with self._lock:
            return self.pending.pop(task_id, None) is not None

    def set_throttle_source(self, source: ThrottleSource | None) -> None:
        self.throttle_source = source

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
        asked = list(known) or [(t, self.agent_id) for t in self.tasks]
        for task_id, agent_id in asked:
            # As Mesos 1.11 answers a partition-aware framework: a task it does not know is
            # TASK_GONE on a named, registered agent, TASK_UNKNOWN when no agent is named.
            state = self.tasks.get(task_id, "TASK_GONE" if agent_id else "TASK_UNKNOWN")
            self._emit(task_id, state, reason="REASON_RECONCILIATION", with_uuid=False)

    def acknowledge(self, update: TaskUpdate) -> None:
        if update.uuid:
            self.unacknowledged.pop(update.uuid, None)
        # An update is acknowledged once recorded: a task's end is in the records now, so a
        # throttle may have room (the adapter notices on its ticks; the fake has none).
        if self.auto_run and any(self.held.values()):
            self.place()

    # --- test controls ---------------------------------------------------------------------
    def place(self, task_ids: Iterable[str] | None = None, state: str = "TASK_RUNNING") -> None:
        """Launch pending tasks (all, or these, as far as the throttles let) and move them to
        `state`."""
        with self._lock:
            self._place(list(task_ids if task_ids is not None else self.pending), state)

    def _admitted(self, task_ids: list[str]) -> list[str]:
        """Those of `task_ids` the throttle gate lets go now, as an offer round would."""
        source = self.throttle_source
        waiting = [Waiting(r.task_id, r.group or docket_group(r.task_id) or r.task_id,
                           r.throttles)
                   for r in self.pending.values() if r.throttles]
        if source is None or not waiting:
            if self.held and source is not None:
                source.held({t: () for t in self.held})
            self.held = {}
            return task_ids
        wanted = set(task_ids)
        judged = gate([w for w in waiting if w.task_id in wanted], source.limits(),
                      live_counts(source.usage(), waiting))
        self.held = judged.held
        source.held(judged.held)
        ok = set(judged.admitted)
        return [t for t in task_ids
                if t in self.pending and (not self.pending[t].throttles or t in ok)]

    def _place(self, task_ids: list[str], state: str) -> None:
        for task_id in self._admitted(task_ids):
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
