"""controller/queues/etcd_items.py on the in-memory etcd (and once on a real one): items in
create-revision order with their first-seen times, claims, ids with '/', head_limit and counts,
snapshots that later changes do not alter, on_change wake-ups, a re-list after a compaction
(first-seen times kept), and availability while the watch is down.

Every check first waits until the cache has applied etcd's head revision
(`EtcdQueueItems.next_revision` passes it only once the changes up to there are applied), never
for a fixed time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pyetcd.exceptions
import pytest

from controller.clock import FakeClock
from controller.queues.etcd_items import EtcdQueueItems
from controller.reconcile.queue import SourceView
from controller.store import MemoryEtcd, Store
from tests.store.conformance.backend import eventually, head

NS, Q = "default", "mails"
PATIENCE = 10.0


class Harness:
    def __init__(self, etcd: MemoryEtcd | None, store: Store, clock: FakeClock,
                 stale_after: float = 5.0) -> None:
        self.etcd = etcd
        self.store = store
        self.clock = clock
        self.changes: list[tuple[str, str]] = []
        self._changes_lock = threading.Lock()
        self.items = EtcdQueueItems(store, clock=clock.utcnow, on_change=self._changed,
                                    stale_after=stale_after)

    def _changed(self, namespace: str, name: str) -> None:
        with self._changes_lock:
            self.changes.append((namespace, name))

    def take_changes(self) -> set[tuple[str, str]]:
        with self._changes_lock:
            out = set(self.changes)
            self.changes.clear()
        return out

    def put(self, item: str, value: str | bytes = b"", *, ns: str = NS, q: str = Q) -> int:
        data = value.encode() if isinstance(value, str) else value
        return self.store.put_raw(self.store.keys.queue_item(ns, q, item), data or item.encode())

    def delete(self, item: str, *, ns: str = NS, q: str = Q) -> None:
        self.store.delete_raw(self.store.keys.queue_item(ns, q, item))

    def claim(self, item: str, value: str = "7.0", *, ns: str = NS, q: str = Q) -> None:
        self.store.put_raw(self.store.keys.queue_claim(ns, q, item), value.encode())

    def release(self, item: str, *, ns: str = NS, q: str = Q) -> None:
        self.store.delete_raw(self.store.keys.queue_claim(ns, q, item))

    def caught_up(self) -> None:
        """Wait until the cache has applied everything etcd holds now (the last write must be
        one the cache watches: its revision moves only with those)."""
        target = head(self.store)
        eventually(lambda: self.items.next_revision > target, PATIENCE)

    def view(self, head_limit: int = 100, *, ns: str = NS, q: str = Q) -> SourceView:
        return self.items.view(ns, q, head_limit, self.clock.utcnow())


def ids(view: SourceView) -> list[str]:
    return [m.id for m in view.head]


@pytest.fixture
def h() -> Iterator[Harness]:
    etcd = MemoryEtcd()
    store = etcd.store()
    harness = Harness(etcd, store, FakeClock())
    yield harness
    harness.items.stop()
    store.close()


def started(h: Harness) -> Harness:
    h.items.start()
    assert h.items.wait_for_sync(PATIENCE)
    h.caught_up()
    return h


# --- order, first-seen times, counts ---------------------------------------------------------

def test_items_listed_at_start_are_in_create_revision_order_not_key_order(h: Harness) -> None:
    for item in ("c", "a", "b"):
        h.put(item)
    h.put("c", "c again")  # an update keeps its place in line
    t0 = h.clock.utcnow()
    started(h)
    view = h.view()
    assert view.available and view.type == "etcd"
    assert ids(view) == ["c", "a", "b"]
    assert view.head[0].payload == b"c again"
    assert view.unclaimed == 3
    assert view.oldest_seen == t0
    assert view.polled_at == h.clock.utcnow()
    assert set(view.items) == {"c", "a", "b"}
    assert view.items["c"].mod_revision > view.items["b"].mod_revision


def test_watched_items_keep_arrival_order_and_the_time_first_seen(h: Harness) -> None:
    started(h)
    h.put("z")
    h.caught_up()
    t_z = h.clock.utcnow()
    h.clock.advance(10)
    h.put("y")
    h.caught_up()
    h.clock.advance(10)
    h.put("z", "updated")  # in place: still the oldest, still first seen at t_z
    h.delete("y")
    h.put("y", "recreated")  # a new message: last in line, first seen now
    h.caught_up()
    view = h.view()
    assert ids(view) == ["z", "y"]
    assert view.items["z"].payload == b"updated"
    assert view.oldest_seen == t_z
    h.delete("z")
    h.caught_up()
    assert h.view().oldest_seen == t_z + timedelta(seconds=20)


def test_head_limit_and_counts(h: Harness) -> None:
    for i in range(50):
        h.put(f"m{i:02d}")
    started(h)
    view = h.view(head_limit=5)
    assert ids(view) == [f"m{i:02d}" for i in range(5)]
    assert view.unclaimed == 50 and len(view.items) == 50
    assert h.view(head_limit=0).head == ()
    for i in range(10):
        h.claim(f"m{i:02d}")
    for i in range(45, 50):
        h.delete(f"m{i:02d}")
    h.caught_up()
    view = h.view(head_limit=3)
    assert ids(view) == ["m10", "m11", "m12"]
    assert view.unclaimed == 35 and len(view.items) == 45 and len(view.claims) == 10


def test_an_unknown_queue_is_an_empty_available_view(h: Harness) -> None:
    started(h)
    view = h.view(q="nothing-here")
    assert view.available and view.unclaimed == 0 and view.head == ()
    assert dict(view.items) == {} and dict(view.claims) == {} and view.oldest_seen is None


# --- claims -----------------------------------------------------------------------------------

def test_claimed_items_leave_the_head_and_come_back_in_order_when_released(h: Harness) -> None:
    for item in ("a", "b", "c", "d"):
        h.put(item)
    started(h)
    t0 = h.clock.utcnow()
    h.clock.advance(5)
    h.claim("a", "7.0")
    h.claim("b", "7.0")
    h.claim("ghost", "7.1")  # a claim of no item: counts nothing
    h.caught_up()
    view = h.view()
    assert ids(view) == ["c", "d"] and view.unclaimed == 2
    assert dict(view.claims) == {"a": "7.0", "b": "7.0", "ghost": "7.1"}
    assert view.oldest_seen == t0  # the first-seen time of c, the oldest unclaimed
    h.release("b")  # back in front of c: its place is by create revision
    h.caught_up()
    assert ids(h.view()) == ["b", "c", "d"]
    h.release("a")
    h.claim("d")
    h.caught_up()
    view = h.view()
    assert ids(view) == ["a", "b", "c"] and view.unclaimed == 3
    assert dict(view.claims) == {"d": "7.0", "ghost": "7.1"}


def test_an_item_acked_with_its_claim_is_gone(h: Harness) -> None:
    h.put("a")
    h.put("b")
    h.claim("a")
    started(h)
    assert ids(h.view()) == ["b"]
    h.delete("a")
    h.release("a")
    h.caught_up()
    view = h.view()
    assert ids(view) == ["b"] and dict(view.claims) == {} and "a" not in view.items


def test_ids_with_slashes_and_keys_that_are_not_items(h: Harness) -> None:
    keys = h.store.keys
    h.put("2026/03/04/order-1")
    h.claim("2026/03/04/order-1")
    h.put("x", q="other")
    for key in (f"{keys.prefix}/queue-items/{NS}/{Q}/",  # empty id
                f"{keys.prefix}/queue-items/{NS}/{Q}",  # no id at all
                f"{keys.prefix}/queue-items/{NS}",
                f"{keys.prefix}/queue-items/{NS}//x",  # empty queue name
                f"{keys.queue_dead_prefix(NS, Q)}dead-1",  # a dead letter
                f"{keys.prefix}/queue-other/{NS}/{Q}/y"):
        h.store.put_raw(key, b"ignored")
    started(h)
    h.store.put_raw(f"{keys.queue_dead_prefix(NS, Q)}dead-2", b"ignored")
    h.put("a/b")
    h.caught_up()
    view = h.view()
    assert ids(view) == ["a/b"]
    assert set(view.items) == {"2026/03/04/order-1", "a/b"}
    assert dict(view.claims) == {"2026/03/04/order-1": "7.0"}
    assert ids(h.view(q="other")) == ["x"]


# --- snapshots ------------------------------------------------------------------------------

def test_a_view_is_a_snapshot_that_later_changes_do_not_alter(h: Harness) -> None:
    for item in ("a", "b", "c"):
        h.put(item)
    h.claim("a", "7.0")
    started(h)
    before = h.view()
    again = h.view()  # nothing changed in between: the same snapshot may be shared
    h.put("b", "changed")
    h.delete("c")
    h.put("d")
    h.claim("b", "7.1")
    h.release("a")
    h.caught_up()
    for view in (before, again):
        assert ids(view) == ["b", "c"] and view.unclaimed == 2
        assert sorted(view.items) == ["a", "b", "c"] and len(view.items) == 3
        assert view.items["b"].payload == b"b" and "c" in view.items and "d" not in view.items
        with pytest.raises(KeyError):
            view.items["d"]
        assert dict(view.claims) == {"a": "7.0"} and len(view.claims) == 1
    after = h.view()
    assert ids(after) == ["a", "d"]
    assert sorted(after.items) == ["a", "b", "d"] and after.items["b"].payload == b"changed"
    assert dict(after.claims) == {"b": "7.1"}
    with pytest.raises(TypeError):
        after.items["x"] = after.items["a"]  # type: ignore[index]


def test_a_snapshot_outlives_its_queue(h: Harness) -> None:
    h.put("a")
    started(h)
    view = h.view()
    h.delete("a")
    h.caught_up()
    assert dict(view.items).keys() == {"a"} and ids(view) == ["a"]
    assert h.view().unclaimed == 0 and len(h.view().items) == 0


# --- wake-ups -------------------------------------------------------------------------------

def test_on_change_names_each_queue_that_changed(h: Harness) -> None:
    h.put("a")
    started(h)
    assert h.take_changes() == {(NS, Q)}  # the initial list
    h.put("b", q="other")
    h.claim("a")
    h.caught_up()
    assert h.take_changes() == {(NS, Q), (NS, "other")}
    h.store.put_raw(f"{h.store.keys.queue_dead_prefix(NS, Q)}x", b"dead")
    h.store.put_raw(h.store.keys.object("jobs", NS, "j"), b"{}")  # not watched at all
    # The cache's revision moves only with changes under its prefix: a later item of another
    # queue shows the two writes above were applied (in order) and woke nothing.
    h.put("barrier", q="barrier")
    h.caught_up()
    assert h.take_changes() == {(NS, "barrier")}


def test_on_change_is_called_outside_the_lock(h: Harness) -> None:
    """A callback that reads a view (the controller's wake-up may) must not deadlock."""
    seen: list[int] = []

    def read(namespace: str, name: str) -> None:
        seen.append(h.items.view(namespace, name, 10, h.clock.utcnow()).unclaimed)

    h.items = EtcdQueueItems(h.store, clock=h.clock.utcnow, on_change=read)
    started(h)
    h.put("a")
    h.caught_up()
    eventually(lambda: seen == [1], PATIENCE)


def test_a_failing_callback_does_not_stop_the_watch(h: Harness) -> None:
    def boom(namespace: str, name: str) -> None:
        raise RuntimeError("callback bug")

    h.items = EtcdQueueItems(h.store, clock=h.clock.utcnow, on_change=boom)
    started(h)
    h.put("a")
    h.caught_up()
    h.put("b")
    h.caught_up()
    assert ids(h.view()) == ["a", "b"]


# --- compaction, outages --------------------------------------------------------------------

class Gate:
    """Wraps the watch connection's add_watch_prefix_callback: while closed, a new watch
    waits; while failing, it raises as an unreachable etcd does."""

    def __init__(self, raw: Any) -> None:
        self._inner: Callable[..., int] = raw.add_watch_prefix_callback
        self.open = threading.Event()
        self.open.set()
        self.failing = False
        self.attempts = 0

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        self.attempts += 1
        assert self.open.wait(PATIENCE), "gate never opened"
        if self.failing:
            raise pyetcd.exceptions.ConnectionFailedError()
        return self._inner(*args, **kwargs)


@pytest.fixture
def gate(h: Harness, monkeypatch: pytest.MonkeyPatch) -> Gate:
    raw = h.store.watch_client.raw
    g = Gate(raw)
    monkeypatch.setattr(raw, "add_watch_prefix_callback", g)
    return g


def test_a_compaction_while_the_watch_is_down_is_answered_by_a_relist(
        h: Harness, gate: Gate) -> None:
    assert h.etcd is not None
    for item in ("keep", "update", "delete", "recreate", "claimed"):
        h.put(item)
    h.claim("claimed", "7.0")
    h.claim("released", "7.0")
    started(h)
    t0 = h.clock.utcnow()
    assert h.items.relists == 1
    h.take_changes()
    gate.open.clear()  # the re-watch waits until etcd is compacted past what it needs
    h.etcd.restart()
    eventually(lambda: gate.attempts >= 2, PATIENCE)
    h.clock.advance(30)
    h.put("update", "new value")
    h.delete("delete")
    h.delete("recreate")
    h.put("recreate", "again")
    h.put("new")
    h.release("released")
    h.release("claimed")
    h.claim("keep", "7.1")
    h.put("other-q", q="other")
    h.etcd.compact(head(h.store))
    gate.open.set()
    eventually(lambda: h.items.relists == 2, PATIENCE)
    h.caught_up()
    view = h.view()
    assert view.available
    assert ids(view) == ["update", "claimed", "recreate", "new"]
    assert view.items["update"].payload == b"new value"
    assert view.items["recreate"].payload == b"again"
    assert "delete" not in view.items
    assert dict(view.claims) == {"keep": "7.1"}
    assert view.oldest_seen == t0  # "update" is the same message: first seen before
    assert h.take_changes() == {(NS, Q), (NS, "other")}
    # and the watch runs again after the re-list
    h.put("after")
    h.caught_up()
    assert ids(h.view())[-1] == "after"


def test_views_say_unavailable_before_the_first_list_and_while_the_watch_is_down(
        h: Harness, gate: Gate) -> None:
    assert h.etcd is not None
    view = h.view()
    assert not view.available and "not loaded" in view.error and view.polled_at is None
    h.put("a")
    started(h)
    assert h.view().available
    gate.failing = True
    h.etcd.restart()
    eventually(lambda: gate.attempts >= 3, PATIENCE)
    # Within the grace period the cache still answers (a restart is routine) ...
    assert h.view().available
    h.clock.advance(6)
    # ... after it, the Queue is told the source is unavailable, and why.
    view = h.view()
    assert not view.available and "down since" in view.error and view.head == ()
    gate.failing = False
    h.put("b")
    h.caught_up()
    view = h.view()
    assert view.available and ids(view) == ["a", "b"]


def test_stop_then_start_again_resumes(h: Harness) -> None:
    h.put("a")
    started(h)
    h.items.stop()
    h.put("b")
    started(h)
    assert ids(h.view()) == ["a", "b"]


def test_a_large_queue_keeps_exact_counts(h: Harness) -> None:
    n = 5000
    started(h)
    for i in range(n):
        h.put(f"m{i:05d}")
    h.caught_up()
    assert h.view(head_limit=1).unclaimed == n
    for i in range(0, n, 2):
        h.claim(f"m{i:05d}")
    h.caught_up()
    view = h.view(head_limit=3)
    assert view.unclaimed == n // 2 and ids(view) == ["m00001", "m00003", "m00005"]
    for i in range(0, 1000, 2):
        h.release(f"m{i:05d}")
    h.caught_up()
    view = h.view(head_limit=3)
    assert view.unclaimed == n // 2 + 500 and ids(view) == ["m00000", "m00001", "m00002"]


# --- against a real etcd --------------------------------------------------------------------

@pytest.mark.integration
def test_real_etcd_items_claims_and_order(store: Store) -> None:
    h = Harness(None, store, FakeClock())
    try:
        keys = store.keys
        for item in ("b", "a", "dir/c"):
            store.put_raw(keys.queue_item(NS, Q, item), item.encode())
        store.put_raw(keys.queue_claim(NS, Q, "b"), b"9.0")
        started(h)
        view = h.view()
        assert ids(view) == ["a", "dir/c"] and view.unclaimed == 2
        assert dict(view.claims) == {"b": "9.0"}
        store.put_raw(keys.queue_item(NS, Q, "d"), b"d")
        store.delete_raw(keys.queue_claim(NS, Q, "b"))
        store.delete_raw(keys.queue_item(NS, Q, "a"))
        h.caught_up()
        view = h.view()
        assert ids(view) == ["b", "dir/c", "d"] and view.unclaimed == 3
        assert dict(view.claims) == {} and (NS, Q) in h.take_changes()
    finally:
        h.items.stop()


# --- the per-queue structure, directly ------------------------------------------------------

def test_an_item_seen_out_of_order_takes_its_place_and_snapshots_stay() -> None:
    """A watch never delivers an older item after a newer one, but a re-list of a cache that
    missed one could: the queue is put back in create-revision order."""
    from controller.queues.etcd_items import _Queue

    lock = threading.Lock()
    q = _Queue.new(lock)
    t = datetime(2026, 1, 1).astimezone()
    q.put_item("new", b"n", 20, 20, t)
    with lock:
        items, head_before = q.items.snapshot(), list(q.unclaimed)
    q.put_item("old", b"o", 10, 10, t)
    q.settle_order()
    q.settle_unclaimed()
    assert list(q.items.data) == ["old", "new"] and list(q.unclaimed) == ["old", "new"]
    assert sorted(items) == ["new"] and head_before == ["new"]


def test_snapshot_reads_race_changes_and_still_see_the_snapshot() -> None:
    """Lookups in a snapshot take no lock: a thread changes the live dict (under the lock, as
    the watch thread does: sets, deletes, re-orders) while fresh snapshots are read. The race
    is at a key's first change after a snapshot, so many snapshots are taken. (Reading the
    undo log before the live dict fails this test within a few hundred snapshots.)"""
    import time

    from controller.queues.snapshots import UndoLog

    lock = threading.Lock()
    log: UndoLog[int] = UndoLog(lock)
    with lock:
        for i in range(20):
            log.set(f"k{i}", i)
    done = threading.Event()

    def write() -> None:
        n = 0
        while not done.is_set():
            n += 1
            with lock:
                key = f"k{n % 30}"
                if n % 3:
                    log.set(key, -n)
                else:
                    log.pop(key)
                if n % 101 == 0:
                    shift = n
                    log.reorder(lambda k: (shift + int(k[1:])) % 7)  # noqa: B023
            time.sleep(0)  # let the reader in

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(2000):
            with lock:
                snap = log.snapshot()
                expected = dict(log.data)
            for key in ("k0", "k7", "k15", "k25"):
                assert snap.get(key) == expected.get(key)
                assert (key in snap) == (key in expected)
        assert dict(snap.items()) == expected and len(snap) == len(expected)
        assert sorted(snap.values()) == sorted(expected.values())
        assert sorted(snap) == sorted(expected)
    finally:
        done.set()
        writer.join()
