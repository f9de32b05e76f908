"""The Queue planner's vocabulary, pure: its input (the source view, `QueueInput`), how a
batch is named in its source, what a batch's task finds in its environment, and the batches
read back from execution records. The rules are in `controller/reconcile/queue.py`."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from controller.api import (
    Condition,
    EtcdSource,
    ExecutionRecord,
    InvalidObject,
    Queue,
    QueueStatus,
    RedisSource,
)
from controller.reconcile.denial import THROTTLED, Denial

PLURAL = "queues"
OP_BUDGET = 110
"""etcd operations one pass may commit with its status, in one transaction (etcd's default
limit is 128 operations per transaction)."""
UNIT_BUDGET = 1100
"""Other etcd operations one pass may write (claims with their intents, acks, releases), in
about ten transactions."""
RECENT_BATCHES = 10
OLDEST_REFRESH_SECONDS = 5
CLAIMING = "Claiming"
TOO_LARGE_RESERVED = "TooLarge"

BATCH_DONE = "BatchDone"  # kill reason: another attempt of the batch succeeded

# Reasons a batch went to the dead letter.
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
SYSTEM_RETRY_LIMIT_EXCEEDED = "SystemRetryLimitExceeded"
MESSAGE_TOO_LARGE = "MessageTooLarge"

# Condition types, in the order written.
SOURCE_UNAVAILABLE = "SourceUnavailable"
SUSPENDED_CONDITION = "Suspended"
INVALID = "Invalid"
CONDITION_ORDER = (SOURCE_UNAVAILABLE, SUSPENDED_CONDITION, INVALID, THROTTLED)


@dataclass(frozen=True)
class Message:
    """One message as the source holds it: an etcd item (id, value, mod_revision), or an
    element of a Redis processing list (its position as id)."""

    id: str
    payload: bytes
    mod_revision: int = 0


@dataclass(frozen=True)
class SourceView:
    """What the source looked like just before planning (read by `controller/queues`).

    etcd: `head` are the oldest messages with no claim key (at least enough for the batches a
    pass may claim: maxConcurrent x batchSize, plus those of open batches the view may not
    know are claimed yet), `unclaimed` how many such messages there are; `claims` every claim
    key of the queue (item id -> claim value) and `items` every message in the source.
    Redis: `unclaimed` is the list's length; `processing` the processing list of each batch
    the planner asked about (None: no such list), `strays` processing lists of this incarnation
    that the view found (by batch number)."""

    type: Literal["etcd", "redis"]
    available: bool = True
    error: str = ""
    unclaimed: int = 0
    head: Sequence[Message] = ()
    claims: Mapping[str, str] = field(default_factory=dict)
    items: Mapping[str, Message] = field(default_factory=dict)
    processing: Mapping[int, Sequence[bytes] | None] = field(default_factory=dict)
    strays: Sequence[int] = ()
    oldest_seen: datetime | None = None
    """When Docket first saw the oldest unclaimed message (None: none, or unknown)."""
    polled_at: datetime | None = None


@dataclass(frozen=True)
class QueueInput:
    """`queue` is None when the spec key was deleted, an InvalidObject when it does not
    decode; `source` is the source the view was read from (the status' while batches claimed
    from it are open, else the spec's); `uid` as for a Job."""

    namespace: str
    name: str
    queue: Queue | InvalidObject | None
    spec_revision: int
    uid: int | None
    status: QueueStatus | None
    executions: Sequence[ExecutionRecord]
    view: SourceView
    now: datetime
    source: EtcdSource | RedisSource | None = None
    denial: Denial | None = None
    """Why nothing new may be launched (the policy, a missing secret), or None."""
    throttled: str | None = None
    """The throttle holding back some of its launches at offer time, or None."""


def source_dict(source: EtcdSource | RedisSource) -> dict[str, str]:
    return {k: str(v) for k, v in source.model_dump(mode="json").items()}


def batch_tag(namespace: str, name: str, uid: int, batch: int) -> str:
    """Names a batch in its source (a Redis processing list, an etcd claim's value)."""
    return f"{namespace}.{name}.{uid}.{batch}"


def claim_value(uid: int, batch: int) -> str:
    return f"{uid}.{batch}"


def parse_claim(value: str) -> tuple[int, int] | None:
    uid, _, batch = value.partition(".")
    if not (uid.isdigit() and batch.isdigit()):
        return None
    return int(uid), int(batch)


@dataclass
class Batch:
    index: int
    records: list[ExecutionRecord]
    message_ids: tuple[str, ...]
    count: int
    task_failures: int = 0
    system_failures: int = 0
    succeeded: bool = False
    active: bool = False
    last_task_failure: datetime | None = None

    @property
    def latest(self) -> ExecutionRecord:
        return max(self.records, key=lambda r: r.attempt)


def batch_env(namespace: str, name: str, batch: int, messages: Sequence[bytes],
              separator: str) -> dict[str, str]:
    """What a batch's task finds in its environment."""
    joined = separator.encode().join(messages)
    return {
        "DOCKET_QUEUE": f"{namespace}/{name}",
        "DOCKET_BATCH_ID": str(batch),
        "DOCKET_BATCH": joined.decode("utf-8", errors="replace"),
        "DOCKET_BATCH_B64": base64.b64encode(joined).decode("ascii"),
        "DOCKET_BATCH_SIZE": str(len(messages)),
    }


def unavailable_retry(status: QueueStatus | None, now: datetime) -> float:
    """Seconds until the source is tried again: backing off from 1 s to 30 s as the outage
    goes on."""
    since: datetime | None = None
    if status is not None:
        cond: Condition | None = status.condition(SOURCE_UNAVAILABLE)
        if cond is not None and cond.status == "True":
            since = cond.last_transition_time
    if since is None:
        return 1.0
    return min(30.0, max(1.0, (now - since).total_seconds() / 4))
