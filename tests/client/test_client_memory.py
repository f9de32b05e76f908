"""The client on the in-memory etcd (no server: part of the fast run). The store's real-etcd
conformance suite holds the twin to etcd's semantics; tests/client/test_runners.py runs the
runners against a real etcd and the embedded Mesos."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controller.api import ExecutionRecord, Job, JobPhase, JobStatus, Queue
from controller.client import (
    ApplyConflict,
    Client,
    ClientError,
    Event,
    ExecutionEvent,
    JobDeleted,
    JobFailed,
    NotFound,
    Selector,
    StatusEvent,
    Subscription,
    resolve_kind,
)
from controller.store import MemoryEtcd, Store

WAIT = 5.0


def job(name: str = "hello", completions: int = 1) -> Job:
    return Job.model_validate({
        "apiVersion": "docket.dev/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"completions": completions, "template": {"command": "echo hello"}}})


@pytest.fixture
def etcd() -> MemoryEtcd:
    return MemoryEtcd()


@pytest.fixture
def mstore(etcd: MemoryEtcd) -> Iterator[Store]:
    s = etcd.store()
    yield s
    s.close()


@pytest.fixture
def client(mstore: Store) -> Iterator[Client]:
    with Client(store=mstore) as c:
        yield c


def finish(store: Store, name: str, phase: JobPhase, *, exit_code: int = 0,
           namespace: str = "default") -> None:
    """Write what the controller writes when a Job ends: a record, then the status."""
    stored = store.get("jobs", namespace, name)
    assert stored is not None
    store.put_execution("jobs", namespace, name, ExecutionRecord(
        task_id=f"{name}-0-0", index=0, attempt=0, state="TASK_FINISHED"
        if phase == JobPhase.SUCCEEDED else "TASK_FAILED", exit_code=exit_code))
    store.put_status("jobs", namespace, name, JobStatus(
        observed_revision=stored.mod_revision, uid=stored.create_revision, phase=phase,
        succeeded=1 if phase == JobPhase.SUCCEEDED else 0,
        failed=0 if phase == JobPhase.SUCCEEDED else 1), None)


def drain(sub: Subscription, until_revision: int) -> list[Event]:
    """Every event up to etcd's revision `until_revision` (bounded wait)."""
    deadline = time.monotonic() + WAIT
    out: list[Event] = []
    while sub.next_revision <= until_revision or not sub._events.empty():
        assert time.monotonic() < deadline, f"stuck at {sub.next_revision}: {out}"
        event = sub.get(timeout=0.1)
        if event is not None:
            out.append(event)
    return out


def ident(e: Event) -> tuple[Any, ...]:
    return (type(e).__name__, e.kind, e.namespace, e.name,
            e.task_id if isinstance(e, ExecutionEvent) else "", e.revision)


# --- objects -----------------------------------------------------------------------------------
def test_apply_creates_updates_and_skips_unchanged(client: Client) -> None:
    first = client.apply(job())
    assert client.apply(job()) == first  # unchanged: nothing written
    second = client.apply(job(completions=2))
    assert second > first
    got = client.get("job", "default", "hello")
    assert isinstance(got, Job) and got.spec.completions == 2
    assert [o.name for o in client.list(Job)] == ["hello"]
    assert client.list("jobs", "other") == []
    assert client.status("Job", "default", "hello") is None
    assert client.delete("jobs", "default", "hello") is True
    assert client.get(Job, "default", "hello") is None
    assert client.delete("jobs", "default", "hello") is False


