"""What the Mesos adapter is configured with, and where it keeps its FrameworkID.

Apart from the adapter so that its collaborators (offer handling, ack senders) and the
callers that build a config need not import the module that imports pymesos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

WEEK_SECONDS = 7 * 24 * 3600.0


class FrameworkIdStore(Protocol):
    """Where the FrameworkID survives restarts (the controller keeps it in etcd)."""

    def get(self) -> str | None: ...

    def set(self, framework_id: str) -> None: ...


class MemoryFrameworkIdStore:
    def __init__(self, framework_id: str | None = None) -> None:
        self.framework_id = framework_id

    def get(self) -> str | None:
        return self.framework_id

    def set(self, framework_id: str) -> None:
        self.framework_id = framework_id


@dataclass(frozen=True)
class MesosConfig:
    master: str
    """`host:port` or `http://host:port` of the master (plain HTTP: pymesos has no TLS);
    masters in HA as a comma-separated list of those (tried in turn, a standby's redirect
    followed), or their ZooKeeper group `zk://host:port[,host:port]/path` (masters.py)."""
    name: str = "docket"
    role: str | None = None
    roles: tuple[str, ...] = ()
    """Several roles: subscribes with MULTI_ROLE. Exclusive with `role`."""
    principal: str | None = None
    secret: str | None = field(default=None, repr=False)
    """HTTP basic secret of `principal` (secret.py reads it from its file); never logged."""
    user: str | None = None
    """Unix user tasks run as; default the current user."""
    failover_timeout_seconds: float = WEEK_SECONDS
    refuse_seconds: float = 60.0
    """How long a declined offer stays away (a REVIVE brings it back when work appears)."""
    accept_refuse_seconds: float = 5.0
    call_timeout_seconds: float = 20.0
    heartbeat_misses: float = 2.0
    """A subscribed stream silent for this many heartbeat intervals is given up and
    subscribed again: a half-open connection (nothing closes it) is noticed within two
    intervals of its last event."""
    subscribe_timeout_seconds: float = 30.0
    reconnect_delay_seconds: float = 1.0
    reconcile_batch: int = 1000
    reconcile_interval_seconds: float = 600.0
    """Besides each subscription, reconcile this often (Mesos' advice: updates the master
    generates itself carry no uuid and are never resent if one is lost)."""
    gpu_resources: bool = False
    """Declare GPU_RESOURCES: Mesos then offers agents that have GPUs (by default it keeps
    them from frameworks that do not declare it, so a task asking for gpus never starts)."""
    agent_refresh_seconds: float = 30.0
    """At most this often, list the agents again when an update names an unknown one."""
    tick_seconds: float = 0.5
    ack_senders: int = 2
    """Threads acknowledging updates, each on its own connection to the master (0: acks go
    through the worker like every other call)."""
    revive_interval_seconds: float = 1.0
    """At most one REVIVE this often while offers are not suppressed: each one clears every
    filter and brings an offer from every agent, so reviving on each new launch made offer
    handling (parse, match, decline) most of the controller's work."""
    suppress_after_seconds: float = 2.0
    """SUPPRESS once nothing was pending this long (not at every moment the pending set
    happens to be empty, which would need a REVIVE for the next launch)."""
