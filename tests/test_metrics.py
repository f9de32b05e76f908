"""The metrics server over real HTTP, readiness checks, and pre-initialised zeros."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from types import ModuleType

import pytest
from prometheus_client.metrics import MetricWrapperBase

from controller import metrics
from controller.metrics import MetricsServer, ReadinessChecks, parse_address


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    s = MetricsServer("127.0.0.1:0")
    s.start()
    yield s
    s.stop()


def test_metrics_endpoint_shows_zeros_for_known_labels(server: MetricsServer) -> None:
    code, body = fetch(server.port, "/metrics")
    assert code == 200
    for line in (
        'docket_reconcile_total{kind="Job",result="success"}',
        'docket_reconcile_total{kind="CronJob",result="terminal_error"}',
        'docket_tasks_failed_total{reason="timeout"}',
        'docket_tasks_killed_total{reason="deadline"}',
        'docket_tasks_active{state="running"}',
        'docket_invalid_objects{kind="Job"}',
        'docket_workqueue_depth{name="Job"}',
        'docket_reconcile_duration_seconds_count{kind="Service"}',
        "docket_leader ",
    ):
        assert line in body, f"{line} missing from /metrics"


def metric_names(module: ModuleType) -> set[str]:
    """The names of the Prometheus metrics a module defines (its metric objects' names as
    exposed, counters with their `_total`), not the module's attribute names."""
    names = set()
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_metrics_owned_elsewhere_are_not_redefined() -> None:
    from controller.store import metrics as store_metrics

    etcd = {"docket_etcd_request_duration_seconds", "docket_etcd_request_errors_total"}
    assert etcd <= metric_names(store_metrics), "the store defines the etcd metrics"
    assert "docket_leader" in metric_names(metrics)
    assert not etcd & metric_names(metrics), "redefined in controller.metrics"


def test_healthz_and_readyz(server: MetricsServer) -> None:
    assert fetch(server.port, "/healthz") == (200, "ok\n")
    code, body = fetch(server.port, "/readyz")
    assert code == 200 and body.strip() == "ready", "no checks registered: ready"

    state = {"etcd": True, "mesos": False}
    server.readiness.register("etcd", lambda: state["etcd"])
    server.readiness.register("mesos", lambda: state["mesos"])

    def broken() -> bool:
        raise RuntimeError("boom")

    server.readiness.register("caches-synced", broken)
    code, body = fetch(server.port, "/readyz")
    assert code == 503
    assert "[+]etcd ok" in body
    assert "[-]mesos failed" in body
    assert "[-]caches-synced failed: RuntimeError('boom')" in body
    assert body.strip().endswith("not ready")

    state["mesos"] = True
    server.readiness.register("caches-synced", lambda: True)
    code, body = fetch(server.port, "/readyz")
    assert code == 200
    assert "[+]mesos ok" in body and body.strip().endswith("ready")
    assert fetch(server.port, "/nope")[0] == 404


def test_stop_releases_the_port() -> None:
    s = MetricsServer("127.0.0.1:0")
    s.start()
    port = s.port
    s.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
    again = MetricsServer(f"127.0.0.1:{port}")
    again.start()  # the port is free again
    again.stop()


def test_readiness_checks_sorted_and_unregister() -> None:
    checks = ReadinessChecks()
    checks.register("b", lambda: True)
    checks.register("a", lambda: False)
    assert [(r.name, r.ok) for r in checks.run()] == [("a", False), ("b", True)]
    checks.unregister("a")
    assert [r.name for r in checks.run()] == ["b"]


def test_parse_address() -> None:
    assert parse_address(":9102") == ("0.0.0.0", 9102)
    assert parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_address("9102") == ("0.0.0.0", 9102)
    assert parse_address("[::1]:9102") == ("::1", 9102)
    with pytest.raises(ValueError, match="not a number"):
        parse_address("host:abc")
    with pytest.raises(ValueError, match="out of range"):
        parse_address(":70000")
