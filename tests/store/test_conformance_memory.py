"""The store conformance suite (tests/store/conformance.py) on the in-memory etcd twin
(`controller.store.MemoryEtcd`), with a fake clock driving its leases: no servers, no waiting.

Below the suite, what only the twin has: its own clock, its thread's lifetime, closed
connections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.runtime.clock import Clock, FakeClock
from controller.store import MemoryEtcd, Store, StoreError
from tests.store.conformance import Backend, StoreConformance, job_doc, job_key


class MemoryBackend(Backend):
    patience = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.fake_clock = FakeClock()
        self.etcd = MemoryEtcd(clock=self.fake_clock.now)

    def _connect(self) -> Store:
        return self.etcd.store(prefix="/docket-conformance")

    @property
    def clock(self) -> Clock:
        return self.fake_clock

    def pass_time(self, seconds: float) -> None:
        self.fake_clock.advance(seconds)

    def restart(self) -> None:
        self.etcd.restart()


class TestMemoryEtcd(StoreConformance):
    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        b = MemoryBackend()
        yield b
        b.close()


def test_leases_expire_on_the_injected_clock_exactly() -> None:
    clock = FakeClock()
    store = MemoryEtcd(clock=clock.now).store()
    try:
        lease = store.grant_lease(10)
        store.put_raw("/k", b"v", lease=lease)
        clock.advance(9.99)
        assert store.get_raw("/k") is not None
        clock.advance(0.01)
        assert store.get_raw("/k") is None
    finally:
        store.close()


def test_the_delivery_thread_ends_with_the_last_connection() -> None:
    etcd = MemoryEtcd()
    store = etcd.store()
    _, rev = store.list("jobs")
    stream = store.watch("jobs", rev + 1)
    store.grant_lease(5)
    assert etcd._thread is not None
    thread = etcd._thread
    stream.cancel()
    store.close()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_a_closed_connection_refuses_calls_and_others_go_on() -> None:
    etcd = MemoryEtcd()
    first, second = etcd.store(), etcd.store()
    first.put_raw(job_key(first, "a"), job_doc("a"))
    first.close()
    with pytest.raises(StoreError, match="closed channel"):
        first.get_raw(job_key(first, "a"))
    assert second.get_raw(job_key(second, "a")) is not None
    second.close()