def test_apply_never_overwrites_a_concurrent_change(client: Client, mstore: Store,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    client.apply(job())
    stale = mstore.get("jobs", "default", "hello")
    client.apply(job(completions=2))  # someone else's write
    monkeypatch.setattr(mstore, "get", lambda *a: stale)
    with pytest.raises(ApplyConflict, match="job default/hello was changed by someone"):
        client.apply(job(completions=3))
    monkeypatch.undo()
    got = client.get(Job, "default", "hello")
    assert isinstance(got, Job) and got.spec.completions == 2


def test_apply_needs_a_name(client: Client) -> None:
    unnamed = Job.model_validate({"apiVersion": "docket.dev/v1", "kind": "Job",
                                  "spec": {"template": {"command": "true"}}})
    with pytest.raises(ValueError, match=r"metadata\.name"):
        client.apply(unnamed)


def test_invalid_stored_object_is_an_error_naming_it(client: Client, mstore: Store) -> None:
    mstore.put_raw(mstore.keys.object("jobs", "default", "typo"), b'{"kind": "Job"}')
    with pytest.raises(ClientError, match="job default/typo is stored but invalid"):
        client.get("job", "default", "typo")
    assert client.list("job") == []


def test_kinds_by_any_name() -> None:
    assert {resolve_kind(k).plural for k in ("Job", "jobs", "job", Job)} == {"jobs"}
    with pytest.raises(KeyError, match="unknown kind 'pods'"):
        resolve_kind("pods")


def test_push_to_an_etcd_queue_writes_sortable_unique_items(client: Client,
                                                            mstore: Store) -> None:
    client.apply(Queue.model_validate({
        "apiVersion": "docket.dev/v1", "kind": "Queue", "metadata": {"name": "mail"},
        "spec": {"source": {"type": "etcd"}, "template": {"command": "true"}}}))
    messages = [f"m{i}" for i in range(250)]  # three transactions
    assert client.push("default", "mail", messages) == 250
    assert client.push("default", "mail", [b"\xff"]) == 1
    items, _ = mstore.list_raw(mstore.keys.queue_items_prefix("default", "mail"))
    assert [v for _k, v, *_ in items] == [m.encode() for m in messages] + [b"\xff"]
    assert len({k for k, *_ in items}) == 251
    with pytest.raises(NotFound, match="queue default/nope"):
        client.push("default", "nope", ["x"])


# --- subscription ------------------------------------------------------------------------------
def test_subscription_resumes_across_restarts_and_compaction(etcd: MemoryEtcd,
                                                             mstore: Store) -> None:
    client = Client(store=mstore)
    client.apply(job("a"))
    client.apply(job("b"))
    start = etcd.revision + 1
    finish(mstore, "a", JobPhase.SUCCEEDED)
    with client.subscribe(Selector(kinds=["Job"]), from_revision=start) as sub:
        before = drain(sub, etcd.revision)
        etcd.restart()
        finish(mstore, "b", JobPhase.FAILED, exit_code=3)
        after = drain(sub, etcd.revision)
        assert sub.restarts >= 1
    events = before + after
    assert [ident(e) for e in events] == sorted({ident(e) for e in events},
                                                key=lambda i: i[-1])  # ordered, no repeat
    assert [(type(e).__name__, e.name) for e in events] == [
        ("ExecutionEvent", "a"), ("StatusEvent", "a"),
        ("ExecutionEvent", "b"), ("StatusEvent", "b")]
    last = events[-1]
    assert isinstance(last, StatusEvent) and last.phase == "Failed"

    # From a compacted revision: the latest value of each key, then the deletions.
    etcd.compact(etcd.revision)
    mstore.delete_owner_data("jobs", "default", "a")
    with client.subscribe(Selector(kinds=["jobs"], name="b"), from_revision=start) as sub:
        replay = drain(sub, etcd.revision)
    assert [(type(e).__name__, e.name) for e in replay] == [
        ("ExecutionEvent", "b"), ("StatusEvent", "b")]
    client.close()


def test_selector_filters(etcd: MemoryEtcd, mstore: Store) -> None:
    with Client(store=mstore) as client:
        client.apply(job("a"))
        with client.subscribe(Selector(executions=False, namespace="default")) as sub:
            finish(mstore, "a", JobPhase.SUCCEEDED)
            events = drain(sub, etcd.revision)
    assert [type(e) for e in events] == [StatusEvent]
    with pytest.raises(ValueError, match="neither"):
        Subscription(mstore, Selector(statuses=False, executions=False))


# --- runners, with the controller's writes made by hand --------------------------------------
def test_submit_resolves_when_the_job_ends(client: Client, mstore: Store) -> None:
    future = client.submit(job())
    assert not future.done()
    finish(mstore, "hello", JobPhase.SUCCEEDED)
    result = future.result(WAIT)
    assert result.succeeded and result.status.phase == JobPhase.SUCCEEDED
    assert [r.exit_code for r in result.executions] == [0]
    # The same Job, unchanged, ended already: its result at once.
    assert client.run(job(), timeout=WAIT).succeeded


def test_run_raises_job_failed_with_status_and_executions(client: Client,
                                                          mstore: Store) -> None:
    future = client.submit(job("bad"))
    finish(mstore, "bad", JobPhase.FAILED, exit_code=3)
    with pytest.raises(JobFailed, match=r"job default/bad failed .*exit codes \[3\]") as info:
        future.result(WAIT)
    assert info.value.status.phase == JobPhase.FAILED
    assert [r.exit_code for r in info.value.executions] == [3]


def test_run_times_out_naming_the_job(client: Client) -> None:
    with pytest.raises(TimeoutError, match=r"job default/slow did not end within 0\.2s"):
        client.run(job("slow"), timeout=0.2)


def test_a_deleted_job_fails_its_waiter(client: Client, mstore: Store) -> None:
    future = client.submit(job("gone2"))
    stored = mstore.get("jobs", "default", "gone2")
    assert stored is not None
    mstore.put_status("jobs", "default", "gone2", JobStatus(
        observed_revision=stored.mod_revision, uid=stored.create_revision,
        phase=JobPhase.RUNNING), None)
    client.delete(Job, "default", "gone2")
    mstore.delete_owner_data("jobs", "default", "gone2")
    with pytest.raises(JobDeleted, match="job default/gone2 was deleted"):
        future.result(WAIT)


def test_close_fails_pending_futures(mstore: Store) -> None:
    client = Client(store=mstore)
    future = client.submit(job())
    client.close()
    with pytest.raises(ClientError, match="client closed while waiting for job default/hello"):
        future.result(WAIT)
    with pytest.raises(ClientError, match="closed"):
        client.submit(job())


def test_async_runner_and_handlers_run_in_the_loop(client: Client, mstore: Store) -> None:
    seen: list[tuple[str, str]] = []

    async def main() -> bool:
        loop_thread = asyncio.get_running_loop()
        threads: set[bool] = set()

        def record(event: Event) -> None:
            threads.add(asyncio.get_running_loop() is loop_thread)
            seen.append((type(event).__name__, event.name))

        async def arecord(event: Event) -> None:
            seen.append(("async", event.name))

        client.on(lambda e: isinstance(e, ExecutionEvent), record)
        handler = client.on(lambda e: isinstance(e, StatusEvent), arecord,
                            selector=Selector(name="hello"))
        task = asyncio.create_task(client.run_async(job(), timeout=WAIT))
        while not client._waiters:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(finish, mstore, "hello", JobPhase.SUCCEEDED)
        result = await task
        while len(seen) < 2:
            await asyncio.sleep(0.01)
        handler.remove()
        with pytest.raises(TimeoutError, match="job default/never did not end"):
            await client.run_async(job("never"), timeout=0.1)
        return result.succeeded and threads == {True}

    assert asyncio.run(main())
    assert seen == [("ExecutionEvent", "hello"), ("async", "hello")]
