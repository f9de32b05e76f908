"""The store against a real etcd: typed reads, CAS writes, watches across restarts and
compaction, invalid documents, status, executions and leases."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from controller.api import ExecutionRecord, InvalidObject, Job, JobStatus, decode_object
from controller.api.status import JobPhase
from controller.store import (
    Conflict,
    EtcdServer,
    EtcdUnavailable,
    Put,
    Store,
    WatchEvent,
    WatchStream,
)

pytestmark = pytest.mark.integration


def job_doc(name: str = "hello", completions: int = 1) -> bytes:
    return json.dumps({"apiVersion": "docket.dev/v1", "kind": "Job",
                       "metadata": {"name": name},
                       "spec": {"completions": completions,
                                "template": {"command": "echo hi"}}}).encode()


def next_events(stream: WatchStream, n: int, timeout: float = 10) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        ev = stream.get(timeout=0.1)
        if ev is not None:
            out.append(ev)
    assert len(out) == n, f"expected {n} events, got {[(e.type, e.key) for e in out]}"
    return out


def assert_quiet(stream: WatchStream, seconds: float = 0.5) -> None:
    ev = stream.get(timeout=seconds)
    assert ev is None, f"unexpected extra event {ev}"


def test_get_and_list_are_typed(store: Store) -> None:
    key = store.keys.object("jobs", "default", "hello")
    rev = store.put_raw(key, job_doc())
    got = store.get("jobs", "default", "hello")
    assert got is not None and isinstance(got.object, Job)
    assert got.object.spec.template.command == "echo hi"
    assert got.mod_revision == rev and got.create_revision == rev and got.uid == rev
    assert store.get("jobs", "default", "missing") is None
    store.put_raw(store.keys.object("jobs", "team", "other"), job_doc("other"))
    items, list_rev = store.list("jobs")
    assert {(i.namespace, i.name) for i in items} == {("default", "hello"), ("team", "other")}
    assert list_rev >= rev


def test_put_object_writes_under_its_key(store: Store) -> None:
    obj = decode_object(job_doc("written"))
    assert isinstance(obj, Job)
    store.put_object(obj)
    got = store.get("jobs", "default", "written")
    assert got is not None and got.object == obj


def test_cas_conflict(store: Store) -> None:
    status = JobStatus(phase=JobPhase.RUNNING, active=1)
    r1 = store.put_status("jobs", "default", "a", status, expected_mod_revision=0)
    with pytest.raises(Conflict, match="already exists"):
        store.put_status("jobs", "default", "a", status, expected_mod_revision=0)
    r2 = store.put_status("jobs", "default", "a", status.model_copy(update={"active": 2}),
                          expected_mod_revision=r1)
    with pytest.raises(Conflict, match="no longer at revision"):
        store.put_status("jobs", "default", "a", status, expected_mod_revision=r1)
    got = store.get_status("jobs", "default", "a")
    assert got is not None and got.mod_revision == r2
    assert isinstance(got.status, JobStatus) and got.status.active == 2


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [(b"{not json", "invalid JSON"),
     (b"kind: Job\n  x: [", "invalid YAML"),
     (job_doc().replace(b'"completions"', b'"completion"'), "spec.completion: unknown field")],
)
def test_invalid_documents_are_delivered_not_dropped(store: Store, raw: bytes,
                                                     fragment: str) -> None:
    _, rev = store.list("jobs")
    stream = store.watch("jobs", rev + 1)
    try:
        store.put_raw(store.keys.object("jobs", "default", "hello"), raw)
        store.put_raw(store.keys.object("jobs", "default", "fine"), job_doc("fine"))
        got = store.get("jobs", "default", "hello")
        assert got is not None and isinstance(got.object, InvalidObject)
        assert fragment in got.object.message
        assert got.object.raw == raw and not got.valid
        items, _ = store.list("jobs")
        assert sorted((i.name, i.valid) for i in items) == [("fine", True), ("hello", False)]
        events = next_events(stream, 2)
        assert isinstance(events[0].object and events[0].object.object, InvalidObject)
        assert events[1].object is not None and events[1].object.valid
    finally:
        stream.cancel()


def test_bad_key_shape_is_an_invalid_object(store: Store) -> None:
    store.put_raw(store.keys.kind_prefix("jobs") + "default/a/b", job_doc())
    store.put_raw(store.keys.object("jobs", "default", "Bad_Name"), job_doc("x"))
    items, _ = store.list("jobs")
    by_name = {i.name: i for i in items}
    assert "not " in str(by_name["default/a/b"].object.problems[0])  # type: ignore[union-attr]
    bad = by_name["Bad_Name"].object
    assert isinstance(bad, InvalidObject)
    assert [p.path for p in bad.problems] == ["metadata.name"]


def test_watch_from_a_revision(store: Store) -> None:
    key = store.keys.object("jobs", "default", "w")
    r1 = store.put_raw(key, job_doc("w", 1))
    r2 = store.put_raw(key, job_doc("w", 2))
    r3 = store.delete_raw(key) and store.list("jobs")[1]
    stream = store.watch("jobs", r2)  # from r2: sees the second put and the delete only
    try:
        events = next_events(stream, 2)
        assert [e.type for e in events] == ["PUT", "DELETE"]
        assert events[0].revision == r2 and events[1].revision == r3
        assert isinstance(events[0].object and events[0].object.object, Job)
        assert events[0].object is not None and events[0].object.create_revision == r1
        assert_quiet(stream)
    finally:
        stream.cancel()


def _changes(store: Store, stream: WatchStream, start: int, count: int) -> list[WatchEvent]:
    for i in range(start, start + count):
        store.put_raw(store.keys.object("jobs", "default", f"job-{i}"), job_doc(f"job-{i}"))
    return next_events(stream, count)


def test_watch_carries_on_across_an_etcd_restart(private_etcd: EtcdServer) -> None:
    store = Store(private_etcd.endpoint, retry_seconds=20)
    try:
        _, rev = store.list("jobs")
        stream = store.watch("jobs", rev + 1)
        before = _changes(store, stream, 0, 3)
        private_etcd.stop()
        time.sleep(0.3)
        private_etcd.start()
        # Written right after the restart, possibly before the watch is re-established.
        after = _changes(store, stream, 3, 3)
        names = [e.name for e in before + after]
        assert names == [f"job-{i}" for i in range(6)]
        revisions = [e.revision for e in before + after]
        assert revisions == sorted(set(revisions))
        assert stream.restarts >= 1
        assert_quiet(stream)
        stream.cancel()
    finally:
        store.close()



def test_every_watch_of_a_store_resumes_promptly_after_an_etcd_restart(
        private_etcd: EtcdServer) -> None:
    """Several kinds watched through one client, as the controller does. pyetcd lost the
    request of a watch created while another's creation failed with the broken stream: that
    kind heard nothing until a 5 s WatchTimedOut (seen as a stalled controller after an etcd
    restart, chaos suite). Streams now create their watches one at a time."""
    kinds = ["jobs", "cronjobs", "queues", "services"]
    store = Store(private_etcd.endpoint, retry_seconds=20)
    try:
        _, rev = store.list("jobs")
        streams = {kind: store.watch(kind, rev + 1) for kind in kinds}
        for kind, stream in streams.items():  # every watch established before the restart
            store.put_raw(store.keys.object(kind, "default", "before"), job_doc("before"))
            next_events(stream, 1)
        private_etcd.restart()
        back = time.monotonic()
        for kind in kinds:
            store.put_raw(store.keys.object(kind, "default", "after"), job_doc("after"))
        for kind, stream in streams.items():
            late = max(0.0, 3.0 - (time.monotonic() - back))
            assert [e.name for e in next_events(stream, 1, timeout=late)] == ["after"], kind
        for stream in streams.values():
            stream.cancel()
    finally:
        store.close()


def test_watch_resumes_after_compaction_without_gap_or_duplicate(
        private_etcd: EtcdServer) -> None:
    store = Store(private_etcd.endpoint, retry_seconds=20)
    try:
        for i in range(3):
            store.put_raw(store.keys.object("jobs", "default", f"old-{i}"), job_doc(f"old-{i}"))
        items, rev = store.list("jobs")
        known = {i.key: i.mod_revision for i in items}
        # Changes the watcher has not seen, then history compacted past them.
        store.put_raw(store.keys.object("jobs", "default", "old-0"), job_doc("old-0", 5))
        store.delete_object("jobs", "default", "old-1")
        store.put_raw(store.keys.object("jobs", "default", "new"), job_doc("new"))
        _, head = store.list("jobs")
        store.client.raw.compact(head)
        stream = store.watch("jobs", rev + 1, known)
        try:
            events = next_events(stream, 3)
            summary = sorted((e.type, e.name) for e in events)
            assert summary == [("DELETE", "old-1"), ("PUT", "new"), ("PUT", "old-0")]
            assert_quiet(stream)
            store.put_raw(store.keys.object("jobs", "default", "later"), job_doc("later"))
            (later,) = next_events(stream, 1)
            assert (later.type, later.name) == ("PUT", "later")
        finally:
            stream.cancel()
    finally:
        store.close()


def record(task_id: str, state: str = "LAUNCHING", **kw: Any) -> ExecutionRecord:
    return ExecutionRecord(task_id=task_id, index=0, attempt=0, state=state, **kw)


def test_executions_and_owner_cleanup(store: Store) -> None:
    store.put_execution("jobs", "default", "hello", record("job.default.hello.1.0.0"),
                        expected_mod_revision=0)
    with pytest.raises(Conflict):
        store.put_execution("jobs", "default", "hello", record("job.default.hello.1.0.0"),
                            expected_mod_revision=0)
    store.put_execution("jobs", "default", "hello",
                        record("job.default.hello.1.0.1", "TASK_RUNNING"))
    store.put_execution("jobs", "default", "hello-2", record("job.default.hello-2.9.0.0"))
    # Another kind may share the namespace and the name: its records are its own.
    store.put_execution("services", "default", "hello",
                        record("service.default.hello.4.0.0", "TASK_RUNNING"))
    store.put_status("jobs", "default", "hello", JobStatus(), expected_mod_revision=0)
    assert [e.record.state for e in store.list_executions("jobs", "default", "hello")] == [
        "LAUNCHING", "TASK_RUNNING"]
    store.delete_owner_data("jobs", "default", "hello")
    assert store.list_executions("jobs", "default", "hello") == []
    assert store.get_status("jobs", "default", "hello") is None
    # A neighbour whose name shares the prefix is untouched, and so is the other kind.
    assert len(store.list_executions("jobs", "default", "hello-2")) == 1
    assert [e.record.task_id for e in store.list_executions("services", "default", "hello")
            ] == ["service.default.hello.4.0.0"]


def test_framework_id_and_leases(store: Store) -> None:
    assert store.get_framework_id() is None
    store.put_framework_id("abc-0000")
    assert store.get_framework_id() == "abc-0000"
    lease = store.grant_lease(5)
    key = store.keys.controller("leader")
    assert store.put_if_absent(key, b"me", lease)
    assert not store.put_if_absent(key, b"you")
    assert store.refresh_lease(lease) > 0
    store.revoke_lease(lease)
    assert store.get_raw(key) is None
    assert store.put_if_absent(key, b"you")


def test_unreachable_etcd_is_a_clear_error() -> None:
    from controller.store.etcd_server import free_port

    s = Store(f"127.0.0.1:{free_port()}", retry_seconds=0.5, timeout=0.5)
    try:
        with pytest.raises(EtcdUnavailable, match="unavailable for get"):
            s.get("jobs", "default", "x")
    finally:
        s.close()


def test_delete_says_whether_the_key_existed(store: Store) -> None:
    key = store.keys.object("jobs", "default", "gone")
    assert store.delete_raw(key) is False
    rev = store.put_raw(key, job_doc("gone"))
    with pytest.raises(Conflict):
        store.delete_raw(key, expected_mod_revision=rev + 100)
    assert store.delete_raw(key, expected_mod_revision=rev) is True
    assert store.get_raw(key) is None


def test_several_endpoints_fail_over_to_a_live_one(etcd_server: EtcdServer,
                                                   etcd_prefix: str) -> None:
    from controller.store.etcd_server import free_port

    dead = f"127.0.0.1:{free_port()}"
    s = Store(f"{dead},{etcd_server.endpoint}", prefix=etcd_prefix, retry_seconds=10,
              timeout=1)
    try:
        for i in range(3):  # whichever endpoint it starts on, every call gets through
            s.put_raw(s.keys.object("jobs", "default", f"j{i}"), job_doc(f"j{i}"))
        assert len(s.list("jobs")[0]) == 3
    finally:
        s.close()


def test_errors_name_the_key(store: Store) -> None:
    from controller.store import StoreError

    huge = b"x" * (2 * 1024 * 1024)  # over etcd's default request size limit
    key = store.keys.object("jobs", "default", "huge")
    with pytest.raises(StoreError, match=f"txn {key}"):
        store.put_raw(key, huge)


def test_list_reads_more_than_one_grpc_response_can_carry(store: Store) -> None:
    """5 MiB of values under one prefix: more than gRPC accepts in one response (4 MiB)."""
    prefix = f"{store.keys.prefix}/big/"
    value = b"v" * 2048
    for start in range(0, 2600, 100):
        store.commit([Put(f"{prefix}{i:05d}", value) for i in range(start, start + 100)])
    items, _ = store.list_raw(prefix)
    assert [k for k, *_ in items] == [f"{prefix}{i:05d}" for i in range(2600)]
    assert all(v == value for _, v, *_ in items)


def test_list_pages_read_one_snapshot(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import controller.store.store as store_module

    prefix = f"{store.keys.prefix}/paged/"
    for i in range(10):
        store.put_raw(f"{prefix}{i:02d}", b"old")
    monkeypatch.setattr(store_module, "LIST_PAGE", 3)
    real_range = store._range
    pages = []

    def range_then_write(*args: Any, **kwargs: Any) -> Any:
        resp = real_range(*args, **kwargs)
        pages.append(len(resp.kvs))
        store.put_raw(f"{prefix}{len(pages):02d}", b"new")  # a write between pages
        store.put_raw(f"{prefix}99", b"new")
        return resp

    monkeypatch.setattr(store, "_range", range_then_write)
    items, revision = store.list_raw(prefix)
    assert pages == [3, 3, 3, 1]
    assert [k for k, *_ in items] == [f"{prefix}{i:02d}" for i in range(10)]
    assert {v for _, v, *_ in items} == {b"old"}, "every page as of the first one's revision"
    assert all(mod <= revision for _, _, mod, *_ in items)


def test_list_of_large_values_takes_smaller_pages(store: Store) -> None:
    prefix = f"{store.keys.prefix}/large/"
    value = b"L" * (150 * 1024)
    for i in range(40):  # 6 MiB: a page of them all is refused, so pages shrink
        store.put_raw(f"{prefix}{i:02d}", value)
    items, _ = store.list_raw(prefix)
    assert [k for k, *_ in items] == [f"{prefix}{i:02d}" for i in range(40)]
    assert all(v == value for _, v, *_ in items)
