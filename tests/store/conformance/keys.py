"""Conformance: keys, revisions, compare-and-swap, transactions (the group committer's nested
ones included), etcd's request limits, lists at a revision in pages."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pyetcd.utils import prefix_range_end

import controller.store.store as store_module
from controller.api import InvalidObject, Job
from controller.store import (
    Compacted,
    Conflict,
    Delete,
    Expect,
    Put,
    StoreError,
)
from tests.store.conformance.backend import (
    Backend,
    deletes,
    head,
    job_doc,
    job_key,
    nested,
    puts,
)


class KeysConformance:
    # --- keys and revisions -----------------------------------------------------------------
    def test_each_change_takes_one_revision_and_versions_count(self, backend: Backend) -> None:
        store = backend.store()
        key = job_key(store, "a")
        r1 = store.put_raw(key, job_doc("a"))
        assert r1 == head(store) and store.get_raw(key) == (job_doc("a"), r1, r1)
        r2 = store.put_raw(key, job_doc("a", 2))
        got = store.get("jobs", "default", "a")
        assert got is not None and r2 == r1 + 1
        assert (got.mod_revision, got.create_revision, got.version) == (r2, r1, 2)
        assert store.delete_raw(key) is True
        r3 = head(store)
        assert r3 == r2 + 1 and store.get_raw(key) is None
        r4 = store.put_raw(key, job_doc("a"))  # created again: a new object, a new uid
        got = store.get("jobs", "default", "a")
        assert got is not None and r4 == r3 + 1
        assert (got.uid, got.mod_revision, got.version) == (r4, r4, 1)

    def test_what_changes_nothing_takes_no_revision(self, backend: Backend) -> None:
        store = backend.store()
        key = job_key(store, "a")
        rev = store.put_raw(key, job_doc("a"))
        with pytest.raises(Conflict):
            store.put_raw(key, job_doc("a", 2), expected_mod_revision=0)
        assert store.delete_raw(job_key(store, "missing")) is False
        store.commit([Delete(f"{store.keys.prefix}/none/", prefix=True)])
        store.revoke_lease(store.grant_lease(5))  # a lease without keys
        store.list("jobs")
        assert head(store) == rev

    def test_objects_are_typed_and_bad_documents_are_invalid(self, backend: Backend) -> None:
        store = backend.store()
        store.put_raw(job_key(store, "good"), job_doc("good"))
        store.put_raw(job_key(store, "bad"), b"{not json")
        store.put_raw(store.keys.kind_prefix("jobs") + "default/a/b", job_doc("x"))
        good = store.get("jobs", "default", "good")
        assert good is not None and isinstance(good.object, Job) and good.valid
        items, _ = store.list("jobs")
        assert sorted((i.name, i.valid) for i in items) == [
            ("bad", False), ("default/a/b", False), ("good", True)]
        bad = next(i for i in items if i.name == "bad").object
        assert isinstance(bad, InvalidObject) and bad.raw == b"{not json"

    def test_compare_and_swap(self, backend: Backend) -> None:
        store = backend.store()
        key = job_key(store, "a")
        r1 = store.put_raw(key, b"1", expected_mod_revision=0)  # create-only
        with pytest.raises(Conflict, match="already exists"):
            store.put_raw(key, b"2", expected_mod_revision=0)
        r2 = store.put_raw(key, b"2", expected_mod_revision=r1)
        with pytest.raises(Conflict, match="no longer at revision"):
            store.put_raw(key, b"3", expected_mod_revision=r1)
        assert store.get_raw(key) == (b"2", r2, r1)
        with pytest.raises(Conflict):
            store.delete_raw(key, expected_mod_revision=r1)
        assert store.delete_raw(key, expected_mod_revision=r2) is True
        assert store.put_if_absent(key, b"4") and not store.put_if_absent(key, b"5")
        found = store.get_raw(key)
        assert found is not None and found[0] == b"4"

    def test_a_commit_is_all_or_nothing_at_one_revision(self, backend: Backend) -> None:
        store = backend.store()
        p = store.keys.prefix
        store.put_raw(f"{p}/x/hello/t1", b"x")
        kept = store.put_raw(f"{p}/x/hello-2/t1", b"x")
        rev = store.commit([Put(job_key(store, "a"), b"a"), Put(job_key(store, "b"), b"b"),
                            Delete(f"{p}/x/hello/", prefix=True)],
                           [Expect(job_key(store, "a"), 0)])
        items, _ = store.list_raw(p + "/")
        assert {key: mod for key, _v, mod, _c, _ver in items} == {
            job_key(store, "a"): rev, job_key(store, "b"): rev, f"{p}/x/hello-2/t1": kept}
        with pytest.raises(Conflict):
            store.commit([Put(job_key(store, "c"), b"c"), Delete(job_key(store, "a"))],
                         [Expect(job_key(store, "b"), rev), Expect(job_key(store, "a"), 0)])
        assert store.get_raw(job_key(store, "c")) is None
        assert store.get_raw(job_key(store, "a")) is not None and head(store) == rev

    def test_transactions_travelling_together_keep_their_own_outcomes(
            self, backend: Backend) -> None:
        store = backend.store()
        a, b, c = (job_key(store, n) for n in "abc")
        ra = store.put_raw(a, b"a")
        # Three transactions in one request (the group committer nests them): each compare is
        # judged on the state before the request, so the third sees `c` still absent although
        # the first creates it.
        out = store.commit_many([([Put(c, b"c")], [Expect(c, 0)]),
                                 ([Put(b, b"b")], [Expect(a, ra + 100)]),
                                 ([Put(a, b"a2")], [Expect(a, ra), Expect(c, 0)])])
        assert isinstance(out[1], Conflict)
        assert out[0] == out[2] == ra + 1 == head(store)
        assert store.get_raw(b) is None
        assert store.get_raw(c) == (b"c", ra + 1, ra + 1)

    def test_concurrent_writers_lose_nothing_and_each_race_has_one_winner(
            self, backend: Backend) -> None:
        """16 threads advance their own key by compare-and-swap (none may lose) and race, in
        pairs, to create keys only one of each pair may create; the group committer carries
        them to etcd together."""
        store = backend.store()
        p = store.keys.prefix
        lost: list[str] = []
        won: list[str] = []

        def worker(t: int) -> None:
            rev = 0
            for i in range(15):
                key = f"{p}/own/{t}"
                try:
                    rev = store.commit([Put(key, b"%d" % i)], [Expect(key, rev)])
                except Conflict:
                    lost.append(key)
                try:
                    shared = f"{p}/race/{t // 2}/{i}"
                    store.commit([Put(shared, b"%d" % t)], [Expect(shared, 0)])
                    won.append(shared)
                except Conflict:
                    pass

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(backend.patience * 3)
        assert lost == []
        assert sorted(won) == sorted({f"{p}/race/{n}/{i}" for n in range(8) for i in range(15)})
        for t in range(16):
            found = store.get_raw(f"{p}/own/{t}")
            assert found is not None and found[0] == b"14"

    def test_etcd_refuses_what_it_refuses(self, backend: Backend) -> None:
        store = backend.store()
        p = store.keys.prefix
        ok = store._send_txn(nested(puts(*[f"{p}/n/{i}" for i in range(126)]), puts(f"{p}/m")))
        assert ok.succeeded and len(ok.responses) == 2  # nested: 128 minus their own 2
        with pytest.raises(StoreError, match="too many operations"):
            store._send_txn(nested(puts(*[f"{p}/n/{i}" for i in range(127)]), puts(f"{p}/m")))
        with pytest.raises(StoreError, match="too many operations"):
            store._send_txn(puts(*[f"{p}/n/{i}" for i in range(129)]))
        with pytest.raises(StoreError, match="duplicate key"):
            store._send_txn(nested(puts(f"{p}/d"), puts(f"{p}/d")))
        with pytest.raises(StoreError, match="duplicate key"):
            store._send_txn(nested(deletes(f"{p}/d"), puts(f"{p}/d")))
        store._send_txn(nested(deletes(f"{p}/d"), deletes(f"{p}/d")))
        store._send_txn(nested(puts(f"{p}/d"), deletes(f"{p}/d")))  # allowed this way round
        assert store.get_raw(f"{p}/d") is None
        key = job_key(store, "huge")
        with pytest.raises(StoreError, match=f"txn {key}"):
            store.put_raw(key, b"x" * (1600 * 1024))  # over --max-request-bytes
        with pytest.raises(StoreError, match=f"txn {key}"):
            store.put_raw(key, b"x" * (2100 * 1024))  # over what gRPC takes at all
        with pytest.raises(StoreError, match="lease not found"):
            store.put_raw(key, b"x", lease=123456789)
        assert store.get_raw(key) is None

    # --- lists ------------------------------------------------------------------------------
    def test_a_list_at_a_revision_reads_that_snapshot_in_pages(
            self, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
        store = backend.store()
        prefix = f"{store.keys.prefix}/paged/"
        for i in range(10):
            store.put_raw(f"{prefix}{i:02d}", b"old")
        then = head(store)
        store.put_raw(f"{prefix}03", b"new")
        store.delete_raw(f"{prefix}04")
        store.put_raw(f"{prefix}99", b"new")
        monkeypatch.setattr(store_module, "LIST_PAGE", 3)
        items, header = store.list_raw(prefix, revision=then)
        assert header == head(store), "the header is etcd's revision now, not the one read"
        assert [k for k, *_ in items] == [f"{prefix}{i:02d}" for i in range(10)]
        assert {v for _, v, *_ in items} == {b"old"}
        assert [ver for *_, ver in items] == [1] * 10
        pages: list[int] = []
        real_range = store._range

        def range_then_write(*args: Any, **kwargs: Any) -> Any:
            resp = real_range(*args, **kwargs)
            pages.append(len(resp.kvs))
            store.put_raw(f"{prefix}{len(pages):02d}", b"newer")  # between pages
            return resp

        monkeypatch.setattr(store, "_range", range_then_write)
        items, _ = store.list_raw(prefix)
        assert pages == [3, 3, 3, 1]
        assert [(k[-2:], v) for k, v, *_ in items] == (
            [(f"{i:02d}", b"old") for i in range(3)] + [("03", b"new")]
            + [(f"{i:02d}", b"old") for i in range(5, 10)] + [("99", b"new")])

    def test_a_list_too_large_for_one_response_takes_smaller_pages(
            self, backend: Backend) -> None:
        store = backend.store()
        prefix = f"{store.keys.prefix}/large/"
        value = b"L" * (150 * 1024)
        for start in range(0, 40, 8):  # 6 MiB: more than one gRPC response may carry
            store.commit([Put(f"{prefix}{i:02d}", value) for i in range(start, start + 8)])
        with pytest.raises(StoreError, match="larger than max"):  # gRPC's 4 MiB, as one page
            store._range(prefix, end=prefix_range_end(prefix.encode()), operation="list")
        items, _ = store.list_raw(prefix)
        assert [k for k, *_ in items] == [f"{prefix}{i:02d}" for i in range(40)]
        assert all(v == value for _, v, *_ in items)

    def test_a_future_revision_is_an_error_not_compaction(self, backend: Backend) -> None:
        store = backend.store()
        with pytest.raises(StoreError, match="future revision") as info:
            store.list_raw(store.keys.prefix + "/", revision=head(store) + 10)
        assert not isinstance(info.value, Compacted)
