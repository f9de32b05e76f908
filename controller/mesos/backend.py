"""The seam between the controller and Mesos: the `MesosBackend` protocol and the typed events
and requests that cross it.

The controller depends only on this module, never on pymesos, so its logic can be tested with
an in-memory backend and the real adapter (`controller.mesos.adapter`) can be swapped or
restarted without the controller noticing anything but events.
"""

from __future__ import annotations

import queue
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from controller.api.service import HealthCheck
from controller.api.template import TaskTemplate

TERMINAL_STATES = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
})

_EXIT_STATUS = re.compile(r"exited with status (-?\d+)")
_DOCKET_TASK_ID = re.compile(
    r"^(?P<kind>[A-Za-z]+)\.(?P<namespace>[a-z0-9-]+)\.(?P<name>[a-z0-9-]+)\.(?P<uid>\d+)"
    r"\.(?P<index>\d+)\.(?P<attempt>\d+)$"
)


def docket_group(task_id: str) -> str | None:
    """The object a Docket task id belongs to (`<kind>.<namespace>.<name>.<uid>`), or None
    when the id is not in Docket's format `<kind>.<namespace>.<name>.<uid>.<index>.<attempt>`.
    """
    m = _DOCKET_TASK_ID.match(task_id)
    if m is None:
        return None
    return ".".join(m.group("kind", "namespace", "name", "uid"))


def exit_code_of(message: str | None) -> int | None:
    """The exit code Mesos reports in a status message ("Command exited with status 3")."""
    if not message:
        return None
    m = _EXIT_STATUS.search(message)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class LaunchRequest:
    """A task to launch on the next offers that fit. `group` is what its placement
    constraints count over; by default the owning object read from the task id."""

    task_id: str
    template: TaskTemplate
    group: str | None = None
    name: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    max_completion_seconds: float | None = None
    health_check: HealthCheck | None = None
    """Sent in TaskInfo.health_check: the agent runs it (a Service's instances)."""
    role: str | None = None
    """The Mesos role to launch under (the namespace's, from the policy); None: the
    framework's only role."""
    throttles: tuple[str, ...] = ()
    """The policy's throttles this task counts against (issue 16): it is launched only while
    each has room, judged at offer time."""
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Environment variables whose values are secrets, sent as Mesos SECRET variables.
    Resolved on the way to Mesos, kept in memory only, never in a repr or a log."""


@dataclass(frozen=True)
class TaskUpdate:
    """A task status from Mesos. Acknowledge it (`MesosBackend.acknowledge`) once recorded;
    updates without a uuid (answers to reconciliation) need no acknowledgement.

    `healthy` is TaskStatus.healthy: set only by updates about a health check (reason
    REASON_TASK_HEALTH_CHECK_STATUS_UPDATED), by answers to reconciliation of a checked task,
    and on the TASK_KILLED of a task its check killed; None says nothing about health.

    `host_ports` are the host ports the backend gave the task at launch, PORT0..PORTn in
    order. Mesos' statuses do not carry them: the backend remembers them in memory from the
    launch until the task ends, so they are None for a task without ports, for an update the
    backend did not launch (an orphan) and, after a controller restart, for every task
    launched before it (the execution record keeps what it recorded before).
    """

    task_id: str
    state: str
    reason: str | None = None
    message: str | None = None
    source: str | None = None
    agent_id: str | None = None
    hostname: str | None = None
    timestamp: float | None = None
    uuid: str | None = None
    exit_code: int | None = None
    healthy: bool | None = None
    host_ports: tuple[int, ...] | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @staticmethod
    def from_status(status: Mapping[str, Any], hostname: str | None = None,
                    host_ports: tuple[int, ...] | None = None) -> TaskUpdate:
        message = status.get("message")
        healthy = status.get("healthy")
        agent = status.get("agent_id") or {}
        ts = status.get("timestamp")
        return TaskUpdate(
            task_id=str(status["task_id"]["value"]),
            state=str(status["state"]),
            reason=status.get("reason"),
            message=message,
            source=status.get("source"),
            agent_id=agent.get("value"),
            hostname=hostname,
            timestamp=float(ts) if ts is not None else None,
            uuid=status.get("uuid"),
            exit_code=exit_code_of(message),
            healthy=healthy if isinstance(healthy, bool) else None,
            host_ports=host_ports,
        )


@dataclass(frozen=True)
class TaskLaunched:
    """The ACCEPT carrying this task was sent: where it is going."""

    task_id: str
    agent_id: str
    hostname: str
    offer_id: str
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class Subscribed:
    """Connected (again) to the master as this framework. Explicit and then implicit
    reconciliation have been requested; their answers follow as TaskUpdates."""

    framework_id: str


@dataclass(frozen=True)
class Disconnected:
    reason: str


MesosEvent = TaskUpdate | TaskLaunched | Subscribed | Disconnected


class ThrottleSource(Protocol):
    """What the offer matcher asks about throttles (the policy's limits across objects): the
    limit of each, and how many tasks count against each now, from the recorded executions
    (so it holds across controller restarts): every record not ended, LAUNCHING intents
    included — those of launches still waiting in this process's pending set too, which the
    matcher subtracts itself. `held` is told, after each round of offers, which waiting task
    ids each throttle holds back, so their objects can say so."""

    def limits(self) -> Mapping[str, int]: ...

    def usage(self) -> Mapping[str, int]: ...

    def held(self, waiting: Mapping[str, tuple[str, ...]]) -> None: ...


@runtime_checkable
class MesosBackend(Protocol):
    """What the controller needs from Mesos. Every method is thread-safe and returns at once;
    calls reach Mesos asynchronously and results come back as events."""

    @property
    def events(self) -> queue.Queue[MesosEvent]: ...

    @property
    def connected(self) -> bool: ...

    @property
    def pending_count(self) -> int: ...

    def pending_ids(self) -> list[str]:
        """The launches handed over and still waiting for an offer."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None:
        """Disconnect, leaving the framework and its tasks running (failover)."""

    def launch(self, requests: Iterable[LaunchRequest]) -> None:
        """Queue launches; they are matched against the next offers."""

    def cancel(self, task_id: str) -> bool:
        """Drop a queued launch not yet sent. False when it was not queued (any more)."""

    def kill(self, task_id: str, agent_id: str | None = None,
             grace_seconds: float | None = None) -> None: ...

    def reconcile(self, known: Iterable[tuple[str, str | None]]) -> None:
        """Ask for the state of these (task id, agent id) pairs; empty asks for all tasks."""

    def acknowledge(self, update: TaskUpdate) -> None: ...
