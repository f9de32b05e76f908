"""Regression (chaos suite, issue 14): /readyz hung for the etcd client's whole timeout (5 s)
when etcd was frozen (SIGSTOP: connections stay open, nothing answers), so a readiness probe
timed out instead of hearing why. `Store.ping` bounds the status call by its own deadline, and
the controller's etcd readiness check uses it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from controller.manager import READYZ_ETCD_TIMEOUT, _etcd_ok
from controller.store import EtcdServer, Store
from controller.store.memory import MemoryEtcd, MemoryEtcdClient


@pytest.mark.integration
def test_etcd_readiness_answers_within_its_deadline_when_etcd_is_frozen(
        private_etcd: EtcdServer) -> None:
    store = Store(private_etcd.endpoint, prefix="/ping", retry_seconds=10)
    pid = private_etcd.pid
    assert pid is not None
    try:
        assert _etcd_ok(store)
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(Exception, match=r"DEADLINE_EXCEEDED|unavailable"):
            _etcd_ok(store)
        # The deadline, plus scheduling slack; the bug took the client's 5 s.
        assert time.monotonic() - started < READYZ_ETCD_TIMEOUT + 1.5
    finally:
        os.kill(pid, signal.SIGCONT)
        store.close()


def test_ping_works_on_the_in_memory_etcd() -> None:
    store = Store(MemoryEtcdClient(MemoryEtcd()), prefix="/ping")
    store.ping(0.5)
    store.close()
