"""Events of the subscription runner: status writes and execution records, as the controller
writes them to etcd, in revision order, resumable from any revision.

`Subscription` is one etcd watch on the whole key prefix (so status and execution keys of
every kind arrive on one stream, in etcd's revision order, and a revision is a complete resume
token), filtered by a `Selector`. Its guarantees are those of `controller.store.WatchStream`,
and it follows the same rules to keep them:

- **etcd restarts, lost connections**: the stream is opened again from the last revision
  delivered + 1, so nothing is missed and nothing repeated. (It watches from one revision
  earlier and skips what it already delivered: etcd accepts a watch from exactly a compacted
  revision yet drops that revision's deletions; from one earlier, compaction is reported.)
- **compaction** (the subscriber fell behind etcd's history, or `from_revision` is older than
  it): the subscription re-lists the selected keys and emits, for each key that changed since
  what it delivered, its latest value (in mod_revision order), then a deletion for each key
  that is gone, all at the re-list's revision. Intermediate versions are gone from etcd, so
  they cannot be delivered; no (key, revision) pair is ever delivered twice and revisions
  never decrease.

Events are typed: `StatusEvent` (a status written or deleted) and `ExecutionEvent` (an
execution record written or deleted); both carry kind, namespace, name, revision and the
decoded model (None for a deletion).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyetcd.events
import pyetcd.exceptions
import structlog

from controller.api import KINDS as ALL_KINDS
from controller.api import ExecutionRecord, Kind, StatusBase, decode_status
from controller.store import Compacted, Store
from controller.store.watch import create_prefix_watch

log = structlog.get_logger("docket.client.events")


@dataclass(frozen=True)
class StatusEvent:
    """The controller wrote (or deleted, `status is None`) the status of one object.

    `kind` is the kind's name (`Job`, `CronJob`, `Queue`, `Service`); `revision` is the etcd
    revision of the write, usable as `from_revision` (+1) to resume after it."""

    kind: str
    namespace: str
    name: str
    revision: int
    status: StatusBase | None

    @property
    def phase(self) -> str | None:
        """The status' phase (`Succeeded`, `Running`, ...), None for a deletion."""
        return None if self.status is None else str(self.status.phase)


@dataclass(frozen=True)
class ExecutionEvent:
    """The controller wrote (or deleted, `record is None`) the record of one task attempt of
    an object: `task_id` names the attempt, `record` holds its state and exit code."""

    kind: str
    namespace: str
    name: str
    revision: int
    task_id: str
    record: ExecutionRecord | None


Event = StatusEvent | ExecutionEvent


@dataclass(frozen=True)
class Selector:
    """Which events a subscription or a handler receives. Every field narrows: `kinds` (names,
    plurals or singulars: "Job", "jobs", "job"; empty = all four), `namespace` and `name`
    (None = any), `statuses` and `executions` (either kind of event)."""

    kinds: Sequence[str] = ()
    namespace: str | None = None
    name: str | None = None
    statuses: bool = True
    executions: bool = True

    def resolved_kinds(self) -> tuple[Kind, ...]:
        """The `Kind`s selected; raises KeyError naming an unknown one."""
        if not self.kinds:
            return ALL_KINDS
        return tuple(resolve_kind(k) for k in self.kinds)

    def matches(self, event: Event) -> bool:
        """True when `event` is one this selector asks for."""
        if isinstance(event, StatusEvent) and not self.statuses:
            return False
        if isinstance(event, ExecutionEvent) and not self.executions:
            return False
        if self.kinds and event.kind not in {k.name for k in self.resolved_kinds()}:
            return False
        if self.namespace is not None and event.namespace != self.namespace:
            return False
        return self.name is None or event.name == self.name


def resolve_kind(kind: str | Kind | type[Any]) -> Kind:
    """A `Kind` from its name ("Job"), plural ("jobs"), singular ("job"), model class or
    `Kind`; raises KeyError naming the known kinds."""
    if isinstance(kind, Kind):
        return kind
    for k in ALL_KINDS:
        if kind is k.model or (isinstance(kind, str) and kind.lower() in
                               (k.name.lower(), k.plural)):
            return k
    raise KeyError(f"unknown kind {kind!r}; known: {', '.join(k.name for k in ALL_KINDS)}")


class _Disconnected(Exception):
    pass


