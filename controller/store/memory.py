"""An in-memory etcd: the twin that store and controller tests run on, without servers.

`MemoryEtcd` is etcd 3.5 in one process: the multi-version key space (`memory_mvcc`), leases
and watches. `MemoryEtcd.client()` is an `EtcdClient` whose `raw` answers the calls the store
makes of pyetcd — `kvstub.Range` and `kvstub.Txn` with etcd's own protobuf messages, `lease`,
`refresh_lease`, `revoke_lease`, `add_watch_prefix_callback`, `cancel_watch`, `compact`,
`status` — so `MemoryEtcd().store()` is the real `Store`, and leader election runs on it:
    etcd = MemoryEtcd(clock=fake_clock.now); store = etcd.store(prefix="/docket")

Why this seam, not a second `Store`: the subtle code is in the store — compare-and-swap
expectations, the group committer's nested transactions, paged lists at one revision,
`WatchStream`'s resume and re-list. A twin of `Store` would copy those rules, drift from them,
and leave them untested without etcd. etcd's semantics below the store are small, stable and
documented, so they are what is copied; `tests/store/conformance.py` holds this twin and a
real etcd to one suite.

Leases as etcd's: at least 2 s; a keep-alive resets the TTL and answers 0 once the lease is
gone; revoking an unknown one is NOT_FOUND; an expired lease's keys go in one revision. Time is
the injected `clock` (monotonic seconds, e.g. `FakeClock.now`; the store may not import
runtime), read at every call and every 50 ms of real time, so watchers learn of an expiry
without anyone calling. Watches as pyetcd's: callbacks on one thread, in revision order, the
history from the start revision first; a start before the compaction is answered with
`RevisionCompactedError`; closing a connection ends its watches with callback(None), and
`restart()` breaks every watch stream as an etcd restart does (data and leases survive).
Not modelled: auth, members, alarms, watch filters and progress notifications, an etcd that
cannot be reached.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyetcd.events
import pyetcd.exceptions
import pyetcd.leases
import pyetcd.watch
import structlog
from grpc import StatusCode
from pyetcd import etcdrpc
from pyetcd.client import Status
from pyetcd.utils import prefix_range_end, to_bytes

from controller.store.client import EtcdClient
from controller.store.memory_mvcc import (
    Committed,
    EtcdError,
    KeySpace,
    in_range,
    lease_not_found,
)
from controller.store.store import Store

log = structlog.get_logger("docket.store.memory")

MIN_LEASE_TTL = 2  # etcd's minimum with its default heartbeat
TICK = 0.05  # seconds of real time between expiry checks while leases exist


@dataclass
class _Lease:
    id: int
    ttl: int
    expires: float
    keys: set[bytes] = field(default_factory=set)


@dataclass(eq=False)
class _Watch:
    id: int
    conn: _Connection
    start: bytes
    end: bytes
    callback: Callable[[Any], None]
    min_revision: int
    cancelled: bool = False


class MemoryEtcd:
    """One etcd in memory; `client()` opens a connection to it, `store()` a `Store` on one."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 name: str = "memory") -> None:
        self.endpoint = f"memory://{name}"
        self._clock = clock
        self._cond = threading.Condition()  # guards all state below
        self._space = KeySpace()
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x6D656D0000000001)
        self._watches: list[_Watch] = []
        self._outbox: deque[tuple[_Watch, Any, bool]] = deque()  # (watch, item, final)
        self._connections = 0
        self._thread: threading.Thread | None = None

    def client(self, *, timeout: float = 5.0, retry_seconds: float = 30.0) -> MemoryEtcdClient:
        return MemoryEtcdClient(self, timeout=timeout, retry_seconds=retry_seconds)

    def store(self, prefix: str = "/docket") -> Store:
        return Store(self.client(), prefix=prefix)

    @property
    def revision(self) -> int:
        with self._cond:
            return self._space.revision

    def compact(self, revision: int) -> None:
        with self._cond:
            self._space.compact(revision)

    def restart(self) -> None:
        """What an etcd restart does to its clients: every watch stream breaks (its callback
        gets UNAVAILABLE); the data and the leases survive."""
        with self._cond:
            for w in self._watches:
                w.cancelled = True
                self._outbox.append((w, EtcdError(StatusCode.UNAVAILABLE, "etcd restarted"),
                                     True))
            self._watches.clear()
            self._cond.notify_all()

    # --- key space --------------------------------------------------------------------------
    def _range(self, request: Any) -> Any:
        with self._cond:
            self._expire()
            return self._space.range(request)

    def _txn(self, request: Any) -> Any:
        with self._cond:
            self._expire()
            resp, committed = self._space.txn(request, self._leases)
            self._committed(committed)
            return resp

    def _committed(self, done: Committed | None) -> None:
        """Keep each lease's keys and tell the watchers (called with the lock held)."""
        if done is None:
            return
        for key, (before, after) in done.keys.items():
            if before is not None and before.lease in self._leases:
                self._leases[before.lease].keys.discard(key)
            if after is not None and after.lease:
                self._leases[after.lease].keys.add(key)
        for w in self._watches:
            mine = [e for e in done.events if in_range(e.kv.key, w.start, w.end)]
            if mine and done.revision >= w.min_revision:
                self._outbox.append((w, self._response(mine), False))
        self._cond.notify_all()

    # --- leases -----------------------------------------------------------------------------
    def _grant(self, ttl: int, lease_id: int | None) -> tuple[int, int]:
        with self._cond:
            self._expire()
            lease_id = lease_id or next(self._lease_ids)
            if lease_id in self._leases:
                raise EtcdError(StatusCode.FAILED_PRECONDITION,
                                "etcdserver: lease already exists")
            ttl = max(ttl, MIN_LEASE_TTL)
            self._leases[lease_id] = _Lease(lease_id, ttl, self._clock() + ttl)
            self._start_thread()
            self._cond.notify_all()  # the delivery thread starts to tick
            return lease_id, ttl

    def _keep_alive(self, lease_id: int) -> Any:
        with self._cond:
            self._expire()
            resp = etcdrpc.LeaseKeepAliveResponse(ID=lease_id)
            lease = self._leases.get(lease_id)
            if lease is not None:
                lease.expires = self._clock() + lease.ttl
                resp.TTL = lease.ttl
            resp.header.revision = self._space.revision
            return resp

    def _revoke(self, lease_id: int) -> None:
        with self._cond:
            self._expire()
            if lease_id not in self._leases:
                raise lease_not_found()
            self._committed(self._space.delete_keys(self._leases.pop(lease_id).keys))

    def _expire(self) -> None:
        """Revoke every lease whose time is up (called with the lock held)."""
        if not self._leases:
            return
        now = self._clock()
        for lease in sorted((le for le in self._leases.values() if le.expires <= now),
                            key=lambda le: (le.expires, le.id)):
            del self._leases[lease.id]
            self._committed(self._space.delete_keys(lease.keys))

    # --- watches ----------------------------------------------------------------------------
    def _response(self, events: list[Any]) -> Any:
        header = etcdrpc.ResponseHeader(revision=self._space.revision)
        return pyetcd.watch.WatchResponse(header, [pyetcd.events.new_event(e) for e in events])

    def _watch(self, conn: _Connection, key: bytes, end: bytes, start_revision: int,
               callback: Callable[[Any], None]) -> int:
        with self._cond:
            self._expire()
            space = self._space
            w = _Watch(next(conn.watch_ids), conn, key, end, callback,
                       start_revision if start_revision > 0 else space.revision + 1)
            if 0 < start_revision < space.compacted:
                # etcd accepts the watch, then reports the compaction and cancels it.
                error = pyetcd.exceptions.RevisionCompactedError(space.compacted)
                self._outbox.append((w, error, True))
            else:
                past = space.events_since(key, end, w.min_revision)
                if past:
                    self._outbox.append((w, self._response(past), False))
                self._watches.append(w)
            self._start_thread()
            self._cond.notify_all()
            return w.id

    def _cancel(self, conn: _Connection, watch_id: int | None) -> None:
        """End one watch of `conn`, or (no `watch_id`: the connection closed) all of them,
        each told so with None, as pyetcd tells a stream that ended."""
        with self._cond:
            for w in [w for w in self._watches if w.conn is conn]:
                if watch_id is None or w.id == watch_id:
                    w.cancelled = True
                    self._watches.remove(w)
                    if watch_id is None:
                        self._outbox.append((w, None, True))
            self._cond.notify_all()

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.endpoint}-watch",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """Deliver watch responses in order (as pyetcd's watcher thread does) and expire
        leases as time passes; ends once no connection is open and nothing is left."""
        while True:
            with self._cond:
                while not self._outbox:
                    if self._connections == 0:
                        self._thread = None
                        return
                    self._cond.wait(TICK if self._leases else None)
                    self._expire()
                batch = list(self._outbox)
                self._outbox.clear()
            for w, item, final in batch:
                if final or not w.cancelled:
                    try:
                        w.callback(item)
                    except Exception:
                        log.exception("watch callback failed", watch=w.id)


class _Connection:
    """What `EtcdClient.raw` is for the store: pyetcd's client, in-process."""

    call_credentials = None
    metadata = None
    endpoint_in_use = None

    def __init__(self, etcd: MemoryEtcd) -> None:
        self._etcd = etcd
        self.kvstub = self  # Range and Txn take etcd's requests, as the stub's do
        self.maintenancestub = self  # and Status, as the maintenance stub's does
        self.watch_ids = itertools.count()
        self.closed = False
        with etcd._cond:
            etcd._connections += 1

    def _open(self) -> MemoryEtcd:
        if self.closed:
            raise ValueError("Cannot invoke RPC on closed channel!")  # as grpc says it
        return self._etcd

    def Range(self, request: Any, timeout: float | None = None, **_: Any) -> Any:
        return self._open()._range(request)

    def Txn(self, request: Any, timeout: float | None = None, **_: Any) -> Any:
        return self._open()._txn(request)

    def compact(self, revision: int, physical: bool = False) -> None:
        self._open().compact(revision)

    def lease(self, ttl: int, lease_id: int | None = None) -> pyetcd.leases.Lease:
        granted, ttl = self._open()._grant(ttl, lease_id)
        return pyetcd.leases.Lease(lease_id=granted, ttl=ttl, etcd_client=self)

    def refresh_lease(self, lease_id: int) -> Iterator[Any]:
        yield self._open()._keep_alive(lease_id)

    def revoke_lease(self, lease_id: int) -> None:
        self._open()._revoke(lease_id)

    def add_watch_callback(self, key: str | bytes, callback: Callable[[Any], None],
                           range_end: str | bytes | None = None,
                           start_revision: int | None = None) -> int:
        end = to_bytes(range_end) if range_end is not None else b""
        return self._open()._watch(self, to_bytes(key), end, start_revision or 0, callback)

    def add_watch_prefix_callback(self, key_prefix: str | bytes,
                                  callback: Callable[[Any], None], **kwargs: Any) -> int:
        kwargs["range_end"] = prefix_range_end(to_bytes(key_prefix))
        return self.add_watch_callback(key_prefix, callback, **kwargs)

    def cancel_watch(self, watch_id: int) -> None:
        self._etcd._cancel(self, watch_id)

    def status(self) -> Status:
        return Status("3.5.1", 0, None, self._open().revision, 1)

    def Status(self, request: Any, timeout: float | None = None, **_: Any) -> Status:
        return self.status()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._etcd._cancel(self, None)
            with self._etcd._cond:
                self._etcd._connections -= 1
                self._etcd._cond.notify_all()


class MemoryEtcdClient(EtcdClient):
    """An `EtcdClient` on a `MemoryEtcd`: the same `call` (timing, metrics, errors), with
    `raw` answering in-process; `new_connection` (the store's watch connection) opens another
    connection to the same etcd."""

    def __init__(self, etcd: MemoryEtcd, *, timeout: float = 5.0,
                 retry_seconds: float = 30.0) -> None:
        # Not EtcdClient.__init__: that would open gRPC channels to the endpoints.
        self.etcd = etcd
        self.endpoints = [etcd.endpoint]
        self.raw = _Connection(etcd)
        self.timeout = timeout
        self.retry_seconds = retry_seconds

    def new_connection(self) -> EtcdClient:
        return MemoryEtcdClient(self.etcd, timeout=self.timeout,
                                retry_seconds=self.retry_seconds)
