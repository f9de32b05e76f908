"""The watch under faults, against a real etcd: a compaction while the watcher is cut off, a
caller that passes no `known`, changes right after an etcd restart, and a property test of
random puts, deletes, compactions, cut connections and etcd restarts, after which the watcher
must have seen every change once, in order, and hold etcd's exact state.

Every check first waits until the stream has delivered up to etcd's head revision
(`WatchStream.next_revision` passes it only once the events up to there are queued), never
for a fixed time nor until two views happen to be equal: a put followed by a delete leaves the
view as it was, so "equal views" holds before the watch has even reconnected (issue 9)."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine as hypothesis_engine
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from controller.store import Compacted, Delete, EtcdServer, Store, WatchEvent, WatchStream
from tests.store.proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

# Generous: an etcd restart plus the stream's reconnect backoff (at most 2 s) on a busy
# machine takes a few seconds; the wait ends as soon as the stream gets there.
DELIVERY_TIMEOUT = 30.0


def job_doc(name: str, n: int = 1) -> bytes:
    return json.dumps({"apiVersion": "docket.dev/v1", "kind": "Job",
                       "metadata": {"name": name},
                       "spec": {"completions": n, "template": {"command": "true"}}}).encode()


def queued(stream: WatchStream) -> list[WatchEvent]:
    """The events already queued, without waiting for more."""
    out: list[WatchEvent] = []
    while (ev := stream.get(timeout=0)) is not None:
        out.append(ev)
    return out


def delivered_up_to(stream: WatchStream, head: int,
                    timeout: float = DELIVERY_TIMEOUT) -> list[WatchEvent]:
    """Every event the stream delivers up to revision `head` (read from etcd by the caller).

    The stream queues a change's events before moving `next_revision` past it, so once
    `next_revision > head` the queue holds everything up to `head`."""
    out: list[WatchEvent] = []
    deadline = time.monotonic() + timeout
    while stream.next_revision <= head:
        assert time.monotonic() < deadline, (
            f"the stream did not deliver up to etcd's head revision {head} within "
            f"{timeout:.0f}s: it is at {stream.next_revision - 1}; events so far {out}")
        # Consuming while waiting keeps the wait short: get() returns on the next event.
        ev = stream.get(timeout=0.05)
        if ev is not None:
            out.append(ev)
    return out + queued(stream)


def head_revision(store: Store) -> int:
    return store.list("jobs")[1]


def check_order(events: list[WatchEvent]) -> None:
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions), f"revisions go back: {revisions}"
    pairs = [(e.key, e.revision) for e in events]
    assert len(pairs) == len(set(pairs)), f"an event delivered twice: {pairs}"
    puts = [e.revision for e in events if e.type == "PUT"]
    assert len(puts) == len(set(puts)), f"two PUTs with one revision: {puts}"


def apply(view: dict[str, int], events: list[WatchEvent]) -> None:
    for ev in events:
        if ev.type == "PUT":
            view[ev.key] = ev.revision
        else:
            view.pop(ev.key, None)


def etcd_view(store: Store) -> dict[str, int]:
    return {k: m for k, _v, m, _c, _ver in store.list_raw(store.keys.kind_prefix("jobs"))[0]}


@pytest.fixture
def cut_store(private_etcd: EtcdServer) -> Iterator[tuple[Store, Store, TcpProxy]]:
    """(watcher's store through a proxy that can be cut, writer's direct store, proxy)."""
    proxy = TcpProxy(private_etcd.port)
    watcher = Store(proxy.endpoint, retry_seconds=20, timeout=2)
    writer = Store(private_etcd.endpoint, retry_seconds=20)
    yield watcher, writer, proxy
    watcher.close()
    writer.close()
    proxy.close()


def test_compaction_while_the_watcher_is_cut_off(
        cut_store: tuple[Store, Store, TcpProxy]) -> None:
    watcher, writer, proxy = cut_store
    keys = writer.keys
    for name in ("a", "b", "c"):
        writer.put_raw(keys.object("jobs", "default", name), job_doc(name))
    items, rev = watcher.list("jobs")
    view = {i.key: i.mod_revision for i in items}
    stream = watcher.watch("jobs", rev + 1, dict(view))
    try:
        events = delivered_up_to(
            stream, writer.put_raw(keys.object("jobs", "default", "a"), job_doc("a", 2)))
        proxy.cut()
        # While the watcher cannot reach etcd: changes, then history compacted past them.
        writer.delete_object("jobs", "default", "b")
        writer.put_raw(keys.object("jobs", "default", "c"), job_doc("c", 3))
        writer.put_raw(keys.object("jobs", "default", "d"), job_doc("d"))
        writer.client.raw.compact(head_revision(writer))
        proxy.restore()
        events += delivered_up_to(stream, head_revision(writer))
        assert [(e.type, e.name) for e in events] == [
            ("PUT", "a"), ("PUT", "c"), ("PUT", "d"), ("DELETE", "b")]
        check_order(events)
        apply(view, events)
        assert view == etcd_view(writer)
    finally:
        stream.cancel()


def test_a_watch_without_known_still_reports_deletions_after_compaction(
        cut_store: tuple[Store, Store, TcpProxy]) -> None:
    watcher, writer, proxy = cut_store
    keys = writer.keys
    for name in ("a", "b"):
        writer.put_raw(keys.object("jobs", "default", name), job_doc(name))
    _, rev = watcher.list("jobs")
    stream = watcher.watch("jobs", rev + 1)  # the caller holds a and b but says nothing
    try:
        first = delivered_up_to(
            stream, writer.put_raw(keys.object("jobs", "default", "b"), job_doc("b", 2)))
        assert [(e.type, e.name) for e in first] == [("PUT", "b")]
        proxy.cut()
        writer.delete_object("jobs", "default", "a")
        writer.put_raw(keys.object("jobs", "default", "c"), job_doc("c"))
        writer.client.raw.compact(head_revision(writer))
        proxy.restore()
        events = delivered_up_to(stream, head_revision(writer))
        assert [(e.type, e.name) for e in events] == [("PUT", "c"), ("DELETE", "a")]
        check_order(first + events)
    finally:
        stream.cancel()


@pytest.mark.parametrize(("watching", "held_off", "puts"), [
    pytest.param(False, False, 1, id="issue-9-sequence"),
    pytest.param(False, True, 2, id="held-off"),
    pytest.param(True, True, 2, id="held-off-while-watching"),
])
def test_a_put_and_delete_after_an_etcd_restart_are_each_delivered(
        private_etcd: EtcdServer, cut_store: tuple[Store, Store, TcpProxy],
        watching: bool, held_off: bool, puts: int) -> None:
    """Restart etcd, put `a`, delete it: the stream must deliver each change, in order, at
    its revision. Put then delete leaves the state as it was, so a stream that re-listed after
    the restart (nothing was compacted) would collapse them into nothing, and a wait for "the
    watcher's view equals etcd's" would end before the stream got there (issue 9).

    `held_off` keeps the watcher's connection cut from before the restart until the writes
    are done, so it cannot reconnect in between: whatever the timing, it must resume from its
    revision and find them all. Without it the sequence is the very one that failed."""
    watcher, writer, proxy = cut_store
    keys = writer.keys
    key = keys.object("jobs", "default", "a")
    items, rev = watcher.list("jobs")
    assert items == []
    stream = watcher.watch("jobs", rev + 1, {})
    try:
        events: list[WatchEvent] = []
        expected: list[tuple[str, str, int]] = []
        if watching:
            # Its delivery proves the watch was established before etcd went away, so the
            # restart breaks a live watch rather than racing its creation.
            other = keys.object("jobs", "default", "b")
            expected.append(("PUT", other, writer.put_raw(other, job_doc("b"))))
            events += delivered_up_to(stream, expected[-1][2])
        if held_off:
            proxy.cut()
        private_etcd.restart()
        for n in range(2, 2 + puts):
            expected.append(("PUT", key, writer.put_raw(key, job_doc("a", n))))
        deleted = writer.commit([Delete(key)])
        expected.append(("DELETE", key, deleted))
        assert head_revision(writer) == deleted
        proxy.restore()
        events += delivered_up_to(stream, deleted)
        assert [(e.type, e.key, e.revision) for e in events] == expected
        check_order(events)
        if watching:
            assert stream.restarts >= 1, "the stream never lost its watch: no restart tested"
    finally:
        stream.cancel()


def test_a_deletion_at_the_compaction_revision_is_not_lost(private_etcd: EtcdServer) -> None:
    # etcd removes a tombstone at the compaction revision but accepts a watch from exactly
    # that revision, which then never reports the deletion.
    store = Store(private_etcd.endpoint, retry_seconds=20)
    keys = store.keys
    try:
        key = keys.object("jobs", "default", "a")
        created = store.put_raw(key, job_doc("a"))
        deleted = store.commit([Delete(key)])
        store.client.raw.compact(deleted)
        stream = store.watch("jobs", deleted, {key: created})
        try:
            events = delivered_up_to(stream, deleted)
            assert [(e.type, e.name) for e in events] == [("DELETE", "a")]
        finally:
            stream.cancel()
    finally:
        store.close()


def test_the_revision_before_the_start_is_not_delivered_again(
        private_etcd: EtcdServer) -> None:
    store = Store(private_etcd.endpoint, retry_seconds=20)
    keys = store.keys
    try:
        first = store.put_raw(keys.object("jobs", "default", "a"), job_doc("a"))
        second = store.put_raw(keys.object("jobs", "default", "b"), job_doc("b"))
        stream = store.watch("jobs", second, {keys.object("jobs", "default", "a"): first})
        try:
            events = delivered_up_to(stream, second)
            assert [(e.type, e.name, e.revision) for e in events] == [("PUT", "b", second)]
        finally:
            stream.cancel()
    finally:
        store.close()


def test_a_watch_from_an_already_compacted_revision_relists(private_etcd: EtcdServer) -> None:
    store = Store(private_etcd.endpoint, retry_seconds=20)
    keys = store.keys
    try:
        store.put_raw(keys.object("jobs", "default", "a"), job_doc("a"))
        _, rev = store.list("jobs")
        store.put_raw(keys.object("jobs", "default", "b"), job_doc("b"))
        store.client.raw.compact(head_revision(store))
        stream = store.watch("jobs", rev)  # `rev - 1` is gone: nothing is known
        try:
            events = delivered_up_to(stream, head_revision(store))
            assert sorted((e.type, e.name) for e in events) == [("PUT", "a"), ("PUT", "b")]
            check_order(events)
        finally:
            stream.cancel()
    finally:
        store.close()


@dataclass
class Harness:
    server: EtcdServer
    proxy: TcpProxy
    writer: Store
    examples: int = 0
    stores: list[Store] = field(default_factory=list)


NAMES = st.sampled_from(["a", "b", "c", "d"])

# The bounds of the property test. Every replay of an example restarts etcd (about a second),
# and Hypothesis would shrink a failure for up to five minutes, past pytest's timeout (issue 9).
# With these a failure reports in seconds with the smallest example found within
# SHRINK_SECONDS; even a stream that stalls (each replay waits out PROPERTY_DELIVERY_TIMEOUT)
# reports within about a minute and a half. A passing run takes 5-12 s (two busy cores); the
# fault sequences the suite once found bugs with are replayed as fixed cases below.
MAX_EXAMPLES = 6
STEPS = 10
SHRINK_SECONDS = 15
PROPERTY_DELIVERY_TIMEOUT = 15.0
EXAMPLE_DEADLINE = timedelta(seconds=25)  # a hang, not slowness: examples take ~1-5 s


class WatchMachine(RuleBasedStateMachine):
    """Random changes and faults; the watcher must end up with etcd's exact state and, when
    history was never compacted, must have seen every write once, in order."""

    harness: Harness

    def __init__(self) -> None:
        super().__init__()
        h = self.harness
        h.examples += 1
        self.prefix = f"/prop-{h.examples}"
        self.writer = Store(h.writer.client, prefix=self.prefix)
        self.watcher = Store(h.proxy.endpoint, prefix=self.prefix, retry_seconds=20, timeout=2)
        h.stores.append(self.watcher)
        self.writes: list[tuple[str, str, int]] = []  # (type, key, revision)
        self.compacted = False
        self.restarted = False
        self.stream: WatchStream | None = None
        self.start_view: dict[str, int] = {}
        self.events: list[WatchEvent] = []

    @initialize(pass_known=st.booleans(), preexisting=st.sets(NAMES, max_size=2))
    def start(self, pass_known: bool, preexisting: set[str]) -> None:
        for name in sorted(preexisting):
            self.writer.put_raw(self.writer.keys.object("jobs", "default", name), job_doc(name))
        items, rev = self.watcher.list("jobs")
        self.start_view = {i.key: i.mod_revision for i in items}
        self.stream = self.watcher.watch("jobs", rev + 1,
                                         dict(self.start_view) if pass_known else None)

    @rule(name=NAMES, n=st.integers(1, 3), valid=st.booleans())
    def put(self, name: str, n: int, valid: bool) -> None:
        key = self.writer.keys.object("jobs", "default", name)
        rev = self.writer.put_raw(key, job_doc(name, n) if valid else b"{broken")
        self.writes.append(("PUT", key, rev))

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        key = self.writer.keys.object("jobs", "default", name)
        if self.writer.get_raw(key) is not None:
            self.writes.append(("DELETE", key, self.writer.commit([Delete(key)])))

    @rule()
    def compact(self) -> None:
        head = head_revision(self.writer)
        raw = self.writer.client.raw
        with contextlib.suppress(Compacted):  # already compacted at this revision
            self.writer.client.call("compact", str(head), lambda: raw.compact(head))
        self.compacted = True

    @rule(changes=st.lists(NAMES, max_size=3), compact=st.booleans())
    def cut_connection(self, changes: list[str], compact: bool) -> None:
        self.harness.proxy.cut()
        try:
            for name in changes:
                self.put(name, 1, True)
            if compact:
                self.compact()
        finally:
            self.harness.proxy.restore()

    @precondition(lambda self: not self.restarted)  # a restart costs about a second
    @rule()
    def restart_etcd(self) -> None:
        self.restarted = True
        self.harness.server.restart()

    @invariant()
    def revisions_never_go_back(self) -> None:
        if self.stream is not None:
            self.events += queued(self.stream)  # whatever has arrived so far; no waiting
        check_order(self.events)

    def teardown(self) -> None:
        if self.stream is None:
            return
        try:
            self.events += delivered_up_to(self.stream, head_revision(self.writer),
                                           PROPERTY_DELIVERY_TIMEOUT)
            check_order(self.events)
            view = dict(self.start_view)
            apply(view, self.events)
            target = etcd_view(self.writer)
            assert view == target, (
                f"watcher's view {view} != etcd's {target}; events {self.events}")
            if not self.compacted:
                assert [(e.type, e.key, e.revision) for e in self.events] == self.writes
        finally:
            self.stream.cancel()
            self.watcher.close()


@pytest.mark.timeout(150)  # a backstop only: the bounds above end a failing run well before
def test_watch_view_equals_etcd_under_random_faults(
        private_etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hypothesis has no setting for its shrinking time budget (five minutes); its engine keeps
    # it in this constant and allows monkeypatching it. Past the budget it reports the
    # smallest failing example found so far (with a warning that still says "five minutes").
    monkeypatch.setattr(hypothesis_engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)
    proxy = TcpProxy(private_etcd.port)
    writer = Store(private_etcd.endpoint, retry_seconds=20)
    WatchMachine.harness = Harness(private_etcd, proxy, writer)
    try:
        run_state_machine_as_test(WatchMachine, settings=settings(
            max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=EXAMPLE_DEADLINE,
            suppress_health_check=list(HealthCheck)))
    finally:
        writer.close()
        proxy.close()
