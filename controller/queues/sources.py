"""The one I/O seam between the Queue controller and its sources: `QueueSources`.

The planner (`controller/reconcile/queue.py`) is pure; before each pass the Queue kind asks
this module for a `SourceView` of the Queue's source, and the executor hands it the plan's
Redis operations (`RedisOp`) to run. It owns:
- for etcd sources, nothing of its own: views come from the watch-fed `EtcdQueueItems`;
- for Redis sources, one `RedisQueue` per (url, key), made on first use and made again after
  an error; the cache of stray processing lists (a SCAN, so at most every `strays_every`
  seconds per Queue incarnation, plus on the first view after start, and updated at once by
  the operations run here); and the estimate of when the list's head was first seen.

Failures never escape a view: an unreachable Redis (or a misconfigured one: a key that is not
a list, an invalid URL) is a view with `available=False` and the error, which the planner
turns into the SourceUnavailable condition and retries with backoff. `run_redis` raises
`RedisUnavailable` instead: the executor logs it, and the planner asks for the operation
again, which is safe because every operation is atomic and idempotent.

The first-seen estimate of a Redis list (`_Arrivals`). Redis keeps no time per element, so
Docket numbers the list's elements as they pass: `tail` counts elements ever appended, `head`
elements ever taken from the front, so the list holds positions head+1 .. tail. Each view
reads LLEN; `head` moves by what this process claimed (exactly: the messages a claim moved)
and gave back since the last view, and LLEN - (tail - head) new elements, if positive, were
appended since the previous view: a mark (tail, now) says positions up to `tail` were first
seen by now. The oldest message's first-seen time is the time of the first mark past `head`.
So the estimate is as good as the poll interval: a message is taken as first seen at the
first view whose LLEN showed it (at most one poll late). What it assumes: producers append at
the tail (RPUSH) and only Docket takes from the head; a list shorter than expected is taken
to have lost elements at the head (another consumer), and messages given back to the head are
dated by the newest mark already passed (not older than the truth: the age may be
underestimated, never overestimated). A controller restart starts the count afresh: every
message present is first seen then.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from controller.api import EtcdSource, RedisSource
from controller.queues.etcd_items import EtcdQueueItems
from controller.queues.redis_source import RedisQueue, RedisUnavailable
from controller.reconcile.actions import RedisOp
from controller.reconcile.queue import SourceView, batch_tag
from controller.store import Store

log = structlog.get_logger("docket.queues.sources")

STRAYS_EVERY = 30.0
"""Seconds between SCANs for a Queue's stray processing lists: a SCAN walks Redis' whole
key space, and strays only arise from a crash between a claim and its launch intent."""


@dataclass
class _Arrivals:
    """When the messages of one Redis list were first seen (see the module docstring)."""

    head: int = 0
    tail: int = 0
    length: int | None = None  # LLEN at the last view (None: no view yet)
    taken: int = 0  # net messages this process moved off the head since the last view
    marks: deque[tuple[int, datetime]] = field(default_factory=deque)
    passed: tuple[int, datetime] | None = None  # the newest mark `head` went past

    def moved(self, count: int) -> None:
        """This process took `count` messages from the head (negative: gave them back)."""
        if self.length is not None:  # before the first view there is nothing to move from
            self.taken += count

    def poll(self, length: int, now: datetime) -> datetime | None:
        """Account for LLEN = `length` read at `now`; the first-seen time of the head."""
        if self.length is None:
            self.head, self.tail = 0, length
            self.marks = deque([(length, now)] if length else [])
        else:
            self.head += self.taken
            expected = self.tail - self.head
            if length > expected:
                self.tail += length - expected
                self.marks.append((self.tail, now))
            elif length < expected:
                self.head += expected - length  # gone from the head, not by our hand
            if (self.passed is not None and self.passed[0] > self.head
                    and (not self.marks or self.marks[0][0] > self.passed[0])):
                self.marks.appendleft(self.passed)  # given back behind the marks we kept
        self.taken = 0
        self.length = length
        while self.marks and self.marks[0][0] <= self.head:
            self.passed = self.marks.popleft()
        if not length:
            return None
        return self.marks[0][1] if self.marks else now


@dataclass
class _Strays:
    batches: set[int]
    scanned_at: datetime


class QueueSources:
    """Views of Queue sources and the Redis operations of plans (see the module docstring).
    Thread-safe: views of different Queues are read by several workers at once.

    `redis_factory(url, key)` makes a RedisQueue (tests pass a fake); None: a real one with
    `redis_timeout` seconds for every Redis call."""

    def __init__(self, store: Store, etcd_items: EtcdQueueItems, *,
                 clock: Callable[[], datetime], redis_timeout: float = 2.0,
                 redis_factory: Callable[[str, str], RedisQueue] | None = None,
                 strays_every: float = STRAYS_EVERY) -> None:
        self._store = store  # etcd sources are read through etcd_items; kept for symmetry
        self._items = etcd_items
        self._clock = clock
        if redis_factory is None:
            def redis_factory(url: str, key: str) -> RedisQueue:
                return RedisQueue(url, key, timeout=redis_timeout)
        self._factory = redis_factory
        self._strays_every = timedelta(seconds=strays_every)
        self._lock = threading.Lock()
        self._redis: dict[tuple[str, str], RedisQueue] = {}
        self._arrivals: dict[tuple[str, str], _Arrivals] = {}
        self._strays: dict[tuple[str, str, str], _Strays] = {}  # (url, key, tag prefix)

    # --- views ----------------------------------------------------------------------------
    def view(self, namespace: str, name: str, uid: int,
             source: EtcdSource | RedisSource | None, batches: Iterable[int],
             head_limit: int) -> SourceView:
        """What `source` holds for Queue `namespace/name` (incarnation `uid`): for etcd, the
        oldest `head_limit` unclaimed messages and every item and claim; for Redis, the
        list's length, the processing lists of `batches`, and the stray ones. Never raises."""
        now = self._clock()
        if isinstance(source, EtcdSource):
            return self._items.view(namespace, name, head_limit, now)
        if isinstance(source, RedisSource):
            return self._redis_view(namespace, name, uid, source, batches, now)
        return SourceView("etcd", available=False, error="no source known")

    def _redis_view(self, namespace: str, name: str, uid: int, source: RedisSource,
                    batches: Iterable[int], now: datetime) -> SourceView:
        where = (source.url, source.key)
        try:
            queue = self._queue(*where)
            length = queue.length()
            tags = {batch_tag(namespace, name, uid, b): b for b in batches}
            found = queue.batches(tags) if tags else {}
            strays = self._scan_strays(queue, where, f"{namespace}.{name}.{uid}.", now)
        except (RedisUnavailable, ValueError) as exc:
            # ValueError: a key that is not a list, or an invalid URL; the user must fix it,
            # and until then the Queue shows why.
            self._forget(where)
            return SourceView("redis", available=False, error=str(exc))
        with self._lock:
            oldest = self._arrivals.setdefault(where, _Arrivals()).poll(length, now)
        return SourceView("redis", unclaimed=length,
                          processing={tags[t]: contents for t, contents in found.items()},
                          strays=strays, oldest_seen=oldest, polled_at=now)

    def _scan_strays(self, queue: RedisQueue, where: tuple[str, str], prefix: str,
                     now: datetime) -> tuple[int, ...]:
        key = (*where, prefix)
        with self._lock:
            cached = self._strays.get(key)
        # A wall clock that went back rescans too, rather than trusting a future timestamp.
        if cached is None or not (cached.scanned_at <= now < cached.scanned_at
                                  + self._strays_every):
            batches = set()
            for tag in queue.processing_tags(prefix):
                rest = tag[len(prefix):]
                if rest.isdigit():
                    batches.add(int(rest))
            cached = _Strays(batches, now)
            with self._lock:
                self._strays[key] = cached
        with self._lock:
            return tuple(sorted(cached.batches))

    # --- operations -----------------------------------------------------------------------
    def run_redis(self, op: RedisOp) -> None:
        """Run one Redis operation of a plan; raises RedisUnavailable when Redis fails."""
        where = (op.url, op.key)
        queue = self._queue(*where)
        try:
            if op.op == "claim":
                # A claim run again returns the batch it made the first time without moving
                # anything: only a first claim moves messages off the head.
                claimed_before = queue.batch(op.tag) is not None
                got = queue.claim(op.tag, op.count, op.max_bytes, op.separator_len)
                if not claimed_before:
                    self._moved(where, len(got))
            elif op.op == "ack":
                queue.ack(op.tag)
                self._settled(where, op.tag)
            elif op.op == "dead_letter":
                queue.dead_letter(op.tag, op.dead_key, op.reason, op.execution,
                                  op.at if op.at is not None else self._clock())
                self._settled(where, op.tag)
            elif op.op == "give_back":
                self._moved(where, -queue.give_back(op.tag))
                self._settled(where, op.tag)
            else:
                raise ValueError(f"unknown Redis operation {op.op!r}")
        except RedisUnavailable:
            self._forget(where)
            raise

    def _moved(self, where: tuple[str, str], count: int) -> None:
        with self._lock:
            arrivals = self._arrivals.get(where)
            if arrivals is not None:
                arrivals.moved(count)

    def _settled(self, where: tuple[str, str], tag: str) -> None:
        """The processing list of `tag` is gone: no longer a stray (a stale cache would have
        the planner give it back again, and plan again at once, until the next SCAN)."""
        prefix, _, batch = tag.rpartition(".")
        if not batch.isdigit():
            return
        with self._lock:
            cached = self._strays.get((*where, prefix + "."))
            if cached is not None:
                cached.batches.discard(int(batch))

    # --- connections ----------------------------------------------------------------------
    def _queue(self, url: str, key: str) -> RedisQueue:
        with self._lock:
            queue = self._redis.get((url, key))
        if queue is None:
            made = self._factory(url, key)  # connects lazily: never fails on a Redis down
            with self._lock:
                queue = self._redis.setdefault((url, key), made)
            if queue is not made:
                made.close()
        return queue

    def _forget(self, where: tuple[str, str]) -> None:
        """Drop the connection after an error, so the next call starts from a fresh one."""
        with self._lock:
            queue = self._redis.pop(where, None)
        if queue is not None:
            try:
                queue.close()
            except Exception as exc:  # closing a broken connection may fail too
                log.debug("closing a Redis connection failed", error=str(exc))

    def close(self) -> None:
        with self._lock:
            queues = list(self._redis.values())
            self._redis.clear()
        for queue in queues:
            try:
                queue.close()
            except Exception as exc:
                log.debug("closing a Redis connection failed", error=str(exc))