class Subscription:
    """Events matching a selector as they are written (see the module docstring). Iterate it
    (blocks; ends once `close()` is called), or pull with `get(timeout)`. A context manager.

    `next_revision` is the first revision not yet delivered: after handling every event up to
    now, store it and pass it as `from_revision` to continue later where this one stopped."""

    def __init__(self, store: Store, selector: Selector | None = None,
                 from_revision: int | None = None, *, max_backoff: float = 2.0) -> None:
        self.selector = selector or Selector()
        self._store = store
        self._prefix = store.keys.prefix + "/"
        self._spaces: list[tuple[str, Kind, bool]] = []  # (key prefix, kind, is status)
        for kind in self.selector.resolved_kinds():
            if self.selector.statuses:
                self._spaces.append((store.keys.status_prefix(kind.plural), kind, True))
            if self.selector.executions:
                self._spaces.append((store.keys.executions_kind_prefix(kind.plural), kind,
                                     False))
        if not self._spaces:
            raise ValueError("the selector selects neither statuses nor executions")
        self._events: queue.Queue[Event] = queue.Queue()
        self._stop = threading.Event()
        self._max_backoff = max_backoff
        self.restarts = 0
        """How many times the stream was opened again (etcd restarts, lost connections)."""
        self._known: dict[str, int] | None = None
        if from_revision is None:
            self._next_revision = 0
            self._read_known()  # now: positions the stream before the caller writes anything
        else:
            if from_revision < 1:
                raise ValueError(f"from_revision must be at least 1, not {from_revision}")
            self._next_revision = from_revision
            with contextlib.suppress(Exception):  # the thread tries again
                self._read_known()
        self._thread = threading.Thread(target=self._run, name="docket-subscription",
                                        daemon=True)
        self._thread.start()

    # --- consumer side ----------------------------------------------------------------------
    @property
    def next_revision(self) -> int:
        """The first revision not delivered yet (every event below it is queued)."""
        return self._next_revision

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after `timeout` seconds."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[Event]:
        while not self._stop.is_set():
            event = self.get(timeout=0.2)
            if event is not None:
                yield event

    def close(self) -> None:
        """Stop watching; iteration ends."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- producer side ----------------------------------------------------------------------
    def _space(self, key: str) -> tuple[Kind, bool, list[str]] | None:
        for prefix, kind, is_status in self._spaces:
            if key.startswith(prefix):
                parts = key[len(prefix):].split("/")
                if len(parts) == (2 if is_status else 3) and all(parts):
                    return kind, is_status, parts
        return None

    def _event(self, key: str, value: bytes | None, revision: int) -> Event | None:
        found = self._space(key)
        if found is None:
            return None
        kind, is_status, parts = found
        event: Event
        try:
            if is_status:
                status = None if value is None else decode_status(kind.plural, value)
                event = StatusEvent(kind.name, parts[0], parts[1], revision, status)
            else:
                record = (None if value is None
                          else ExecutionRecord.model_validate_json(value))
                event = ExecutionEvent(kind.name, parts[0], parts[1], revision, parts[2],
                                       record)
        except ValueError as exc:  # ObjectInvalid and pydantic's errors are ValueErrors
            log.warning("skipping a corrupt record", key=key, revision=revision,
                        error=str(exc))
            return None
        return event if self.selector.matches(event) else None

    def _emit(self, key: str, value: bytes | None, revision: int) -> None:
        assert self._known is not None
        if value is None:
            self._known.pop(key, None)
        else:
            self._known[key] = revision
        event = self._event(key, value, revision)
        if event is not None:
            self._events.put(event)

    def _list(self, revision: int | None) -> tuple[dict[str, tuple[bytes, int]], int]:
        """{key: (value, mod_revision)} of every selected key, at `revision` (None: now), and
        the revision read."""
        out: dict[str, tuple[bytes, int]] = {}
        for prefix, _kind, _is_status in self._spaces:
            items, header = self._store.list_raw(prefix, revision)
            if revision is None:
                revision = header  # every space at one revision
            out.update((key, (value, mod)) for key, value, mod, _c, _v in items)
        assert revision is not None  # there is at least one space
        return out, revision

    def _read_known(self) -> None:
        if self._next_revision <= 0:
            items, revision = self._list(None)
            self._known = {key: mod for key, (_v, mod) in items.items()}
            self._next_revision = revision + 1
            return
        try:
            items, _ = self._list(self._next_revision - 1)
        except Compacted:
            log.warning("subscription start revision already compacted; starting from a "
                        "re-list", revision=self._next_revision)
            self._known = {}
            raise
        self._known = {key: mod for key, (_v, mod) in items.items()}

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if self._known is None:
                    self._read_known()
                self._watch_once()
                backoff = 0.05
            except (pyetcd.exceptions.RevisionCompactedError, Compacted):
                log.info("subscription revision compacted; re-listing",
                         revision=self._next_revision)
                try:
                    self._relist()
                except Exception as err:
                    log.warning("re-list failed", error=str(err))
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
            except Exception as exc:
                if self._stop.is_set():
                    return
                if not isinstance(exc, _Disconnected):
                    log.info("subscription stream broken; resuming",
                             revision=self._next_revision, error=repr(exc))
                self.restarts += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _watch_once(self) -> None:
        inbox: queue.Queue[Any] = queue.Queue()
        raw = self._store.watch_client.raw
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
            with contextlib.suppress(Exception):
                raw.cancel_watch(watch_id)

    def _deliver(self, response: Any) -> None:
        last = None
        for ev in response.events:
            mod = int(ev.mod_revision)
            if mod < self._next_revision:
                continue
            key = ev.key.decode()
            if self._space(key) is not None:
                deleted = isinstance(ev, pyetcd.events.DeleteEvent)
                self._emit(key, None if deleted else bytes(ev.value), mod)
            last = mod
        if last is not None:
            self._next_revision = last + 1

    def _relist(self) -> None:
        items, revision = self._list(None)
        known = self._known if self._known is not None else {}
        self._known = known
        changed = sorted(((key, value, mod) for key, (value, mod) in items.items()
                          if known.get(key) != mod), key=lambda t: t[2])
        gone = sorted(set(known) - set(items))
        for key, value, mod in changed:
            self._emit(key, value, mod)
        for key in gone:
            self._emit(key, None, revision)
        self._next_revision = revision + 1

