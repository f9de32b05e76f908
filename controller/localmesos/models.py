"""What the master knows: its frameworks, agents, offers and tasks, as plain records, and the
ids it mints for them.

These are data, not behaviour: every part of the master (master.py and the modules it is made
of) and the read endpoints (state_json.py) share them, so they live apart from any one part.
Anything that changes them does so under the master lock.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.localmesos.resources import Resources
from controller.localmesos.stream import Stream
from controller.localmesos.timers import Timer

MESOS_VERSION = "1.11.0"

TERMINAL_STATES = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
    "TASK_GONE", "TASK_GONE_BY_OPERATOR",
})
# States only partition-aware frameworks may see; the others get TASK_LOST instead.
PARTITION_AWARE_STATES = frozenset({
    "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_DROPPED", "TASK_UNKNOWN",
})

# The master's capabilities (src/master/constants.cpp MASTER_CAPABILITIES), named as in its
# v0 MasterInfo, and those of them that v1's MasterInfo.Capability.Type of 1.11.0 knows.
MASTER_CAPABILITIES = ("AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2")
V1_MASTER_CAPABILITIES = frozenset({"UNKNOWN", "AGENT_UPDATE", "AGENT_DRAINING"})


def capability_types(info: dict[str, Any]) -> set[str]:
    """The capability types a FrameworkInfo declares."""
    return {str(c.get("type")) for c in info.get("capabilities") or [] if isinstance(c, dict)}


def framework_roles(info: dict[str, Any]) -> list[str]:
    """protobuf::framework::getRoles: `roles` for MULTI_ROLE frameworks (none: no offers),
    else `role` ("*" by default)."""
    if "MULTI_ROLE" in capability_types(info):
        return [str(r) for r in info.get("roles") or []]
    return [str(info.get("role", "*"))]


# Random UUIDs are made under the master lock for every status update and task. os.urandom
# (and so uuid.uuid4) is a getrandom() syscall that lets go of the GIL, which under load hands
# the GIL to a thread that then queues on the master lock. A PRNG seeded from os.urandom makes
# the same version-4 UUIDs (unique, not secret: nothing here needs them unguessable) without one.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)  # a forked child must not repeat them
_VERSION_4 = (0xF000 << 64 | 0xC000 << 48, 0x4000 << 64 | 0x8000 << 48)


def _uuid4_int() -> int:
    """128 random bits with the version 4 and RFC 4122 variant bits set, as uuid.UUID does."""
    clear, set_bits = _VERSION_4
    return (_rng.getrandbits(128) & ~clear) | set_bits


def new_uuid() -> str:
    """A random (version 4) UUID in its canonical text form, like str(uuid.uuid4())."""
    return str(uuid.UUID(int=_uuid4_int()))


def new_uuid_bytes() -> str:
    """A status update uuid (random, version 4, RFC 4122 variant) as the JSON encoding of a
    proto `bytes` field: base64."""
    return base64.b64encode(_uuid4_int().to_bytes(16, "big")).decode()


def last_health(statuses: list[dict[str, Any]]) -> bool | None:
    """protobuf::getTaskHealth: the `healthy` of a task's latest status, if it has one. Only
    the latest status of each state is kept, so that is the latest TASK_RUNNING's (or a
    terminal one's, as when a failing health check killed the task)."""
    if statuses and "healthy" in statuses[-1]:
        return bool(statuses[-1]["healthy"])
    return None


