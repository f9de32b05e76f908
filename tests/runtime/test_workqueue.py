"""Workqueue semantics, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import threading
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.runtime import FakeClock, RateLimiter, WorkQueue


def make(*, base_delay: float = 0.005, max_delay: float = 1000.0) -> tuple[WorkQueue, FakeClock]:
    clock = FakeClock()
    limiter = RateLimiter(clock, base_delay=base_delay, max_delay=max_delay)
    return WorkQueue("Job", clock=clock, rate_limiter=limiter), clock


def test_adds_of_one_key_are_deduplicated() -> None:
    q, _ = make()
    for _ in range(3):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert q.get(0) == "a"
    assert q.get(0) == "b"
    assert q.get(0) is None


def test_key_readded_while_processing_waits_for_done() -> None:
    q, _ = make()
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0, "a key being processed must not be handed to another worker"
    assert q.get(0) is None
    q.done("a")
    assert q.get(0) == "a"
    q.done("a")
    assert q.get(0) is None


def test_done_without_readd_drops_key() -> None:
    q, _ = make()
    q.add("a")
    assert q.get(0) == "a"
    q.done("a")
    assert len(q) == 0


def test_add_after_waits_for_the_clock_and_keeps_order() -> None:
    q, clock = make()
    q.add_after("late", 10)
    q.add_after("early", 5)
    q.add_after("late", 20)  # a later delay never postpones an earlier one
    assert q.get(0) is None
    clock.advance(5)
    assert q.get(0) == "early"
    assert q.get(0) is None
    clock.advance(5)
    assert q.get(0) == "late"
    assert q.pending_delayed() == 0


def test_add_after_earlier_delay_wins() -> None:
    q, clock = make()
    q.add_after("a", 30)
    q.add_after("a", 1)
    clock.advance(1)
    assert q.get(0) == "a"
    q.done("a")
    clock.advance(60)
    assert q.get(0) is None, "the superseded later entry must not fire again"


def test_blocked_get_wakes_when_fake_clock_advances() -> None:
    q, clock = make()
    q.add_after("a", 100)
    got: list[Hashable | None] = []
    t = threading.Thread(target=lambda: got.append(q.get(5)))
    t.start()
    clock.advance(100)
    t.join(5)
    assert got == ["a"]


def test_rate_limiter_grows_exponentially_and_caps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, base_delay=0.01, max_delay=1.0, qps=1000, burst=1000)
    delays = [limiter.when("k") for _ in range(10)]
    assert delays[:4] == pytest.approx([0.01, 0.02, 0.04, 0.08])
    assert delays[-1] == 1.0
    assert max(delays) == 1.0
    assert limiter.when("other") == pytest.approx(0.01), "backoff is per key"
    limiter.forget("k")
    assert limiter.when("k") == pytest.approx(0.01)
    for _ in range(200):
        limiter.when("huge")  # 2**200 must not overflow
    assert limiter.when("huge") == 1.0


def test_token_bucket_limits_overall_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, base_delay=0.001, max_delay=0.001, qps=10, burst=2)
    assert limiter.when("a") == pytest.approx(0.001)
    assert limiter.when("b") == pytest.approx(0.001)
    # The bucket is empty: each further key waits for its token, one per 1/qps.
    assert limiter.when("c") == pytest.approx(0.1)
    assert limiter.when("d") == pytest.approx(0.2)
    clock.advance(10)  # refills, but never beyond the burst
    assert limiter.when("e") == pytest.approx(0.001)
    assert limiter.when("f") == pytest.approx(0.001)
    assert limiter.when("g") == pytest.approx(0.1)


def test_add_rate_limited_requeues_after_backoff() -> None:
    q, clock = make(base_delay=1.0, max_delay=8.0)
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 1
    assert q.get(0) is None
    clock.advance(1)
    assert q.get(0) == "a"
    q.done("a")
    q.add_rate_limited("a")
    clock.advance(1)
    assert q.get(0) is None
    clock.advance(1)
    assert q.get(0) == "a"
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_shutdown_wakes_waiters_and_ignores_adds() -> None:
    q, _ = make()
    got: list[Hashable | None] = ["unset"]
    t = threading.Thread(target=lambda: got.__setitem__(0, q.get()))
    t.start()
    q.shutdown()
    t.join(5)
    assert not t.is_alive()
    assert got == [None]
    q.add("a")
    assert len(q) == 0
    assert q.get() is None


def test_get_timeout_returns_none() -> None:
    q, _ = make()
    assert q.get(0.01) is None


def test_no_key_processed_concurrently_with_real_threads() -> None:
    q, _ = make()
    active: set[Hashable] = set()
    lock = threading.Lock()
    violations: list[Hashable] = []
    processed: list[Hashable] = []

    def worker() -> None:
        while (key := q.get(0.2)) is not None:
            with lock:
                if key in active:
                    violations.append(key)
                active.add(key)
            if len(processed) < 300:
                q.add(key)  # re-added while processing: must wait for done()
            with lock:
                active.discard(key)
                processed.append(key)
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(50):
        q.add(i % 5)
    for t in threads:
        t.join(10)
    q.shutdown()
    assert violations == []
    assert len(processed) >= 300


ops = st.lists(st.tuples(st.sampled_from(["add", "get", "done"]), st.integers(0, 4)),
               max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_dedup_invariants(steps: list[tuple[str, int]]) -> None:
    """Against a model: a key is queued at most once, never queued and processed at once
    except as dirty, and every add is eventually served after done."""
    q, _ = make()
    processing: set[int] = set()
    wanted: set[int] = set()  # keys added and not yet handed out since
    for op, key in steps:
        if op == "add":
            q.add(key)
            wanted.add(key)
        elif op == "get":
            got = q.get(0)
            if got is None:
                assert wanted <= processing, "a wanted key not in processing must be queued"
            else:
                assert isinstance(got, int)
                assert got not in processing
                assert got in wanted
                processing.add(got)
                wanted.discard(got)
        elif key in processing:
            processing.discard(key)
            q.done(key)
        assert len(q) == len(wanted - processing)
    for key in sorted(processing):
        q.done(key)
    served = set()
    while (got := q.get(0)) is not None:
        assert got not in served
        served.add(got)
    assert served == wanted


def test_get_many_takes_what_is_ready_up_to_the_limit() -> None:
    q, clock = make()
    for key in "abcd":
        q.add(key)
    q.add_after("later", 5)
    assert q.get_many(3, 0) == ["a", "b", "c"]
    q.add("a")  # being processed: not handed out again until done
    assert q.get_many(10, 0) == ["d"]
    assert q.get_many(10, 0) == []
    clock.advance(5)
    q.done("a")
    assert q.get_many(10, 0) == ["a", "later"]  # a re-queued by done, later promoted when due


def test_get_many_waits_for_the_first_key() -> None:
    q, _ = make()
    got: list[list[Hashable]] = []
    t = threading.Thread(target=lambda: got.append(q.get_many(5, 5)))
    t.start()
    q.add("x")
    t.join(5)
    assert got == [["x"]]
