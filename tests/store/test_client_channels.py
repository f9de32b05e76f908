"""How the etcd client's gRPC channels reconnect. No server: channels connect lazily, so the
options they are built with are the whole story.

gRPC spaces reconnection attempts with a backoff that grows towards 120 s. After a 20 s etcd
outage a default channel sat out 5 s more once etcd was back, every call failing fast
meanwhile (measured by the chaos suite's etcd-down scenario, which asks for 2 s). The store's
channels must retry at least every second."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from controller.store.client import EtcdClient


def test_every_channel_caps_the_reconnect_backoff_below_a_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[dict[str, Any]] = []
    real = grpc.insecure_channel

    def recording(target: str, options: Any = None, *rest: Any, **kw: Any) -> grpc.Channel:
        built.append(dict(options or ()))
        return real(target, options, *rest, **kw)

    monkeypatch.setattr(grpc, "insecure_channel", recording)
    client = EtcdClient("127.0.0.1:1,127.0.0.1:2")
    watch = client.new_connection()
    try:
        assert len(built) == 4, "one channel per endpoint, for each connection"
        for options in built:
            assert options.get("grpc.max_reconnect_backoff_ms", 120_000) <= 1000, options
            assert options.get("grpc.initial_reconnect_backoff_ms", 1000) <= 500, options
    finally:
        watch.close()
        client.close()


def test_a_failing_call_stops_retrying_once_told_to_give_up() -> None:
    """The controller's store gives up its retries once the process is not leading, so a
    worker stuck on an unreachable etcd lets the term stop at once (chaos suite, etcd down:
    the next term waited seconds for a retry loop)."""
    from controller.store.client import EtcdUnavailable

    client = EtcdClient("127.0.0.1:1", timeout=0.5, retry_seconds=20)  # nothing listens there
    told = threading.Event()
    client.give_up = told.is_set
    threading.Timer(0.5, told.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(EtcdUnavailable):
            client.call("get", "/x", lambda: client.raw.get("/x"))
    finally:
        client.close()
    assert time.monotonic() - started < 3.0, "it went on retrying after it was told to stop"