@dataclass
class Task:
    task_id: str
    name: str
    framework_id: str
    agent_id: str
    resources: Resources
    info: dict[str, Any]
    role: str
    state: str = "TASK_STAGING"
    statuses: list[dict[str, Any]] = field(default_factory=list)
    agent_statuses: list[dict[str, Any]] = field(default_factory=list)  # the agent's Task
    pending: deque[dict[str, Any]] = field(default_factory=deque)  # unacknowledged updates
    retry_interval: float = 0.0
    unreachable_time: float | None = None
    resources_released: bool = False
    agent_state: str = "TASK_STAGING"  # what the agent knows, also while partitioned
    held: list[dict[str, Any]] = field(default_factory=list)  # updates made while partitioned
    # The command executor's container, as the agent's containerizer reports it in every
    # update the executor sends (Mesos' container ids are UUIDs).
    container_id: str = field(default_factory=new_uuid)
    executor_pid: int | None = None
    # The head of `pending` and its UPDATE event's RecordIO encoding: a resend (every retry
    # interval until acknowledged) writes the same bytes without encoding them again.
    head_record: tuple[dict[str, Any], bytes] | None = field(default=None, repr=False)

    @property
    def executor_id(self) -> str:
        return self.task_id  # the command executor is named after its task

    @property
    def latest_container_status(self) -> dict[str, Any] | None:
        """What the master copies into its own updates of the task (getTaskContainerStatus)."""
        for entry in reversed(self.statuses):
            if "container_status" in entry:
                return dict(entry["container_status"])
        return None

    @property
    def healthy(self) -> bool | None:
        """What the master copies into its own updates of the task (getTaskHealth)."""
        return last_health(self.statuses)

    @property
    def status_update_state(self) -> str:
        return str(self.pending[0]["state"]) if self.pending else self.state


@dataclass
class Framework:
    framework_id: str
    info: dict[str, Any]
    stream: Stream | None = None
    connected: bool = False
    active: bool = False
    registered_time: float = field(default_factory=time.time)
    unregistered_time: float | None = None
    removal_timer: Timer | None = None
    heartbeat_timer: Timer | None = None
    suppressed: set[str] = field(default_factory=set)
    # Offer filters per (role, agent id), as Mesos' allocator keeps them: a REVIVE of one role
    # clears that role's filters only.
    filters: dict[tuple[str, str], list[tuple[Resources, float]]] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    unreachable_tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque[Task] = field(default_factory=lambda: deque(maxlen=10000))
    offers: set[str] = field(default_factory=set)

    @property
    def capabilities(self) -> set[str]:
        return capability_types(self.info)

    @property
    def partition_aware(self) -> bool:
        return "PARTITION_AWARE" in self.capabilities

    @property
    def roles(self) -> list[str]:
        return framework_roles(self.info)

    @property
    def failover_timeout(self) -> float:
        return float(self.info.get("failover_timeout", 0.0))


class AgentRuntime(Protocol):
    """What runs tasks on an agent: local processes (real) or timers (simulated)."""

    def launch(self, task: Task) -> None: ...

    def kill(self, task: Task, grace_seconds: float, killing_state: bool) -> None: ...

    def shutdown(self) -> None: ...


@dataclass
class Agent:
    agent_id: str
    hostname: str
    port: int
    total: Resources
    attributes: list[dict[str, Any]]
    runtime: AgentRuntime
    pid_name: str = "slave(1)"
    used: Resources = field(default_factory=Resources)
    offered: Resources = field(default_factory=Resources)
    state: str = "active"  # active | unreachable | gone
    registered_time: float = field(default_factory=time.time)
    unreachable_time: float | None = None
    tasks: dict[tuple[str, str], Task] = field(default_factory=dict)
    work_dir: str | None = None

    _available: tuple[Resources, Resources, Resources, bool] | None = field(
        default=None, repr=False, compare=False)

    def _availability(self) -> tuple[Resources, Resources, Resources, bool]:
        # Resources are immutable and replaced on every change, so identity tells whether
        # the cached difference still holds; allocation rounds over 1,000 agents then cost
        # no arithmetic for agents whose accounting did not move.
        cached = self._available
        if cached is None or cached[0] is not self.used or cached[1] is not self.offered:
            value = self.total - self.used - self.offered
            cached = self._available = (self.used, self.offered, value, value.empty)
        return cached

    @property
    def available(self) -> Resources:
        return self._availability()[2]

    @property
    def has_available(self) -> bool:
        return not self._availability()[3]


@dataclass
class Offer:
    offer_id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    timer: Timer | None = None


@dataclass
class MasterConfig:
    host: str = "127.0.0.1"
    port: int = 5050
    hostname: str = field(default_factory=socket.gethostname)
    heartbeat_interval: float = 15.0
    allocation_interval: float = 1.0
    offer_timeout: float | None = None
    default_refuse_seconds: float = 5.0
    status_update_retry_min: float = 10.0
    status_update_retry_max: float = 600.0
    failover_timeout_cap: float | None = None
