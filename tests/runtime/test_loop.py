"""The reconcile loop sorts outcomes like controller-runtime."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence

import pytest
from prometheus_client import REGISTRY

from controller.runtime import Controller, FakeClock, RateLimiter, Result, TerminalError, WorkQueue


def total(kind: str, result: str) -> float:
    value = REGISTRY.get_sample_value("docket_reconcile_total", {"kind": kind, "result": result})
    return value or 0.0


def setup(reconcile: object) -> tuple[Controller, WorkQueue, FakeClock]:
    clock = FakeClock()
    q = WorkQueue("Job", clock=clock, rate_limiter=RateLimiter(clock, base_delay=1, max_delay=60))
    return Controller("Job", q, reconcile, workers=1), q, clock  # type: ignore[arg-type]


def run_one(c: Controller, q: WorkQueue) -> str:
    key = q.get(0)
    assert key is not None
    try:
        return c.process(key)
    finally:
        q.done(key)


def test_success_forgets_backoff() -> None:
    c, q, _ = setup(lambda key: None)
    q.add_rate_limited("a")
    q.add("a")
    before = total("Job", "success")
    assert run_one(c, q) == "success"
    assert q.num_requeues("a") == 0
    assert total("Job", "success") == before + 1


def test_requeue_after_comes_back_at_its_time() -> None:
    c, q, clock = setup(lambda key: Result(requeue_after=30))
    q.add("a")
    assert run_one(c, q) == "requeue_after"
    assert q.get(0) is None
    clock.advance(30)
    assert q.get(0) == "a"


def test_requeue_after_zero_comes_back_at_once() -> None:
    # A plan that left work for its next pass (a Queue's claims beyond one transaction).
    c, q, _clock = setup(lambda key: Result(requeue_after=0))
    q.add("a")
    assert run_one(c, q) == "requeue_after"
    assert q.get(0) == "a"


def test_transient_error_is_retried_with_growing_backoff() -> None:
    def fail(key: Hashable) -> Result:
        raise RuntimeError("etcd down")

    c, q, clock = setup(fail)
    before = total("Job", "error")
    q.add("a")
    assert run_one(c, q) == "error"
    assert q.num_requeues("a") == 1
    clock.advance(1)
    assert run_one(c, q) == "error"
    clock.advance(1)
    assert q.get(0) is None, "second retry waits 2s"
    clock.advance(1)
    assert q.get(0) == "a"
    assert total("Job", "error") == before + 2


def test_requeue_true_is_rate_limited() -> None:
    c, q, clock = setup(lambda key: Result(requeue=True))
    q.add("a")
    assert run_one(c, q) == "requeue"
    assert q.get(0) is None
    clock.advance(1)
    assert q.get(0) == "a"


def test_terminal_error_is_not_retried() -> None:
    def bad(key: Hashable) -> Result:
        raise TerminalError("spec is wrong")

    c, q, clock = setup(bad)
    before = total("Job", "terminal_error")
    q.add("a")
    assert run_one(c, q) == "terminal_error"
    clock.advance(10_000)
    assert q.get(0) is None
    assert total("Job", "terminal_error") == before + 1


def test_workers_process_keys_and_stop() -> None:
    seen: list[Hashable] = []
    lock = threading.Lock()

    def record(key: Hashable) -> None:
        with lock:
            seen.append(key)

    q = WorkQueue("Job")
    c = Controller("Job", q, record, workers=3)
    c.start()
    try:
        for i in range(20):
            q.add(i)
        deadline = time.monotonic() + 5
        while len(seen) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(seen) == list(range(20))  # type: ignore[type-var]
    finally:
        c.stop()
    assert c._threads == []
    count = REGISTRY.get_sample_value("docket_reconcile_duration_seconds_count", {"kind": "Job"})
    assert count is not None and count >= 20


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Controller("Job", WorkQueue("Job"), lambda key: None, workers=0)


def test_process_many_settles_each_key_by_its_own_outcome() -> None:
    clock = FakeClock()
    q = WorkQueue("Job", clock=clock, rate_limiter=RateLimiter(clock, base_delay=1, max_delay=60))
    seen: list[list[Hashable]] = []

    def many(keys: Sequence[Hashable]) -> list[Result | Exception | None]:
        seen.append(list(keys))
        return [None, Result(requeue_after=30), RuntimeError("etcd down"),
                TerminalError("bad spec")]

    c = Controller("Job", q, lambda key: None, workers=1, reconcile_many=many, batch=10)
    for key in "abcd":
        q.add(key)
    keys = q.get_many(10, 0)
    try:
        assert c.process_many(keys) == ["success", "requeue_after", "error", "terminal_error"]
    finally:
        for taken in keys:
            q.done(taken)
    assert seen == [["a", "b", "c", "d"]]
    assert q.num_requeues("c") == 1 and q.num_requeues("d") == 0
    clock.advance(1)
    assert q.get_many(10, 0) == ["c"]  # the error is retried after its backoff
    clock.advance(29)
    assert q.get_many(10, 0) == ["b"]  # and b comes back at its time


def test_workers_take_ready_keys_in_batches() -> None:
    q = WorkQueue("Job")
    batches: list[int] = []
    done = threading.Event()

    def many(keys: Sequence[Hashable]) -> list[Result | Exception | None]:
        batches.append(len(keys))
        if sum(batches) == 20:
            done.set()
        return [None for _ in keys]

    c = Controller("Job", q, lambda key: None, workers=1, reconcile_many=many, batch=8)
    for i in range(20):
        q.add(i)
    c.start()
    try:
        assert done.wait(5)
    finally:
        c.stop()
    assert batches == [8, 8, 4]
