"""The informer with an in-memory store (no server): list, watch, handlers, resync, failures."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from controller.runtime import FakeClock, Informer, WorkQueue
from controller.runtime.informer import ObjectKey


@dataclass(frozen=True)
class Obj:
    namespace: str
    name: str
    mod_revision: int
    valid: bool = True

    @property
    def key(self) -> str:
        return f"/jobs/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Ev:
    type: Literal["PUT", "DELETE"]
    namespace: str
    name: str
    object: Obj | None


class FakeStream:
    def __init__(self) -> None:
        self.events: queue.Queue[Ev] = queue.Queue()
        self.cancelled = False

    def get(self, timeout: float | None = None) -> Ev | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self) -> None:
        self.cancelled = True


class FakeStore:
    def __init__(self, items: list[Obj], revision: int, list_failures: int = 0) -> None:
        self.items = items
        self.revision = revision
        self.list_failures = list_failures
        self.stream = FakeStream()
        self.watched_from: int | None = None
        self.known: dict[str, int] = {}

    def list(self, plural: str) -> tuple[list[Obj], int]:
        if self.list_failures:
            self.list_failures -= 1
            raise ConnectionError("etcd unavailable")
        return list(self.items), self.revision

    def watch(self, plural: str, start_revision: int,
              known: Mapping[str, int] | None = None) -> FakeStream:
        self.watched_from = start_revision
        self.known = dict(known or {})
        return self.stream


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def drain(q: WorkQueue) -> list[object]:
    keys = []
    while (key := q.get(0)) is not None:
        keys.append(key)
        q.done(key)
    return keys


def test_list_then_watch_fills_cache_and_enqueues() -> None:
    store = FakeStore([Obj("default", "a", 5), Obj("default", "b", 7, valid=False)], 9)
    q = WorkQueue("Job", clock=FakeClock())
    inf = Informer(store, "jobs", "Job", resync_seconds=3600)
    inf.enqueue_into(q.add)
    assert not inf.has_synced()
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        assert store.watched_from == 10, "the watch starts right after the list's revision"
        assert store.known == {"/jobs/default/a": 5, "/jobs/default/b": 7}
        assert drain(q) == [ObjectKey("Job", "default", "a"), ObjectKey("Job", "default", "b")]
        assert str(ObjectKey("Job", "default", "a")) == "Job/default/a"

        store.stream.events.put(Ev("PUT", "default", "a", Obj("default", "a", 11)))
        store.stream.events.put(Ev("PUT", "default", "c", Obj("default", "c", 12)))
        store.stream.events.put(Ev("DELETE", "default", "b", None))
        eventually(lambda: inf.get("default", "b") is None)
        a = inf.get("default", "a")
        assert a is not None and a.mod_revision == 11
        assert {o.name for o in inf.list()} == {"a", "c"}
        assert sorted(map(str, drain(q))) == ["Job/default/a", "Job/default/b", "Job/default/c"]

        # A replayed older event never moves the cache back in time nor wakes anyone.
        store.stream.events.put(Ev("PUT", "default", "a", Obj("default", "a", 6)))
        store.stream.events.put(Ev("PUT", "default", "d", Obj("default", "d", 13)))
        eventually(lambda: inf.get("default", "d") is not None)
        a = inf.get("default", "a")
        assert a is not None and a.mod_revision == 11
        assert drain(q) == [ObjectKey("Job", "default", "d")]
    finally:
        inf.stop()
    assert store.stream.cancelled


def test_handlers_see_old_and_new() -> None:
    from controller.runtime.informer import Handlers

    store = FakeStore([Obj("ns", "x", 1)], 1)
    calls: list[tuple[str, int, int]] = []
    inf = Informer(store, "jobs", "Job", resync_seconds=3600)
    inf.add_handlers(Handlers(
        on_add=lambda o: calls.append(("add", 0, o.mod_revision)),
        on_update=lambda old, new: calls.append(("update", old.mod_revision, new.mod_revision)),
        on_delete=lambda o: calls.append(("delete", o.mod_revision, 0)),
    ))
    inf.start()
    try:
        store.stream.events.put(Ev("PUT", "ns", "x", Obj("ns", "x", 4)))
        store.stream.events.put(Ev("DELETE", "ns", "x", None))
        store.stream.events.put(Ev("DELETE", "ns", "never-seen", None))
        # Events are handled in order: once this one is seen, the one before it was handled
        # (and must have called nothing).
        store.stream.events.put(Ev("PUT", "ns", "last", Obj("ns", "last", 6)))
        eventually(lambda: len(calls) >= 4)
    finally:
        inf.stop()
    assert calls == [("add", 0, 1), ("update", 1, 4), ("delete", 4, 0), ("add", 0, 6)]


def test_periodic_resync_enqueues_every_key() -> None:
    store = FakeStore([Obj("ns", "x", 1), Obj("ns", "y", 2)], 2)
    q = WorkQueue("Job", clock=FakeClock())
    inf = Informer(store, "jobs", "Job", resync_seconds=0.05)
    inf.enqueue_into(q.add)
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        drain(q)
        eventually(lambda: len(q) == 2)
        assert sorted(map(str, drain(q))) == ["Job/ns/x", "Job/ns/y"]
    finally:
        inf.stop()


def test_list_failure_is_retried_and_unsynced_meanwhile() -> None:
    store = FakeStore([Obj("ns", "x", 1)], 1, list_failures=2)
    inf = Informer(store, "jobs", "Job", retry_seconds=0.01)
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        assert store.list_failures == 0
        assert inf.get("ns", "x") is not None
    finally:
        inf.stop()


def test_invalid_objects_gauge() -> None:
    from prometheus_client import REGISTRY

    store = FakeStore([Obj("ns", "x", 1, valid=False), Obj("ns", "y", 1)], 1)
    inf = Informer(store, "jobs", "Queue", resync_seconds=3600)
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        assert REGISTRY.get_sample_value("docket_invalid_objects", {"kind": "Queue"}) == 1
        assert REGISTRY.get_sample_value("docket_informer_objects", {"kind": "Queue"}) == 2
        store.stream.events.put(Ev("PUT", "ns", "x", Obj("ns", "x", 2)))
        eventually(lambda: REGISTRY.get_sample_value(
            "docket_invalid_objects", {"kind": "Queue"}) == 0)
    finally:
        inf.stop()
