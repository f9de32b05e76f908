"""The store conformance suite (tests/store/conformance.py) on a real etcd: the reference the
in-memory twin is held to. Each test gets an etcd of its own (`private_etcd`), since the suite
counts revisions, compacts and restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from controller.runtime.clock import Clock, RealClock
from controller.store import EtcdServer, Store
from tests.store.conformance import Backend, StoreConformance

pytestmark = pytest.mark.integration


class RealBackend(Backend):
    patience = 10.0

    def __init__(self, server: EtcdServer) -> None:
        super().__init__()
        self.server = server

    def _connect(self) -> Store:
        return Store(self.server.endpoint, prefix="/docket-conformance", retry_seconds=20)

    @property
    def clock(self) -> Clock:
        return RealClock()

    def pass_time(self, seconds: float) -> None:
        time.sleep(seconds)  # a real lease's TTL runs in real time: nothing to wait *for*

    def restart(self) -> None:
        self.server.stop()
        self.server.start()


class TestRealEtcd(StoreConformance):
    @pytest.fixture
    def backend(self, private_etcd: EtcdServer) -> Iterator[Backend]:
        b = RealBackend(private_etcd)
        yield b
        b.close()
