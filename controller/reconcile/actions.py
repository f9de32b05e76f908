"""The actions a planner asks for, shared by every kind; the runtime is their only executor.

They are plain frozen values so a plan can be compared, logged and replayed in tests. The order
of `Plan.actions` is the order to apply them: execution updates (e.g. the kill reason) before
the kills they explain, launch intents before status, deletions last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from controller.api import HealthCheck, StatusBase, TaskTemplate


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of an object: its kind name as in the API ("Job"), namespace and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Launch:
    """Start one attempt. Persist intent before acting: the runtime records an ExecutionRecord
    with state LAUNCHING (index, attempt, submitted_at) BEFORE offering it to Mesos, so a
    restart finds the intent and never launches the same attempt twice.

    `env` is what Docket adds to the task's environment (DOCKET_TASK_ID, ...); it wins over
    `template.env` on a name clash."""

    task_id: str
    owner: ObjectKey
    index: int
    attempt: int
    template: TaskTemplate
    env: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    """Extra fields of the intent's ExecutionRecord (a Queue batch's messages)."""
    health_check: HealthCheck | None = None
    """For the agent to run (TaskInfo.health_check): a Service's instances."""


@dataclass(frozen=True)
class Kill:
    """Ask Mesos to kill a task; `reason` is the kill_reason already on its record.

    `agent_id` is None when none is known yet, typically a LAUNCHING intent: if the runtime
    still holds it as a pending launch (never sent to Mesos), it must drop it and record a
    terminal state itself (e.g. TASK_KILLED), since no update will ever come for it; otherwise
    it sends the kill. The planner re-sends Kill on every pass while the record reports an
    active state other than TASK_KILLING, so a lost kill is retried. `grace_seconds` None means
    the runtime's default."""

    task_id: str
    agent_id: str | None
    grace_seconds: float | None
    reason: str


@dataclass(frozen=True)
class UpdateExecution:
    """Change fields of a recorded execution (snake_case field names of ExecutionRecord), e.g.
    set `kill_reason` before killing so the outcome is classified right after a restart."""

    task_id: str
    changes: dict[str, Any]


@dataclass(frozen=True)
class WriteStatus:
    """Write the object's status key (only ever emitted when it changed)."""

    status: StatusBase


@dataclass(frozen=True)
class DeleteObject:
    """Delete the spec key, only if its mod_revision is still `expected_mod_revision` (a user
    who edited the object meanwhile keeps it). Used for an object's own expiry and for the
    children an owner deletes (a CronJob's Jobs: replaced, beyond history, or its own
    deletion); `reason` is for the log."""

    plural: str
    namespace: str
    name: str
    expected_mod_revision: int
    reason: str = ""


@dataclass(frozen=True)
class CreateObject:
    """Create a child object at `<plural>/<namespace>/<name>` (e.g. a CronJob's Job, whose
    metadata carries the owner reference), only if that key does not exist, in ONE etcd
    transaction with the plan's WriteStatus: either both are written or neither, so a crash
    can neither create the child twice nor forget that it was created."""

    plural: str
    namespace: str
    name: str
    document: Any
    """The object (an api model), written as JSON."""


@dataclass(frozen=True)
class DeleteOwnerData:
    """Delete the object's status and all its execution records (nothing of it is active)."""

    plural: str
    namespace: str
    name: str


# --- Queue sources ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimItems:
    """Claim etcd queue items for a batch: a claim key per item, each written only if absent,
    in the plan's transaction (with the batch's launch intent)."""

    namespace: str
    queue: str
    value: str
    """`<uid>.<batch>`: which batch of which incarnation holds them."""
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class AckItems:
    """Delete etcd queue items of a succeeded batch, and their claims (the ack)."""

    namespace: str
    queue: str
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class ReleaseClaims:
    """Delete claim keys of batches that are no longer open."""

    namespace: str
    queue: str
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class DeadItem:
    id: str
    payload: bytes
    mod_revision: int
    """The item is moved only if it is still at this revision."""


@dataclass(frozen=True)
class DeadLetterItems:
    """Move etcd queue items to the queue's dead letter (with the reason and the last
    execution's id), deleting them and their claims, in the plan's transaction."""

    namespace: str
    queue: str
    items: tuple[DeadItem, ...]
    reason: str
    execution: str
    at: datetime
    prefix: str | None = None
    """The dead letter's key prefix; None: `<prefix>/queue-dead/<namespace>/<queue>/`."""
    counted: bool = False
    """The plan's status counts these messages (no execution record does): the move is
    committed in the status' transaction."""


@dataclass(frozen=True)
class RedisOp:
    """An operation on the Queue's Redis source, run after the plan's etcd writes (Redis
    cannot join an etcd transaction; every op is atomic and idempotent, so a crash around it
    is repaired by planning again). `op`: claim, ack, dead_letter or give_back of the batch's
    processing list `tag`."""

    op: Literal["claim", "ack", "dead_letter", "give_back"]
    url: str
    key: str
    """The source list."""
    tag: str
    dead_key: str = ""
    count: int = 0
    max_bytes: int = 0
    separator_len: int = 1
    reason: str = ""
    execution: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class ForgetExecutions:
    """Delete execution records of a done batch, each only if unchanged, in the transaction
    that writes the status counting it."""

    task_ids: tuple[str, ...]


Action = (Launch | Kill | UpdateExecution | WriteStatus | DeleteObject | DeleteOwnerData
          | CreateObject | ClaimItems | AckItems | ReleaseClaims | DeadLetterItems | RedisOp
          | ForgetExecutions)


@dataclass(frozen=True)
class Observation:
    """Something a plan counts or measures once its writes are committed (e.g. a CronJob's
    missed slots by reason, or how late a slot's Job was created). Only the kind knows which
    metric it feeds (`KindDef.observe`); nothing is counted for a plan that did not commit."""

    name: str
    label: str = ""
    value: float = 1.0


@dataclass(frozen=True)
class Plan:
    """What one reconciliation decided.

    `status` is the status the plan's WriteStatus action carries, or None when the recorded
    status is already right (for logging; apply the actions, not this field twice).
    `requeue_after` is the number of seconds until the earliest future instant at which the
    plan would change by itself (a timeout, deadline, end of backoff, startAt, TTL), or None."""

    actions: tuple[Action, ...] = ()
    status: StatusBase | None = None
    requeue_after: float | None = None
    observations: tuple[Observation, ...] = ()
