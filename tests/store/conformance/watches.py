"""Conformance: watches (every change once, in order, from a revision; resumption after a
cancel, a broken stream or a closed connection) and compaction (Compacted, re-list, etcd's
tombstone quirk at the compaction revision)."""

from __future__ import annotations

import queue
from typing import Any

import pyetcd.exceptions
import pytest

from controller.api import Job
from controller.store import (
    Compacted,
    Delete,
    Put,
    StoreError,
)
from tests.store.conformance.backend import (
    Backend,
    head,
    job_doc,
    job_key,
    marker_comes_next,
    next_events,
    summary,
)


class WatchConformance:
    # --- watches ----------------------------------------------------------------------------
    def test_a_watch_from_a_revision_delivers_every_change_once_in_order(
            self, backend: Backend) -> None:
        store = backend.store()
        key = job_key(store, "w")
        r1 = store.put_raw(key, job_doc("w", 1))
        r2 = store.put_raw(key, job_doc("w", 2))
        store.delete_raw(key)
        r3 = head(store)
        stream = backend.watch(store, "jobs", r2)  # from r2: the second put and the delete
        events = next_events(stream, 2, backend.patience)
        assert summary(events) == [("PUT", "w", r2), ("DELETE", "w", r3)]
        put = events[0].object
        assert put is not None and isinstance(put.object, Job)
        assert (put.create_revision, put.version) == (r1, 2)
        assert put.object.spec.completions == 2
        marker_comes_next(store, stream, backend.patience)

    def test_a_raw_watch_delivers_each_event_once_from_its_start_revision(
            self, backend: Backend) -> None:
        # etcd's contract itself, below WatchStream (which watches from one revision early and
        # drops what it has seen, so it would hide a missing first event or a repeated one).
        store = backend.store()
        key = job_key(store, "a")
        store.put_raw(key, b"1")
        r2 = store.put_raw(key, b"2")
        store.delete_raw(key)
        inbox: queue.Queue[Any] = queue.Queue()
        raw = store.client.raw
        watch_id = raw.add_watch_prefix_callback(store.keys.kind_prefix("jobs"), inbox.put,
                                                 start_revision=r2)

        def events(n: int) -> list[tuple[str, str, int]]:
            out: list[tuple[str, str, int]] = []
            while len(out) < n:
                response = inbox.get(timeout=backend.patience)
                out += [(type(e).__name__, bytes(e.key).decode(), e.mod_revision)
                        for e in response.events]
            return out

        try:
            assert events(2) == [("PutEvent", key, r2), ("DeleteEvent", key, r2 + 1)]
            rb = store.put_raw(job_key(store, "b"), b"b")
            rc = store.put_raw(job_key(store, "c"), b"c")
            assert events(2) == [("PutEvent", job_key(store, "b"), rb),
                                 ("PutEvent", job_key(store, "c"), rc)]
        finally:
            raw.cancel_watch(watch_id)

    def test_closing_a_connection_ends_its_watches(self, backend: Backend) -> None:
        store, other = backend.store(), backend.store()
        inbox: queue.Queue[Any] = queue.Queue()
        store.client.raw.add_watch_prefix_callback(store.keys.kind_prefix("jobs"), inbox.put)
        store.close()  # a WatchStream's thread learns of it here, and does not hang
        ended = inbox.get(timeout=backend.patience)
        assert ended is None or isinstance(ended, Exception), f"not an end: {ended}"
        other.put_raw(job_key(other, "after"), b"x")  # the etcd itself goes on
        assert other.get_raw(job_key(other, "after")) is not None

    def test_the_changes_of_one_commit_come_in_its_order_at_its_revision(
            self, backend: Backend) -> None:
        store = backend.store()
        store.put_raw(job_key(store, "c"), job_doc("c"))
        _, rev = store.list("jobs")
        stream = backend.watch(store, "jobs", rev + 1)
        r = store.commit([Put(job_key(store, "b"), job_doc("b")),
                          Put(job_key(store, "a"), job_doc("a")),
                          Delete(job_key(store, "c"))])
        assert summary(next_events(stream, 3, backend.patience)) == [
            ("PUT", "b", r), ("PUT", "a", r), ("DELETE", "c", r)]

    def test_a_watch_resumes_after_the_last_revision_it_delivered(
            self, backend: Backend) -> None:
        store = backend.store()
        _, rev = store.list("jobs")
        first = backend.watch(store, "jobs", rev + 1, {})
        for name in ("a", "b"):
            store.put_raw(job_key(store, name), job_doc(name))
        seen = next_events(first, 2, backend.patience)
        resume_at = first.next_revision
        first.cancel()
        assert resume_at == seen[-1].revision + 1
        rc = store.put_raw(job_key(store, "c"), job_doc("c"))  # while nobody watches
        ra = store.put_raw(job_key(store, "a"), job_doc("a", 3))
        second = backend.watch(store, "jobs", resume_at, {e.key: e.revision for e in seen})
        assert summary(next_events(second, 2, backend.patience)) == [
            ("PUT", "c", rc), ("PUT", "a", ra)]
        marker_comes_next(store, second, backend.patience)

    def test_a_broken_watch_resumes_without_gap_or_duplicate(self, backend: Backend) -> None:
        store = backend.store()
        _, rev = store.list("jobs")
        stream = backend.watch(store, "jobs", rev + 1)
        store.put_raw(job_key(store, "a"), job_doc("a"))
        before = next_events(stream, 1, backend.patience)
        backend.restart()
        for name in ("b", "c"):  # possibly before the watch is back
            store.put_raw(job_key(store, name), job_doc(name))
        after = next_events(stream, 2, backend.patience)
        assert [e.name for e in before + after] == ["a", "b", "c"]
        assert stream.restarts >= 1
        marker_comes_next(store, stream, backend.patience)

    # --- compaction -------------------------------------------------------------------------
    def test_compaction_makes_older_revisions_unreadable(self, backend: Backend) -> None:
        store = backend.store()
        prefix = store.keys.kind_prefix("jobs")
        old = store.put_raw(job_key(store, "a"), b"1")
        now = store.put_raw(job_key(store, "a"), b"2")
        store.client.raw.compact(now)
        with pytest.raises(Compacted):
            store.list_raw(prefix, revision=old)
        items, _ = store.list_raw(prefix, revision=now)
        assert [(v, mod, create) for _, v, mod, create, _ in items] == [(b"2", now, old)]
        with pytest.raises(Compacted):
            store.client.call("compact", "", lambda: store.client.raw.compact(now))
        with pytest.raises(StoreError, match="future revision"):
            store.client.call("compact", "", lambda: store.client.raw.compact(now + 10))

    def test_a_raw_watch_from_before_a_compaction_is_told_so(self, backend: Backend) -> None:
        store = backend.store()
        prefix = store.keys.kind_prefix("jobs")
        store.put_raw(job_key(store, "a"), b"a")
        store.delete_raw(job_key(store, "a"))
        compacted = head(store)
        store.client.raw.compact(compacted)
        inbox: queue.Queue[Any] = queue.Queue()
        raw = store.client.raw
        try:
            raw.add_watch_prefix_callback(prefix, inbox.put, start_revision=compacted - 1)
            answer = inbox.get(timeout=backend.patience)
        except pyetcd.exceptions.RevisionCompactedError as exc:  # etcd may say it at once
            answer = exc
        assert isinstance(answer, pyetcd.exceptions.RevisionCompactedError)
        assert answer.compacted_revision == compacted
        # From exactly the compaction revision etcd accepts the watch, yet the deletion made at
        # that revision is gone with its history: the first thing delivered is the next put.
        watch_id = raw.add_watch_prefix_callback(prefix, inbox.put, start_revision=compacted)
        try:
            later = store.put_raw(job_key(store, "b"), b"b")
            response = inbox.get(timeout=backend.patience)
            assert [(bytes(e.key), e.mod_revision) for e in response.events] == [
                (job_key(store, "b").encode(), later)]
        finally:
            raw.cancel_watch(watch_id)

    def test_a_watch_from_before_a_compaction_relists_the_difference(
            self, backend: Backend) -> None:
        store = backend.store()
        for name in ("old-0", "old-1", "old-2"):
            store.put_raw(job_key(store, name), job_doc(name))
        items, rev = store.list("jobs")
        known = {i.key: i.mod_revision for i in items}
        store.put_raw(job_key(store, "old-0"), job_doc("old-0", 5))
        store.delete_object("jobs", "default", "old-1")
        store.put_raw(job_key(store, "new"), job_doc("new"))
        store.client.raw.compact(head(store))
        stream = backend.watch(store, "jobs", rev + 1, known)
        events = next_events(stream, 3, backend.patience)
        assert sorted((e.type, e.name) for e in events) == [
            ("DELETE", "old-1"), ("PUT", "new"), ("PUT", "old-0")]
        marker_comes_next(store, stream, backend.patience)

    def test_a_deletion_at_the_compaction_revision_is_not_lost(self, backend: Backend) -> None:
        store = backend.store()
        key = job_key(store, "gone")
        created = store.put_raw(key, job_doc("gone"))
        store.delete_raw(key)
        deleted = head(store)
        store.client.raw.compact(deleted)
        stream = backend.watch(store, "jobs", deleted, {key: created})
        (event,) = next_events(stream, 1, backend.patience)
        assert (event.type, event.name) == ("DELETE", "gone")
        marker_comes_next(store, stream, backend.patience)
