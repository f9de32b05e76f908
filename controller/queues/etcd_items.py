"""The messages and claims of every etcd-backed Queue, held in memory and kept current by one
watch (docs/architecture.md §8).

Why a cache: the Queue planner asks for a view of its source on every pass, and a queue may
hold 100,000 messages. Reading them from etcd per pass would cost a paged list of the whole
queue each time; instead one prefix watch over `<prefix>/queue-` feeds this module, so a new
message is seen at once (and wakes its Queue through `on_change`) and a view costs about as
much as the part of the queue the planner looks at (`head_limit`), not the whole queue.

What it owns, per (namespace, queue):
- the items `<prefix>/queue-items/<ns>/<queue>/<id>` (the id is everything after the queue's
  prefix, '/' included), in create-revision order (etcd's order of arrival: producers write
  once, and a key deleted and written again is a new message), each with the time Docket
  first saw it (the injected clock; etcd keeps no time of its own);
- the claims `<prefix>/queue-claims/<ns>/<queue>/<id>` (id -> claim value);
- the items with no claim, in the same order, kept incrementally: this is the view's `head`.
Dead letters (`queue-dead/`) and any other key under the watched prefix are ignored.

Consistency: the cache is loaded with one list (items and claims read at one revision), then
watched from that revision + 1. A broken watch stream is resumed from the first revision not
applied; a compacted one (the revisions it needs are gone) is answered with a re-list, whose
difference from the cache is applied, keeping the first-seen time of every item that is still
the same key (same create revision). Both are retried with bounded exponential backoff, as
`controller/store/watch.py` does for objects. While the watch is down the cache serves what it
has (claims are written with compare-and-swap, so a stale view cannot double-claim); once it
has been down longer than `stale_after` seconds, or before the first list, views say the
source is unavailable.

Snapshots: a view's `items` and `claims` are read-only mappings that later changes do not
alter, without copying the queue per view. Each is an `UndoLog` snapshot: it reads through
to the live dict, and every change made after it was taken first records the old value in the
snapshot's own undo log (only while the snapshot is alive: weak references). A view therefore
costs O(head_limit), and a change O(1) per live snapshot.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import pyetcd.events
import pyetcd.exceptions
import structlog

from controller.queues.snapshots import UndoLog
from controller.reconcile.queue import Message, SourceView
from controller.store import Compacted, Store
from controller.store.client import is_transient
from controller.store.metrics import ETCD_REQUEST_ERRORS, ETCD_WATCH_RESTARTS
from controller.store.watch import create_prefix_watch

log = structlog.get_logger("docket.queues.etcd")

V = TypeVar("V")

STALE_AFTER = 5.0
"""Seconds the watch may be down before views say the source is unavailable: long enough to
ride out an etcd restart or a leader change, short enough that SourceUnavailable shows."""


@dataclass
class _Queue:
    """One queue's items and claims (guarded by the cache's lock)."""

    items: UndoLog[Message]
    claims: UndoLog[str]
    # id -> (create revision, first seen), for the items in `items`.
    meta: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    # The items with no claim, in create-revision order, with their messages (a head is a
    # slice of it).
    unclaimed: dict[str, Message] = field(default_factory=dict)
    # `unclaimed` is not in order (a claim released on an old item, an item seen out of
    # order): rebuilt from `items` at the next view. Releases come in batches, so this costs
    # one pass over the queue per batch of releases, not one per release.
    unclaimed_stale: bool = False
    # `items` is not in create-revision order (an item first seen after newer ones, which a
    # watch never does): sorted at the end of the change.
    order_stale: bool = False

    @classmethod
    def new(cls, lock: threading.Lock) -> _Queue:
        return cls(UndoLog(lock), UndoLog(lock))

    def empty(self) -> bool:
        return not self.items.data and not self.claims.data

    def _newest(self) -> int:
        """Create revision of the newest item (0: none)."""
        data = self.items.data
        return self.meta[next(reversed(data))][0] if data else 0

    def put_item(self, item_id: str, payload: bytes, mod: int, create: int,
                 seen: datetime) -> None:
        old = self.meta.get(item_id)
        message = Message(item_id, payload, mod)
        if old is not None and old[0] == create:
            self.items.set(item_id, message)  # an update in place keeps its place in line
            if item_id in self.unclaimed:
                self.unclaimed[item_id] = message
            return
        if old is not None:  # deleted and written again, a delete this cache missed
            self.delete_item(item_id)
        if create < self._newest():
            self.order_stale = True
        self.items.set(item_id, message)
        self.meta[item_id] = (create, seen)
        if item_id not in self.claims.data:
            self._unclaim(item_id)

    def delete_item(self, item_id: str) -> None:
        self.items.pop(item_id)
        self.meta.pop(item_id, None)
        self.unclaimed.pop(item_id, None)

    def put_claim(self, item_id: str, value: str) -> None:
        self.claims.set(item_id, value)
        self.unclaimed.pop(item_id, None)

    def delete_claim(self, item_id: str) -> None:
        if item_id not in self.claims.data:
            return
        self.claims.pop(item_id)
        if item_id in self.meta:
            self._unclaim(item_id)

    def _unclaim(self, item_id: str) -> None:
        """Put an item into `unclaimed`: appended when it is the newest there, else (a claim
        released on an older item) by a rebuild at the next view."""
        if self.unclaimed_stale or self.order_stale:
            self.unclaimed_stale = True
            return
        if self.unclaimed:
            last = next(reversed(self.unclaimed))
            if self.meta[last][0] > self.meta[item_id][0]:
                self.unclaimed_stale = True
                return
        self.unclaimed[item_id] = self.items.data[item_id]

    def settle_order(self) -> None:
        if self.order_stale:
            self.items.reorder(lambda i: self.meta[i][0])
            self.order_stale = False
            self.unclaimed_stale = True

    def settle_unclaimed(self) -> None:
        if self.unclaimed_stale:
            claims = self.claims.data
            self.unclaimed = {i: m for i, m in self.items.data.items() if i not in claims}
            self.unclaimed_stale = False


class _Disconnected(Exception):
    pass


_WAKE = object()  # put in the watch's inbox by stop()


class _ApplyFailed(Exception):
    """Applying a watch response failed (a bug): the cache may be wrong, so it is re-listed."""


QueueKey = tuple[str, str]


class EtcdQueueItems:
    """A watch-fed cache of every etcd Queue's items and claims (see the module docstring).

    `on_change(namespace, queue)` is called, from the watch thread and outside the cache's
    lock, for every queue whose items or claims changed (the initial list included)."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime],
                 on_change: Callable[[str, str], None] | None = None,
                 stale_after: float = STALE_AFTER, max_backoff: float = 2.0) -> None:
        self._store = store
        self._clock = clock
        self._on_change = on_change
        self._stale_after = timedelta(seconds=stale_after)
        self._max_backoff = max_backoff
        root = store.keys.queue_root()
        self._root = root
        self._items_root = store.keys.queue_items_root()
        self._claims_root = store.keys.queue_claims_root()
        self._lock = threading.Lock()
        self._queues: dict[QueueKey, _Queue] = {}
        self._next_revision = 0  # the first revision not applied (0: nothing listed yet)
        self._synced = threading.Event()
        self._broken_since: datetime | None = None
        self._error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._came_up = False  # the current attempt's watch was established (watch thread)
        self._inbox: queue.Queue[Any] | None = None  # the current watch's responses
        self.relists = 0  # how many times the cache was (re)loaded from a list (tests)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="watch-queue-items",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        inbox = self._inbox
        if inbox is not None:
            inbox.put(_WAKE)  # the watch thread sees the stop now, not at its next poll
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """True once the first list is loaded (False if `timeout` seconds pass first)."""
        return self._synced.wait(timeout)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    @property
    def next_revision(self) -> int:
        """The first etcd revision not applied yet: once it is past etcd's head, every change
        up to the head is in the cache (tests wait on exactly that)."""
        with self._lock:
            return self._next_revision

    # --- reads ----------------------------------------------------------------------------
    def view(self, namespace: str, queue: str, head_limit: int, now: datetime) -> SourceView:
        with self._lock:
            problem = self._unavailable(now)
            if problem:
                return SourceView("etcd", available=False, error=problem)
            q = self._queues.get((namespace, queue))
            if q is None:
                return SourceView("etcd", polled_at=now)
            q.settle_unclaimed()
            head = tuple(itertools.islice(q.unclaimed.values(), max(0, head_limit)))
            oldest = q.meta[next(iter(q.unclaimed))][1] if q.unclaimed else None
            return SourceView("etcd", unclaimed=len(q.unclaimed), head=head,
                              claims=q.claims.snapshot(), items=q.items.snapshot(),
                              oldest_seen=oldest, polled_at=now)

    def _unavailable(self, now: datetime) -> str:
        """Why views cannot be trusted now ("" if they can); called with the lock held."""
        if not self._synced.is_set():
            return "etcd queue items not loaded yet" + (f": {self._error}" if self._error
                                                         else "")
        if self._broken_since is not None and now - self._broken_since >= self._stale_after:
            return (f"etcd watch of queue items down since {self._broken_since.isoformat()}: "
                    f"{self._error or 'reconnecting'}")
        return ""

    # --- the watch thread -----------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.05
        need_list = True
        while not self._stop.is_set():
            self._came_up = False
            try:
                if need_list:
                    self._relist()
                    need_list = False
                self._watch_once()
                return  # only once stopped
            except (pyetcd.exceptions.RevisionCompactedError, Compacted) as exc:
                # The revisions the watch needs are gone: only a list can say what changed.
                ETCD_WATCH_RESTARTS.labels("compacted").inc()
                log.info("queue items watch compacted; re-listing",
                         revision=self._next_revision,
                         compacted=getattr(exc, "compacted_revision", None))
                self._broken(exc)
                need_list = True
                if self._came_up:  # a watch that ran: re-list at once, that is the cure
                    backoff = 0.05
                    continue
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._broken(exc)
                if isinstance(exc, _ApplyFailed):
                    log.error("applying queue item changes failed; re-listing",
                              error=repr(exc.__cause__))
                    need_list = True
                else:
                    ETCD_WATCH_RESTARTS.labels("disconnected").inc()
                    ETCD_REQUEST_ERRORS.labels("watch").inc()
                    if not (isinstance(exc, _Disconnected) or is_transient(exc)):
                        log.warning("queue items watch failed", error=repr(exc))
                    elif (len(self._store.client.endpoints) > 1
                          and not isinstance(exc, _Disconnected)):
                        self._store.watch_client.fail_over()
            if self._came_up:  # it ran, then broke: the backoff starts afresh
                backoff = 0.05
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _broken(self, exc: BaseException) -> None:
        with self._lock:
            if self._broken_since is None:
                self._broken_since = self._clock()
            self._error = str(exc) or type(exc).__name__

    def _healthy(self) -> None:
        with self._lock:
            self._broken_since = None
            self._error = ""

    def _watch_once(self) -> None:
        inbox: queue.Queue[Any] = queue.Queue()
        self._inbox = inbox
        raw = self._store.watch_client.raw
        # One revision early, as WatchStream does: etcd accepts a watch from exactly the
        # compaction revision yet has dropped that revision's tombstones; from one earlier the
        # compaction is reported. The events of that earlier revision are skipped when applied.
        watch_id = create_prefix_watch(raw, self._root, inbox.put,
                                       start_revision=max(self._next_revision - 1, 1))
        self._came_up = True
        self._healthy()
        try:
            while not self._stop.is_set():
                try:
                    item = inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                responses = [item]
                # Everything already delivered is applied together: one lock, one wake-up
                # per queue for a producer's burst of thousands of puts.
                with contextlib.suppress(queue.Empty):
                    while len(responses) < 1000:
                        responses.append(inbox.get_nowait())
                good = []
                failure: BaseException | None = None
                for r in responses:
                    if r is _WAKE:
                        continue
                    if r is None:
                        failure = _Disconnected("watch stream closed")
                        break
                    if isinstance(r, BaseException):
                        failure = r
                        break
                    good.append(r)
                self._apply_responses(good)
                if failure is not None:
                    raise failure
        finally:
            with contextlib.suppress(Exception):  # a broken stream has nothing to cancel
                raw.cancel_watch(watch_id)

    # --- applying changes -----------------------------------------------------------------
    def _split(self, key: str) -> tuple[Literal["items", "claims"], QueueKey, str] | None:
        if key.startswith(self._items_root):
            what: Literal["items", "claims"] = "items"
            rest = key[len(self._items_root):]
        elif key.startswith(self._claims_root):
            what = "claims"
            rest = key[len(self._claims_root):]
        else:
            return None  # dead letters, or another key that happens to start with "queue-"
        parts = rest.split("/", 2)
        if len(parts) != 3 or not all(parts):
            return None
        return what, (parts[0], parts[1]), parts[2]

    def _queue(self, key: QueueKey) -> _Queue:
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = _Queue.new(self._lock)
        return q

    def _apply_responses(self, responses: list[Any]) -> None:
        if not responses:
            return
        changed: set[QueueKey] = set()
        try:
            with self._lock:
                seen = self._clock()
                for response in responses:
                    last = None
                    for ev in response.events:
                        mod = int(ev.mod_revision)
                        if mod < self._next_revision:
                            continue  # delivered already (the watch starts one early)
                        self._apply_event(ev, mod, seen, changed)
                        last = mod
                    if last is not None:
                        self._next_revision = last + 1
                self._settle(changed)
        except Exception as exc:
            raise _ApplyFailed(str(exc)) from exc
        self._notify(changed)

    def _apply_event(self, ev: Any, mod: int, seen: datetime, changed: set[QueueKey]) -> None:
        try:
            key = bytes(ev.key).decode()
        except UnicodeDecodeError:
            return  # not a key Docket could name in a claim: not a message it can take
        split = self._split(key)
        if split is None:
            return
        what, qkey, item_id = split
        q = self._queue(qkey)
        if isinstance(ev, pyetcd.events.DeleteEvent):
            if what == "items":
                q.delete_item(item_id)
            else:
                q.delete_claim(item_id)
        elif what == "items":
            q.put_item(item_id, bytes(ev.value), mod, int(ev.create_revision), seen)
        else:
            q.put_claim(item_id, bytes(ev.value).decode("utf-8", "replace"))
        changed.add(qkey)

    def _settle(self, changed: set[QueueKey]) -> None:
        for qkey in changed:
            q = self._queues.get(qkey)
            if q is None:
                continue
            q.settle_order()
            if q.empty():
                del self._queues[qkey]  # its snapshots keep what they hold

    def _notify(self, changed: set[QueueKey]) -> None:
        if self._on_change is None:
            return
        for namespace, name in sorted(changed):
            try:
                self._on_change(namespace, name)
            except Exception:
                log.exception("queue change callback failed", namespace=namespace, queue=name)

    def _list(self) -> tuple[list[tuple[str, bytes, int, int, int]],
                             list[tuple[str, bytes, int, int, int]], int]:
        """Every item and claim, at one revision (dead letters are not read)."""
        items, revision = self._store.list_raw(self._items_root)
        claims, _ = self._store.list_raw(self._claims_root, revision=revision)
        return items, claims, revision

    def _relist(self) -> None:
        """Load the cache from a list, applying its difference from what the cache holds."""
        # A compaction between its two reads raises Compacted: _run lists again.
        items, claims, revision = self._list()
        wanted_items: dict[QueueKey, list[tuple[str, bytes, int, int]]] = {}
        for key, value, mod, create, _version in items:
            split = self._split(key)
            if split is not None and split[0] == "items":
                wanted_items.setdefault(split[1], []).append((split[2], value, mod, create))
        wanted_claims: dict[QueueKey, dict[str, str]] = {}
        for key, value, _mod, _create, _version in claims:
            split = self._split(key)
            if split is not None and split[0] == "claims":
                wanted_claims.setdefault(split[1], {})[split[2]] = value.decode("utf-8",
                                                                                "replace")
        changed: set[QueueKey] = set()
        with self._lock:
            seen = self._clock()
            for qkey in set(self._queues) | set(wanted_items) | set(wanted_claims):
                if self._relist_queue(qkey, sorted(wanted_items.get(qkey, []),
                                                   key=lambda i: i[3]),
                                      wanted_claims.get(qkey, {}), seen):
                    changed.add(qkey)
            self._settle(changed)
            self._next_revision = revision + 1
            self.relists += 1
        self._synced.set()
        self._notify(changed)

    def _relist_queue(self, qkey: QueueKey, items: list[tuple[str, bytes, int, int]],
                      claims: dict[str, str], seen: datetime) -> bool:
        q = self._queue(qkey)
        changed = False
        listed = {i[0] for i in items}
        for item_id in [i for i in q.items.data if i not in listed]:
            q.delete_item(item_id)
            changed = True
        for item_id in [i for i in q.claims.data if i not in claims]:
            q.delete_claim(item_id)
            changed = True
        for item_id, value in claims.items():
            if q.claims.data.get(item_id) != value:
                q.put_claim(item_id, value)
                changed = True
        for item_id, payload, mod, create in items:  # oldest first
            have = q.items.data.get(item_id)
            if (have is None or have.mod_revision != mod
                    or q.meta[item_id][0] != create):
                q.put_item(item_id, payload, mod, create, seen)
                changed = True
        return changed
