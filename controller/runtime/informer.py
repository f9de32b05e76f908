"""An informer: a local cache of one kind, filled by the store's list and kept current by its
watch from the list's revision, calling handlers on every change.

Handlers should only enqueue keys: the reconciler then reads the object from the cache, so what
it does depends on the current state, never on which event woke it (level-triggered). A periodic
resync calls the update handler for every cached object, so a key whose work was lost (a bug,
a dropped requeue) is looked at again. The cache is replaced only by newer revisions: a replayed
event never moves an object back in time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import structlog

from controller import metrics

log = structlog.get_logger("docket.runtime.informer")


class ObjectKey(NamedTuple):
    """The workqueue key of an object: kind/namespace/name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


class Cached(Protocol):
    """What the informer needs of a stored object (controller.store.StoredObject has it)."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def mod_revision(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def valid(self) -> bool: ...


class Event(Protocol):
    @property
    def type(self) -> Literal["PUT", "DELETE"]: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def object(self) -> Cached | None: ...


class EventStream(Protocol):
    def get(self, timeout: float | None = None) -> Event | None: ...
    def cancel(self) -> None: ...


class ListWatcher(Protocol):
    """The part of controller.store.Store an informer uses."""

    def list(self, plural: str) -> tuple[Sequence[Cached], int]: ...
    def watch(self, plural: str, start_revision: int,
              known: Mapping[str, int] | None = None) -> EventStream: ...


@dataclass
class Handlers:
    on_add: Callable[[Cached], None] | None = None
    on_update: Callable[[Cached, Cached], None] | None = None
    on_delete: Callable[[Cached], None] | None = None


class Informer:
    def __init__(self, store: ListWatcher, plural: str, kind: str, *,
                 resync_seconds: float = 300.0, retry_seconds: float = 1.0) -> None:
        self._store = store
        self.plural = plural
        self.kind = kind
        self._resync = resync_seconds
        self._retry = retry_seconds
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Cached] = {}
        # Kept up to date on every put and delete: counting the invalid objects by scanning
        # the cache on each event made the informer O(objects) per event (quadratic in a
        # burst of creations, and the informer thread the bottleneck at a few thousand jobs).
        self._invalid = 0
        self._handlers: list[Handlers] = []
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: EventStream | None = None

    # --- consumers --------------------------------------------------------------------------
    def add_handlers(self, handlers: Handlers) -> None:
        """Register before `start`: handlers added later miss the initial adds."""
        self._handlers.append(handlers)

    def enqueue_into(self, add: Callable[[ObjectKey], None]) -> None:
        """The usual wiring: every add, update, delete and resync enqueues the object's key."""
        def key_of(obj: Cached) -> None:
            add(ObjectKey(self.kind, obj.namespace, obj.name))
        self.add_handlers(Handlers(key_of, lambda _old, new: key_of(new), key_of))

    def get(self, namespace: str, name: str) -> Cached | None:
        with self._lock:
            return self._cache.get((namespace, name))

    def list(self) -> list[Cached]:
        with self._lock:
            return list(self._cache.values())

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.plural}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            revision = self._initial_list()
            if revision is None:
                return
            with self._lock:
                known = {obj.key: obj.mod_revision for obj in self._cache.values()}
            self._stream = self._store.watch(self.plural, revision + 1, known)
            # Synced once the list is cached and the watch is open: nothing can be missed now.
            self._synced.set()
            self._watch(self._stream)
        finally:
            if self._stream is not None:
                self._stream.cancel()

    def _initial_list(self) -> int | None:
        while not self._stop.is_set():
            try:
                items, revision = self._store.list(self.plural)
            except Exception as exc:  # etcd down at start: keep trying, stay unsynced
                log.warning("list failed; retrying", kind=self.kind, error=repr(exc))
                self._stop.wait(self._retry)
                continue
            for obj in items:
                self._apply_put(obj)
            log.info("cache synced", kind=self.kind, objects=len(items), revision=revision)
            return revision
        return None

    def _watch(self, stream: EventStream) -> None:
        next_resync = time.monotonic() + self._resync
        while not self._stop.is_set():
            wait = max(0.0, min(0.2, next_resync - time.monotonic()))
            event = stream.get(timeout=wait)
            if event is not None:
                if event.type == "DELETE" or event.object is None:
                    self._apply_delete(event.namespace, event.name)
                else:
                    self._apply_put(event.object)
            if time.monotonic() >= next_resync:
                self.resync()
                next_resync = time.monotonic() + self._resync

    def resync(self) -> None:
        """Call every update handler for every cached object (old and new are the same)."""
        for obj in self.list():
            for h in self._handlers:
                if h.on_update is not None:
                    h.on_update(obj, obj)

    def _apply_put(self, obj: Cached) -> None:
        ident = (obj.namespace, obj.name)
        with self._lock:
            old = self._cache.get(ident)
            if old is not None and old.mod_revision >= obj.mod_revision:
                return
            self._cache[ident] = obj
            self._invalid += (not obj.valid) - (old is not None and not old.valid)
            self._update_gauges_locked()
        for h in self._handlers:
            if old is None and h.on_add is not None:
                h.on_add(obj)
            elif old is not None and h.on_update is not None:
                h.on_update(old, obj)

    def _apply_delete(self, namespace: str, name: str) -> None:
        with self._lock:
            old = self._cache.pop((namespace, name), None)
            if old is not None and not old.valid:
                self._invalid -= 1
            self._update_gauges_locked()
        if old is None:
            return
        for h in self._handlers:
            if h.on_delete is not None:
                h.on_delete(old)

    def _update_gauges_locked(self) -> None:
        metrics.CACHE_OBJECTS.labels(self.kind).set(len(self._cache))
        metrics.INVALID_OBJECTS.labels(self.kind).set(self._invalid)
