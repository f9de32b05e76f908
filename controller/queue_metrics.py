"""The Queue metrics (defined in `controller/metrics.py`), kept from the statuses the
controller writes: the controller calls `observe_status` after each Queue status write,
`forget` when a Queue is gone and `observe_batch` when a batch is done.

The gauges (pending, in flight, oldest pending age, source up) are the new status' values.
The counter `docket_queue_messages_total{result}` moves by how much `succeeded` and
`deadLettered` grew from the status the new one replaces: those are exact totals since the
Queue was created, so the counter counts every acked or dead-lettered message once, whatever
process wrote it, and a restarted controller counts nothing again. `old` must therefore be the
status the new one replaces as stored (None when the Queue had none yet), not what this
process happened to see last. A status of another incarnation (another uid: the Queue was
deleted and created again) is not compared with: the new Queue counts from zero, so all of its
own counts are new.

Every label set a Queue gets is created at zero when the Queue is first seen, so `rate()`
and `increase()` see its first messages; `forget` removes them, so a deleted Queue leaves no
series behind. `forget_all` removes every Queue's: for a process that stops leading, whose
gauges would otherwise go on saying what it saw last (the alerts read only the leader's).
"""

from __future__ import annotations

import contextlib
import threading

from prometheus_client.metrics import MetricWrapperBase

from controller.api import QueueStatus
from controller.metrics import (
    QUEUE_BATCH_SECONDS,
    QUEUE_IN_FLIGHT,
    QUEUE_MESSAGES,
    QUEUE_OLDEST,
    QUEUE_PENDING,
    QUEUE_RESULTS,
    QUEUE_SOURCE_UP,
)

SOURCE_UNAVAILABLE = "SourceUnavailable"
"""The condition a Queue's status holds (True) while its source cannot be reached."""

_GAUGES = (QUEUE_PENDING, QUEUE_IN_FLIGHT, QUEUE_OLDEST, QUEUE_SOURCE_UP)
# observe_status and forget of the same Queue must not interleave (a forget in the middle of
# an observe would leave half of the series behind).
_lock = threading.Lock()
_seen: set[tuple[str, str]] = set()


def observe_status(namespace: str, name: str, old: QueueStatus | None,
                   new: QueueStatus) -> None:
    """Set the Queue's gauges from `new`; add to its message counters what `new` counts
    beyond `old` (all of `new`'s counts when `old` is None or of another uid)."""
    same = old is not None and old.uid == new.uid
    grown = {
        "succeeded": new.succeeded - (old.succeeded if same and old else 0),
        "dead_lettered": new.dead_lettered - (old.dead_lettered if same and old else 0),
    }
    unavailable = new.condition(SOURCE_UNAVAILABLE)
    up = 0 if unavailable is not None and unavailable.status == "True" else 1
    with _lock:
        _seen.add((namespace, name))
        for result in QUEUE_RESULTS:
            counter = QUEUE_MESSAGES.labels(namespace, name, result)  # created at 0
            if grown[result] > 0:
                counter.inc(grown[result])
        QUEUE_PENDING.labels(namespace, name).set(new.pending)
        QUEUE_IN_FLIGHT.labels(namespace, name).set(new.in_flight)
        QUEUE_OLDEST.labels(namespace, name).set(new.oldest_pending_seconds or 0)
        QUEUE_SOURCE_UP.labels(namespace, name).set(up)


def forget(namespace: str, name: str) -> None:
    """Remove every series of a deleted Queue (no-op for one never observed)."""
    with _lock:
        _forget(namespace, name)


def forget_all() -> None:
    """Remove the series of every Queue this process observed."""
    with _lock:
        for namespace, name in sorted(_seen):
            _forget(namespace, name)


def _forget(namespace: str, name: str) -> None:
    _seen.discard((namespace, name))
    for gauge in _GAUGES:
        _remove(gauge, namespace, name)
    for result in QUEUE_RESULTS:
        _remove(QUEUE_MESSAGES, namespace, name, result)


def _remove(metric: MetricWrapperBase, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never observed (older prometheus_client raises)
        metric.remove(*labels)


def observe_batch(seconds: float) -> None:
    """A batch is done: its last task ran for `seconds`."""
    QUEUE_BATCH_SECONDS.observe(max(0.0, seconds))
