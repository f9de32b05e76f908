"""The metrics server over real HTTP, readiness checks, pre-initialised zeros, the Queue
metrics kept from statuses (`controller/queue_metrics.py`) and the Service metrics kept from
statuses and records (`controller/service_metrics.py`)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from controller import metrics
from controller.api import Condition, ExecutionRecord, QueueStatus, ServiceStatus
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


# --- Queues -------------------------------------------------------------------------------------
QUEUE_SERIES = {"docket_queue_messages_total", "docket_queue_pending_messages",
                "docket_queue_in_flight_messages", "docket_queue_oldest_pending_seconds",
                "docket_queue_source_up", "docket_queue_batch_duration_seconds"}


def _sample(name: str, **labels: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)


def _queue_status(uid: int = 7, **counts: Any) -> QueueStatus:
    return QueueStatus(uid=uid, phase="Active", **counts)


def test_queue_metrics_are_defined_with_their_labels() -> None:
    assert metric_names(metrics) >= QUEUE_SERIES
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._name.startswith("docket_queue_"):
            labels = set(value._labelnames)
            if value._name == "docket_queue_batch_duration_seconds":
                assert labels == set(), "no per-queue or per-task label on the histogram"
            elif value._name == "docket_queue_messages":
                assert labels == {"namespace", "queue", "result"}
            else:
                assert labels == {"namespace", "queue"}, value._name


def test_observe_status_sets_gauges_and_counts_growth_once() -> None:
    from controller import queue_metrics

    q = {"namespace": "team-m", "queue": "gauges"}
    # First status of a new Queue: its own counts are all new; both results exist at 0 first.
    queue_metrics.observe_status("team-m", "gauges", None, _queue_status(
        pending=12, in_flight=3, succeeded=0, dead_lettered=1, oldest_pending_seconds=42))
    assert _sample("docket_queue_pending_messages", **q) == 12
    assert _sample("docket_queue_in_flight_messages", **q) == 3
    assert _sample("docket_queue_oldest_pending_seconds", **q) == 42
    assert _sample("docket_queue_source_up", **q) == 1
    assert _sample("docket_queue_messages_total", **q, result="succeeded") == 0
    assert _sample("docket_queue_messages_total", **q, result="dead_lettered") == 1

    old = _queue_status(pending=12, in_flight=3, dead_lettered=1, oldest_pending_seconds=42)
    new = _queue_status(pending=2, in_flight=10, succeeded=5, dead_lettered=3,
                        conditions=[Condition(type="SourceUnavailable", status="True",
                                              reason="SourceError", message="refused")])
    queue_metrics.observe_status("team-m", "gauges", old, new)
    assert _sample("docket_queue_messages_total", **q, result="succeeded") == 5
    assert _sample("docket_queue_messages_total", **q, result="dead_lettered") == 3
    assert _sample("docket_queue_oldest_pending_seconds", **q) == 0  # none known: 0
    assert _sample("docket_queue_source_up", **q) == 0

    # The same status written again (a retry, another process) counts nothing more.
    queue_metrics.observe_status("team-m", "gauges", new, new)
    assert _sample("docket_queue_messages_total", **q, result="succeeded") == 5
    # Totals never shrink a counter.
    queue_metrics.observe_status("team-m", "gauges", new, _queue_status(succeeded=4))
    assert _sample("docket_queue_messages_total", **q, result="succeeded") == 5
    # A Queue created again under the same name (another uid) starts from its own counts.
    queue_metrics.observe_status("team-m", "gauges", new, _queue_status(uid=99, succeeded=2))
    assert _sample("docket_queue_messages_total", **q, result="succeeded") == 7


def test_forget_removes_every_series_of_a_queue() -> None:
    from controller import queue_metrics

    queue_metrics.observe_status("team-m", "gone", None, _queue_status(pending=1))
    queue_metrics.observe_status("team-m", "kept", None, _queue_status(pending=4))
    queue_metrics.forget("team-m", "gone")
    queue_metrics.forget("team-m", "never-seen")  # no-op
    for name in ("docket_queue_pending_messages", "docket_queue_in_flight_messages",
                 "docket_queue_oldest_pending_seconds", "docket_queue_source_up"):
        assert _sample(name, namespace="team-m", queue="gone") is None, name
    for result in ("succeeded", "dead_lettered"):
        assert _sample("docket_queue_messages_total", namespace="team-m", queue="gone",
                       result=result) is None
    assert _sample("docket_queue_pending_messages", namespace="team-m", queue="kept") == 4


def test_observe_batch_fills_the_histogram() -> None:
    from controller import queue_metrics

    before = _sample("docket_queue_batch_duration_seconds_count") or 0
    low = _sample("docket_queue_batch_duration_seconds_bucket", le="1.0") or 0
    queue_metrics.observe_batch(0.5)
    queue_metrics.observe_batch(90)
    assert _sample("docket_queue_batch_duration_seconds_count") == before + 2
    assert _sample("docket_queue_batch_duration_seconds_bucket", le="1.0") == low + 1


def test_forget_all_when_leadership_is_lost() -> None:
    from controller import queue_metrics

    queue_metrics.observe_status("team-l", "a", None, _queue_status(pending=1))
    queue_metrics.observe_status("team-l", "b", None, _queue_status(pending=2))
    queue_metrics.forget_all()
    for name in ("a", "b"):
        assert _sample("docket_queue_pending_messages", namespace="team-l", queue=name) is None
    # Leading again: the series come back, the counters from zero.
    queue_metrics.observe_status("team-l", "a", None, _queue_status(pending=3))
    assert _sample("docket_queue_pending_messages", namespace="team-l", queue="a") == 3
    assert _sample("docket_queue_messages_total", namespace="team-l", queue="a",
                   result="succeeded") == 0


# --- Services -----------------------------------------------------------------------------------
SERVICE_SERIES = {"docket_service_instances", "docket_service_rollouts_total",
                  "docket_service_health_check_failures_total", "docket_service_restarts_total"}


def _service_status(uid: int = 7, reason: str | None = None, **counts: Any) -> ServiceStatus:
    conditions = []
    if reason is not None:
        status = "False" if reason == "ProgressDeadlineExceeded" else "True"
        conditions.append(Condition(type="Progressing", status=status,
                                    reason=reason))
    return ServiceStatus(uid=uid, phase="Running", conditions=conditions, **counts)


def _record(state: str, attempt: int = 0, name: str = "web", **fields: Any) -> ExecutionRecord:
    return ExecutionRecord(task_id=f"service.default.{name}.7.0.{attempt}", index=0,
                           attempt=attempt, state=state, **fields)


def _instances() -> dict[str, float | None]:
    return {state: _sample("docket_service_instances", state=state)
            for state in metrics.SERVICE_INSTANCE_STATES}


@pytest.fixture
def service_metrics() -> Iterator[ModuleType]:
    """The Service metrics module, every Service forgotten before and after (its gauges are
    sums over all Services, which other tests must not see)."""
    from controller import service_metrics as module

    module.forget_all()
    yield module
    module.forget_all()


def test_service_metrics_have_no_per_object_label() -> None:
    assert metric_names(metrics) >= SERVICE_SERIES
    labels = {value._name: set(value._labelnames) for value in vars(metrics).values()
              if isinstance(value, MetricWrapperBase)
              and value._name.startswith("docket_service_")}
    assert labels == {"docket_service_instances": {"state"},
                      "docket_service_rollouts": {"result"},
                      "docket_service_health_check_failures": set(),
                      "docket_service_restarts": {"reason"}}
    # Every label value exists at 0 before any Service is seen.
    for state in ("running", "healthy", "unhealthy", "staging", "unreachable"):
        assert _sample("docket_service_instances", state=state) is not None
    for result in ("completed", "stuck"):
        assert _sample("docket_service_rollouts_total", result=result) is not None
    for reason in ("failed", "lost", "unhealthy", "unreachable"):
        assert _sample("docket_service_restarts_total", reason=reason) is not None
    assert _sample("docket_service_health_check_failures_total") is not None


def test_service_instances_are_summed_over_services(service_metrics: ModuleType) -> None:
    sm = service_metrics
    sm.observe_status("a", "web", None, _service_status(running=3, healthy=2, unavailable=1))
    sm.observe_status("b", "api", None, _service_status(running=2, healthy=2))
    assert _instances() == {"running": 5, "healthy": 4, "unhealthy": 1, "staging": 0,
                            "unreachable": 0}
    # A new status replaces that Service's share, whatever the old one said.
    sm.observe_status("a", "web", None, _service_status(running=3, healthy=3))
    assert _instances()["healthy"] == 5 and _instances()["unhealthy"] == 0
    sm.forget("b", "api")
    sm.forget("b", "never-seen")
    assert _instances() == {"running": 3, "healthy": 3, "unhealthy": 0, "staging": 0,
                            "unreachable": 0}


def test_service_instances_staging_and_unreachable_from_records(
        service_metrics: ModuleType) -> None:
    sm = service_metrics
    intent = _record("LAUNCHING")
    sm.observe_record(None, intent)
    sm.observe_record(intent, intent)  # seen twice: one task
    staging = _record("TASK_STAGING")
    sm.observe_record(intent, staging)
    other = _record("LAUNCHING", name="api")
    sm.observe_record(None, other)
    assert _instances()["staging"] == 2
    running = _record("TASK_RUNNING")
    sm.observe_record(staging, running)
    unreachable = _record("TASK_UNREACHABLE")
    sm.observe_record(running, unreachable)
    assert (_instances()["staging"], _instances()["unreachable"]) == (1, 1)
    # Written off (expungeAfterSeconds): no longer an instance.
    sm.observe_record(unreachable, _record("TASK_UNREACHABLE", kill_reason="Unreachable"))
    assert _instances()["unreachable"] == 0
    # A Job's record is not a Service's.
    sm.observe_record(None, ExecutionRecord(task_id="job.default.web.7.0.0", index=0,
                                            attempt=0, state="LAUNCHING"))
    assert _instances()["staging"] == 1
    # Rebuilt from every record of a Service (after a restart): exact, counts nothing.
    sm.observe_records("default", "web", [_record("TASK_STARTING", 3),
                                          _record("TASK_UNREACHABLE", 4),
                                          _record("TASK_FAILED", 5)])
    assert (_instances()["staging"], _instances()["unreachable"]) == (2, 1)
    sm.forget("default", "web")
    assert (_instances()["staging"], _instances()["unreachable"]) == (1, 0)
    sm.forget_all()
    assert set(_instances().values()) == {0}


def test_service_rollouts_counted_on_transitions(service_metrics: ModuleType) -> None:
    sm = service_metrics

    def rollouts() -> tuple[float | None, float | None]:
        return (_sample("docket_service_rollouts_total", result="completed"),
                _sample("docket_service_rollouts_total", result="stuck"))

    done0, stuck0 = rollouts()
    assert done0 is not None and stuck0 is not None
    rolling = _service_status(reason="RollingOut")
    stuck = _service_status(reason="ProgressDeadlineExceeded")
    complete = _service_status(reason="RolloutComplete")
    sm.observe_status("default", "web", None, rolling)
    sm.observe_status("default", "web", rolling, stuck)
    sm.observe_status("default", "web", stuck, stuck)  # written again: nothing more
    assert rollouts() == (done0, stuck0 + 1)
    sm.observe_status("default", "web", stuck, complete)
    sm.observe_status("default", "web", complete, complete)
    assert rollouts() == (done0 + 1, stuck0 + 1)
    # A new incarnation (another uid) counts its own first rollout.
    sm.observe_status("default", "web", complete, _service_status(uid=8,
                                                                  reason="RolloutComplete"))
    assert rollouts() == (done0 + 2, stuck0 + 1)


def test_service_health_check_failures_and_restarts(service_metrics: ModuleType) -> None:
    sm = service_metrics

    def restarts(reason: str) -> float:
        return _sample("docket_service_restarts_total", reason=reason) or 0

    before = {r: restarts(r) for r in ("failed", "lost", "unhealthy", "unreachable")}
    failures0 = _sample("docket_service_health_check_failures_total") or 0
    running = _record("TASK_RUNNING")
    sick = _record("TASK_RUNNING", healthy=False)
    sm.observe_record(running, _record("TASK_RUNNING", healthy=True))
    sm.observe_record(running, sick)  # unknown -> unhealthy: a failure
    sm.observe_record(sick, sick)  # repeated: nothing more
    healthy = _record("TASK_RUNNING", healthy=True)
    sm.observe_record(healthy, sick)  # healthy -> unhealthy: another
    assert _sample("docket_service_health_check_failures_total") == failures0 + 2

    killed = _record("TASK_KILLED", healthy=False, reason="REASON_TASK_HEALTH_CHECK_STATUS_UPDATED")
    sm.observe_record(sick, killed)  # its check killed it
    sm.observe_record(killed, killed)  # resent
    sm.observe_record(running, _record("TASK_FAILED", exit_code=1))
    sm.observe_record(running, _record("TASK_FINISHED", exit_code=0))  # a service must not end
    sm.observe_record(running, _record("TASK_LOST"))
    sm.observe_record(running, _record("TASK_FAILED", reason="REASON_AGENT_REMOVED"))
    unreachable = _record("TASK_UNREACHABLE")
    sm.observe_record(running, unreachable)
    sm.observe_record(unreachable, _record("TASK_GONE"))  # the same instance: counted once
    # Not restarts: Docket's own kills, and an intent Mesos never saw.
    sm.observe_record(running, _record("TASK_KILLED", kill_reason="VersionReplaced"))
    sm.observe_record(running, _record("TASK_KILLED", kill_reason="ScaledDown"))
    sm.observe_record(_record("LAUNCHING"), _record("TASK_UNKNOWN"))
    assert {r: restarts(r) - before[r] for r in before} == {
        "failed": 2, "lost": 2, "unhealthy": 1, "unreachable": 1}
