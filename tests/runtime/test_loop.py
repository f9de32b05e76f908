"""The reconcile loop sorts outcomes like controller-runtime."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

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
