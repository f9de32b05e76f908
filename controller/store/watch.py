"""A watch on one kind that survives etcd restarts and compaction.

etcd drops watch streams when it restarts and refuses to resume from a compacted revision.
`WatchStream` hides both: on a broken stream it re-watches from the last revision it delivered
+ 1; on compaction it re-lists and emits the difference from what its caller already has
(`known`: key -> mod_revision), so the caller sees every change once, in order, with no gap and
no duplicate. A background thread fills a queue; the caller pulls with `get()` or iterates.

What "once, in order" means after a compaction: the intermediate versions are gone from etcd,
so the caller gets the latest version of each changed key (in mod_revision order), then a
DELETE for each key that is gone, all carrying the re-list's revision. Revisions delivered
never decrease, and no (key, revision) is delivered twice.

`known` is what the caller holds at `start_revision - 1` (normally from `Store.list`). For a
caller that passes none, the constructor reads it from etcd at that revision (blocking, with
the store's retries), so a later compaction still finds deletions. If that revision is already
compacted, or etcd stays unreachable (the stream then reads it once it can), a compaction
before the read leads to a re-list that sends a PUT for every object and can say nothing of
objects deleted in between.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyetcd.events
import pyetcd.exceptions
import structlog

from controller.store.client import Compacted, is_transient
from controller.store.metrics import ETCD_REQUEST_ERRORS, ETCD_WATCH_RESTARTS

if TYPE_CHECKING:
    from controller.store.store import Store, StoredObject

log = structlog.get_logger("docket.store.watch")

# pyetcd's Watcher (one per client, shared by every stream of a store) loses a watch request
# made while another waits to be created and the gRPC stream under both breaks: the waiter
# wakes after the stream's thread has stopped, queues its request where nothing reads it, and
# times out (WatchTimedOut, 5 s) — after an etcd restart, one kind's changes arrived seconds
# late. Creating one watch at a time per client means each creation starts by finding the
# stream stopped and starting a new one.
_CREATING: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_CREATING_GUARD = threading.Lock()


def _creation_lock(raw: Any) -> threading.Lock:
    with _CREATING_GUARD:
        lock = _CREATING.get(raw)
        if lock is None:
            lock = _CREATING[raw] = threading.Lock()
        return lock


def create_prefix_watch(raw: Any, prefix: str, callback: Callable[[Any], None], *,
                        start_revision: int) -> int:
    """`raw.add_watch_prefix_callback`, one creation at a time per client (see above). Every
    watch on a client shared by several watchers must be created through here."""
    with _creation_lock(raw):
        return int(raw.add_watch_prefix_callback(prefix, callback,
                                                 start_revision=start_revision))


@dataclass(frozen=True)
class WatchEvent:
    """A change of one object key. `object` is None for DELETE. `revision` is the etcd
    revision of the change (for a delete found by a re-list, the list's revision)."""

    type: Literal["PUT", "DELETE"]
    key: str
    namespace: str
    name: str
    revision: int
    object: StoredObject | None


class _Disconnected(Exception):
    pass


class WatchStream:
    def __init__(self, store: Store, plural: str, start_revision: int,
                 known: Mapping[str, int] | None = None, *, max_backoff: float = 2.0) -> None:
        self._store = store
        self.plural = plural
        self._prefix = store.keys.kind_prefix(plural)
        self._next_revision = start_revision
        # None until read from etcd (see the module docstring).
        self._known: dict[str, int] | None = None if known is None else dict(known)
        self._events: queue.Queue[WatchEvent] = queue.Queue()
        self._stop = threading.Event()
        self._max_backoff = max_backoff
        self.restarts = 0
        if self._known is None:
            with contextlib.suppress(Exception):  # the thread tries again, and says why
                self._read_known()
        self._thread = threading.Thread(target=self._run, name=f"watch-{plural}", daemon=True)
        self._thread.start()

    # --- consumer side ----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event, or None after `timeout` seconds (or once cancelled)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[WatchEvent]:
        while not self._stop.is_set():
            event = self.get(timeout=0.2)
            if event is not None:
                yield event

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def next_revision(self) -> int:
        """The first revision not delivered yet. It moves past a revision only after that
        revision's events are queued, so `next_revision > etcd's head` means the queue holds
        every change up to the head (tests wait on exactly that)."""
        return self._next_revision

    # --- producer side ----------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if self._known is None:
                    self._read_known()
                self._watch_once()
                backoff = 0.05
            except (pyetcd.exceptions.RevisionCompactedError, Compacted) as exc:
                ETCD_WATCH_RESTARTS.labels("compacted").inc()
                log.info("watch revision compacted; re-listing", kind=self.plural,
                         revision=self._next_revision,
                         compacted=getattr(exc, "compacted_revision", None))
                try:
                    self._relist()
                except Exception as err:  # etcd may be down too: retry the whole thing
                    log.warning("re-list failed", kind=self.plural, error=str(err))
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
            except Exception as exc:
                if self._stop.is_set():
                    return
                ETCD_WATCH_RESTARTS.labels("disconnected").inc()
                ETCD_REQUEST_ERRORS.labels("watch").inc()
                if not (isinstance(exc, _Disconnected) or is_transient(exc)):
                    log.error("watch failed", kind=self.plural, error=repr(exc))
                elif len(self._store.client.endpoints) > 1 and not isinstance(exc, _Disconnected):
                    self._store.watch_client.fail_over()
                self.restarts += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _read_known(self) -> None:
        if self._next_revision <= 0:  # etcd's "from now": the state now is the baseline
            items, revision = self._store.list(self.plural)
            self._known = {i.key: i.mod_revision for i in items}
            self._next_revision = revision + 1
            return
        try:
            raw, _ = self._store.list_raw(self._prefix, revision=self._next_revision - 1)
        except Compacted:
            log.warning("watch start revision already compacted; starting from a re-list",
                        kind=self.plural, revision=self._next_revision)
            self._known = {}
            raise
        self._known = {key: mod for key, _v, mod, _c, _ver in raw}

    def _watch_once(self) -> None:
        inbox: queue.Queue[Any] = queue.Queue()
        raw = self._store.watch_client.raw
        # Watch from one revision early: etcd drops a tombstone at the compaction revision
        # itself yet accepts a watch from exactly there, silently missing that deletion. From
        # one earlier, such a compaction is reported (and answered with a re-list); the events
        # of that earlier revision were delivered already and are skipped.
        watch_id = create_prefix_watch(raw, self._prefix, inbox.put,
                                       start_revision=max(self._next_revision - 1, 1))
        try:
            while not self._stop.is_set():
                try:
                    item = inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is None:
                    raise _Disconnected("watch stream closed")
                if isinstance(item, BaseException):
                    raise item
                self._deliver(item)
        finally:
            with contextlib.suppress(Exception):  # a broken stream has nothing to cancel
                raw.cancel_watch(watch_id)

    def _deliver(self, response: Any) -> None:
        last = None
        for ev in response.events:
            key = ev.key.decode()
            mod = int(ev.mod_revision)
            if mod < self._next_revision:
                continue
            if isinstance(ev, pyetcd.events.DeleteEvent):
                self._emit_delete(key, mod)
            else:
                stored = self._store._stored(self.plural, key, bytes(ev.value), mod,
                                             int(ev.create_revision), int(ev.version))
                self._emit_put(key, stored)
            last = mod
        if last is not None:
            self._next_revision = last + 1

    def _emit_put(self, key: str, stored: StoredObject) -> None:
        assert self._known is not None
        self._known[key] = stored.mod_revision
        self._events.put(WatchEvent("PUT", key, stored.namespace, stored.name,
                                    stored.mod_revision, stored))

    def _emit_delete(self, key: str, revision: int) -> None:
        assert self._known is not None
        self._known.pop(key, None)
        split = self._store.keys.split_object(self.plural, key)
        ns, name = split if split else ("", key[len(self._prefix):])
        self._events.put(WatchEvent("DELETE", key, ns, name, revision, None))

    def _relist(self) -> None:
        items, revision = self._store.list(self.plural)
        known = self._known if self._known is not None else {}
        self._known = known
        changed = sorted((s for s in items if known.get(s.key) != s.mod_revision),
                         key=lambda s: s.mod_revision)
        gone = sorted(set(known) - {s.key for s in items})
        for stored in changed:
            self._emit_put(stored.key, stored)
        for key in gone:
            self._emit_delete(key, revision)
        self._next_revision = revision + 1
