"""The watch under faults, against a real etcd: a compaction while the watcher is cut off, a
caller that passes no `known`, and a property test of random puts, deletes, compactions,
cut connections and etcd restarts, after which the watcher's view must equal etcd's."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
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


def job_doc(name: str, n: int = 1) -> bytes:
    return json.dumps({"apiVersion": "docket.dev/v1", "kind": "Job",
                       "metadata": {"name": name},
                       "spec": {"completions": n, "template": {"command": "true"}}}).encode()


def drain(stream: WatchStream, seconds: float) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ev = stream.get(timeout=0.05)
        if ev is not None:
            out.append(ev)
    return out


def wait_for_view(stream: WatchStream, view: dict[str, int], events: list[WatchEvent],
                  target: dict[str, int], timeout: float = 15) -> None:
    """Apply the stream's events to `view` until it equals `target`."""
    deadline = time.monotonic() + timeout
    while view != target and time.monotonic() < deadline:
        ev = stream.get(timeout=0.1)
        if ev is None:
            continue
        events.append(ev)
        if ev.type == "PUT":
            view[ev.key] = ev.revision
        else:
            view.pop(ev.key, None)
    assert view == target, f"watcher's view {view} != etcd's {target}; events {events}"


def check_order(events: list[WatchEvent]) -> None:
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions), f"revisions go back: {revisions}"
    pairs = [(e.key, e.revision) for e in events]
    assert len(pairs) == len(set(pairs)), f"an event delivered twice: {pairs}"
    puts = [e.revision for e in events if e.type == "PUT"]
    assert len(puts) == len(set(puts)), f"two PUTs with one revision: {puts}"


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
        events: list[WatchEvent] = []
        writer.put_raw(keys.object("jobs", "default", "a"), job_doc("a", 2))
        wait_for_view(stream, view, events, {k: m for k, _v, m, _c, _ver in
                                             writer.list_raw(keys.kind_prefix("jobs"))[0]})
        proxy.cut()
        # While the watcher cannot reach etcd: changes, then history compacted past them.
        writer.delete_object("jobs", "default", "b")
        writer.put_raw(keys.object("jobs", "default", "c"), job_doc("c", 3))
        writer.put_raw(keys.object("jobs", "default", "d"), job_doc("d"))
        writer.client.raw.compact(writer.list("jobs")[1])
        proxy.restore()
        target = {k: m for k, _v, m, _c, _ver in writer.list_raw(keys.kind_prefix("jobs"))[0]}
        wait_for_view(stream, view, events, target)
        assert [(e.type, e.name) for e in events] == [
            ("PUT", "a"), ("PUT", "c"), ("PUT", "d"), ("DELETE", "b")]
        check_order(events)
        assert drain(stream, 0.5) == []
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
        writer.put_raw(keys.object("jobs", "default", "b"), job_doc("b", 2))
        (first,) = drain(stream, 0.5)  # the stream is up: it has read what the caller holds
        assert (first.type, first.name) == ("PUT", "b")
        proxy.cut()
        writer.delete_object("jobs", "default", "a")
        writer.put_raw(keys.object("jobs", "default", "c"), job_doc("c"))
        writer.client.raw.compact(writer.list("jobs")[1])
        proxy.restore()
        events = drain(stream, 2.0)
        assert [(e.type, e.name) for e in events] == [("PUT", "c"), ("DELETE", "a")]
        check_order([first, *events])
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
            events = drain(stream, 1.5)
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
            events = drain(stream, 1.0)
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
        store.client.raw.compact(store.list("jobs")[1])
        stream = store.watch("jobs", rev)  # `rev - 1` is gone: nothing is known
        try:
            events = drain(stream, 1.5)
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
        self.view: dict[str, int] = {}
        self.events: list[WatchEvent] = []

    @initialize(pass_known=st.booleans(), preexisting=st.sets(NAMES, max_size=2))
    def start(self, pass_known: bool, preexisting: set[str]) -> None:
        for name in sorted(preexisting):
            self.writer.put_raw(self.writer.keys.object("jobs", "default", name), job_doc(name))
        items, rev = self.watcher.list("jobs")
        self.view = {i.key: i.mod_revision for i in items}
        self.stream = self.watcher.watch("jobs", rev + 1, dict(self.view) if pass_known else None)

    @rule(name=NAMES, n=st.integers(1, 3), valid=st.booleans())
    def put(self, name: str, n: int, valid: bool) -> None:
        key = self.writer.keys.object("jobs", "default", name)
        rev = self.writer.put_raw(key, job_doc(name, n) if valid else b"{broken")
        self.writes.append(("PUT", key, rev))

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        key = self.writer.keys.object("jobs", "default", name)
        if self.writer.get_raw(key) is not None:
            self.writer.delete_raw(key)
            self.writes.append(("DELETE", key, self.writer.list("jobs")[1]))

    @rule()
    def compact(self) -> None:
        head = self.writer.list("jobs")[1]
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
        check_order(self.events)

    def teardown(self) -> None:
        if self.stream is None:
            return
        try:
            items, _ = self.writer.list("jobs")
            target = {i.key: i.mod_revision for i in items}
            wait_for_view(self.stream, self.view, self.events, target)
            self.events += drain(self.stream, 0.2)
            check_order(self.events)
            if not self.compacted:
                assert [(e.type, e.key, e.revision) for e in self.events] == self.writes
        finally:
            self.stream.cancel()
            self.watcher.close()


def test_watch_view_equals_etcd_under_random_faults(private_etcd: EtcdServer) -> None:
    proxy = TcpProxy(private_etcd.port)
    writer = Store(private_etcd.endpoint, retry_seconds=20)
    WatchMachine.harness = Harness(private_etcd, proxy, writer)
    try:
        run_state_machine_as_test(WatchMachine, settings=settings(
            max_examples=6, stateful_step_count=10, deadline=None,
            suppress_health_check=list(HealthCheck)))
    finally:
        writer.close()
        proxy.close()
