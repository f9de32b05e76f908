"""The suite's view of an etcd (`Backend`: one per test; each implementation provides one)
and the helpers its tests share."""

from __future__ import annotations

import abc
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pyetcd import etcdrpc

from controller.runtime.clock import Clock
from controller.store import (
    Store,
    WatchEvent,
    WatchStream,
)


class Backend(abc.ABC):
    """One etcd for one test. `store()` opens another connection to it (two stores are two
    processes sharing the etcd), all under one key prefix."""

    patience: float = 10.0
    """Seconds an eventual outcome (a watch event, an expiry, a new leader) may take."""

    def __init__(self) -> None:
        self._stores: list[Store] = []
        self._streams: list[WatchStream] = []

    def store(self) -> Store:
        s = self._connect()
        self._stores.append(s)
        return s

    def watch(self, store: Store, plural: str, start_revision: int,
              known: Mapping[str, int] | None = None) -> WatchStream:
        """`store.watch`, cancelled when the test ends."""
        stream = store.watch(plural, start_revision, known)
        self._streams.append(stream)
        return stream

    @abc.abstractmethod
    def _connect(self) -> Store: ...

    @property
    @abc.abstractmethod
    def clock(self) -> Clock:
        """The clock etcd's leases run on, for the leader elector."""

    @abc.abstractmethod
    def pass_time(self, seconds: float) -> None:
        """Let `seconds` of lease time pass."""

    @abc.abstractmethod
    def restart(self) -> None:
        """Restart etcd: every watch stream breaks; the data survives."""

    def close(self) -> None:
        # WatchStream.cancel() sets the stream's stop flag, then waits for its thread, which
        # polls its inbox every 0.2 s. Setting the flag first and then closing the connections
        # (which ends each watch and wakes each thread, now told to stop) makes the cancel
        # immediate. The flag must be set before the close: a stream woken without it opens
        # a new watch connection (WatchStream's retry) that nothing closes.
        for stream in self._streams:
            stream._stop.set()
        for s in self._stores:
            s.close()
        for stream in self._streams:
            stream.cancel()


def job_doc(name: str, completions: int = 1) -> bytes:
    return json.dumps({"apiVersion": "docket.dev/v1", "kind": "Job", "metadata": {"name": name},
                       "spec": {"completions": completions,
                                "template": {"command": "echo hi"}}}).encode()


def job_key(store: Store, name: str) -> str:
    return store.keys.object("jobs", "default", name)


def head(store: Store) -> int:
    """etcd's current revision (the header of any read)."""
    return store.list_raw(f"{store.keys.prefix}/nothing/")[1]


def eventually(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def next_events(stream: WatchStream, n: int, timeout: float) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        ev = stream.get(timeout=0.05)
        if ev is not None:
            out.append(ev)
    assert len(out) == n, f"expected {n} events, got {[(e.type, e.name) for e in out]}"
    return out


def summary(events: list[WatchEvent]) -> list[tuple[str, str, int]]:
    return [(e.type, e.name, e.revision) for e in events]


def marker_comes_next(store: Store, stream: WatchStream, timeout: float) -> None:
    """Nothing was delivered beyond what the test read: a fresh write is the next event."""
    name = f"marker-{uuid.uuid4().hex[:8]}"
    store.put_raw(job_key(store, name), job_doc(name))
    (ev,) = next_events(stream, 1, timeout)
    assert (ev.type, ev.name) == ("PUT", name), f"unexpected event {ev.type} {ev.name}"


def nested(*txns: Any) -> Any:
    return etcdrpc.TxnRequest(success=[etcdrpc.RequestOp(request_txn=t) for t in txns])


def puts(*keys: str) -> Any:
    return etcdrpc.TxnRequest(success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
        key=k.encode(), value=b"v")) for k in keys])


def deletes(key: str) -> Any:
    return etcdrpc.TxnRequest(success=[etcdrpc.RequestOp(
        request_delete_range=etcdrpc.DeleteRangeRequest(key=key.encode()))])

