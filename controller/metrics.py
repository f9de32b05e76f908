"""Every controller-level Prometheus metric, defined once, plus the /metrics, /healthz and
/readyz HTTP server.

Metrics owned elsewhere are not redefined here: the store defines
`docket_etcd_request_duration_seconds{operation}` and `docket_etcd_request_errors_total`
(controller/store/metrics.py); the Mesos adapter defines offer, launch and connection metrics
(controller/mesos/metrics.py). Labelled metrics are pre-initialised with zeros for every known
label value, so dashboards show a zero rather than a gap (a controller-runtime habit). No label
ever names a task, and only the Queue metrics name an object (`namespace`, `queue`): a queue's
depth and age are what its operators watch, queues are few and long-lived, and a deleted
Queue's series are removed (`controller/queue_metrics.py` keeps them). The Service metrics name
none: Services may be many and their instances many more, so instances are summed over every
Service by state, and rollouts, health-check failures and restarts are counted by result or
reason (`controller/service_metrics.py` keeps them); `docket get services` has the rest. The
throttle metrics name a throttle of the policy (`throttle`): an operator's few, named entries
(at most 100), whose series are removed when the policy drops them (`set_throttle_limits`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = structlog.get_logger("docket.metrics")

KINDS = ("Job", "CronJob", "Queue", "Service")
RECONCILE_RESULTS = ("success", "requeue", "requeue_after", "error", "terminal_error")
TASK_STATES = ("staging", "starting", "running", "killing", "unreachable")
TASK_END_REASONS = ("succeeded", "failed", "killed", "lost", "error", "dropped", "gone",
                    "unreachable", "timeout", "deadline", "suspended", "deleted")

_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                     2.5, 5, 10, 30, 60)

RECONCILE_SECONDS = Histogram(
    "docket_reconcile_duration_seconds", "Time spent in one reconcile call.", ["kind"],
    buckets=_DURATION_BUCKETS,
)
RECONCILE_TOTAL = Counter(
    "docket_reconcile_total", "Reconcile calls by kind and outcome.", ["kind", "result"],
)

WORKQUEUE_DEPTH = Gauge("docket_workqueue_depth", "Keys waiting in the workqueue.", ["name"])
WORKQUEUE_ADDS = Counter("docket_workqueue_adds_total", "Keys added to the workqueue.", ["name"])
WORKQUEUE_RETRIES = Counter(
    "docket_workqueue_retries_total", "Rate-limited re-adds of keys.", ["name"],
)
WORKQUEUE_LATENCY = Histogram(
    "docket_workqueue_queue_duration_seconds",
    "Time a key waits in the workqueue before a worker takes it.", ["name"],
    buckets=_DURATION_BUCKETS,
)
WORKQUEUE_WORK_SECONDS = Histogram(
    "docket_workqueue_work_duration_seconds",
    "Time from a worker taking a key to marking it done.", ["name"],
    buckets=_DURATION_BUCKETS,
)

TASKS_FINISHED = Counter(
    "docket_tasks_finished_total", "Tasks that reached a terminal state, by reason.", ["reason"],
)
TASKS_FAILED = Counter(
    "docket_tasks_failed_total", "Tasks that ended in failure, by reason.", ["reason"],
)
TASKS_KILLED = Counter("docket_tasks_killed_total", "Tasks Docket decided to kill, by reason.",
                       ["reason"])
TASKS_ACTIVE = Gauge("docket_tasks_active", "Tasks Docket believes active, by state.", ["state"])

LEADER = Gauge("docket_leader", "1 while this process holds the controller lease, else 0.")
POLICY_VALID = Gauge(
    "docket_policy_valid",
    "1 while the stored admission policy (<prefix>/policy) is valid or absent; 0 while it is "
    "invalid (the last valid one stays in force; `docket policy` says why).")
THROTTLE_RUNNING = Gauge(
    "docket_throttle_running",
    "Live tasks counted against each throttle of the policy: every matching task of every "
    "kind, across all objects.", ["throttle"])
THROTTLE_WAITING = Gauge(
    "docket_throttle_waiting",
    "Tasks ready to launch but held back by each throttle (it has no room).", ["throttle"])
THROTTLE_LIMIT = Gauge(
    "docket_throttle_limit",
    "Each throttle's maxRunning, from the policy in force.", ["throttle"])
INVALID_OBJECTS = Gauge(
    "docket_invalid_objects", "Stored objects that fail validation, by kind.", ["kind"],
)
CACHE_OBJECTS = Gauge("docket_informer_objects", "Objects held in the informer cache.", ["kind"])

CRONJOB_MISSED_REASONS = ("MissedDuringDowntime", "TooLate", "ConcurrencyForbid", "Suspended")
CRONJOB_LATENESS = Histogram(
    "docket_cronjob_schedule_lateness_seconds",
    "Time from a CronJob slot's scheduled time to its Job being created.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
CRONJOB_MISSED = Counter(
    "docket_cronjob_missed_schedules_total",
    "CronJob slots that created no Job, by reason.", ["reason"],
)
CRONJOB_JOBS_CREATED = Counter("docket_cronjob_jobs_created_total",
                               "Jobs created by CronJobs on schedule.")

# Queues, by namespace and queue (set from each status the controller writes, by
# controller/queue_metrics.py). Counters move by the status' exact counts, never estimates.
QUEUE_RESULTS = ("succeeded", "dead_lettered")
QUEUE_LABELS = ("namespace", "queue")
QUEUE_MESSAGES = Counter(
    "docket_queue_messages_total",
    "Messages that left a queue: succeeded (acked) or dead_lettered.", [*QUEUE_LABELS, "result"],
)
QUEUE_PENDING = Gauge(
    "docket_queue_pending_messages", "Messages in a queue's source, not claimed.", QUEUE_LABELS,
)
QUEUE_IN_FLIGHT = Gauge(
    "docket_queue_in_flight_messages", "Messages claimed by a queue's open batches.",
    QUEUE_LABELS,
)
QUEUE_OLDEST = Gauge(
    "docket_queue_oldest_pending_seconds",
    "Age of a queue's oldest pending message since Docket first saw it; 0 when none waits.",
    QUEUE_LABELS,
)
QUEUE_SOURCE_UP = Gauge(
    "docket_queue_source_up", "1 while a queue's source answers, 0 while it is unavailable.",
    QUEUE_LABELS,
)
QUEUE_BATCH_SECONDS = Histogram(
    "docket_queue_batch_duration_seconds",
    "Run time of a finished queue batch's last task, from its start to its end.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

# Services, summed over every Service: no label names an object (set from the statuses and
# records the controller writes, by controller/service_metrics.py).
SERVICE_INSTANCE_STATES = ("running", "healthy", "unhealthy", "staging", "unreachable")
SERVICE_ROLLOUT_RESULTS = ("completed", "stuck")
SERVICE_RESTART_REASONS = ("failed", "lost", "unhealthy", "unreachable")
SERVICE_INSTANCES = Gauge(
    "docket_service_instances",
    "Service instances by state, summed over every Service: running (TASK_RUNNING), healthy "
    "(running and passing its health check), unhealthy (wanted but not healthy: status."
    "unavailable), staging (launched, not running yet), unreachable (agent partitioned).",
    ["state"],
)
SERVICE_ROLLOUTS = Counter(
    "docket_service_rollouts_total",
    "Service rollouts that ended (completed) or stopped making progress for "
    "progressDeadlineSeconds (stuck).", ["result"],
)
SERVICE_HEALTH_CHECK_FAILURES = Counter(
    "docket_service_health_check_failures_total",
    "Times a Service instance's health, as the agent reported it, turned unhealthy.",
)
SERVICE_RESTARTS = Counter(
    "docket_service_restarts_total",
    "Service instances that ended on their own and are replaced, by reason: failed (it "
    "exited or was killed by someone else), lost (its agent or launch failed), unhealthy "
    "(killed by its health check), unreachable (its agent was partitioned).", ["reason"],
)

for _kind in KINDS:
    RECONCILE_SECONDS.labels(_kind)
    INVALID_OBJECTS.labels(_kind)
    CACHE_OBJECTS.labels(_kind)
    WORKQUEUE_DEPTH.labels(_kind)
    WORKQUEUE_ADDS.labels(_kind)
    WORKQUEUE_RETRIES.labels(_kind)
    WORKQUEUE_LATENCY.labels(_kind)
    WORKQUEUE_WORK_SECONDS.labels(_kind)
    for _result in RECONCILE_RESULTS:
        RECONCILE_TOTAL.labels(_kind, _result)
for _reason in TASK_END_REASONS:
    TASKS_FINISHED.labels(_reason)
    TASKS_FAILED.labels(_reason)
    TASKS_KILLED.labels(_reason)
for _state in TASK_STATES:
    TASKS_ACTIVE.labels(_state)
for _reason in CRONJOB_MISSED_REASONS:
    CRONJOB_MISSED.labels(_reason)
for _state in SERVICE_INSTANCE_STATES:
    SERVICE_INSTANCES.labels(_state)
for _result in SERVICE_ROLLOUT_RESULTS:
    SERVICE_ROLLOUTS.labels(_result)
for _reason in SERVICE_RESTART_REASONS:
    SERVICE_RESTARTS.labels(_reason)
LEADER.set(0)
POLICY_VALID.set(1)

_throttle_lock = threading.Lock()
_throttles_shown: set[str] = set()


def set_throttle_limits(limits: Mapping[str, int]) -> None:
    """Publish the throttles of the policy in force (name -> maxRunning): each one's limit,
    its running and waiting series created at 0 when new (set by the offer-time code), and
    every series of a throttle no longer in the policy removed."""
    with _throttle_lock:
        for name in _throttles_shown - set(limits):
            for gauge in (THROTTLE_LIMIT, THROTTLE_RUNNING, THROTTLE_WAITING):
                gauge.remove(name)  # absent: nothing to remove, no error
        for name, limit in limits.items():
            THROTTLE_LIMIT.labels(name).set(limit)
            THROTTLE_RUNNING.labels(name)
            THROTTLE_WAITING.labels(name)
        _throttles_shown.clear()
        _throttles_shown.update(limits)


def parse_address(address: str) -> tuple[str, int]:
    """`host:port`, `:port` (all interfaces) or `port` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = "", address
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"metrics address {address!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"metrics address {address!r}: port out of range")
    return host or "0.0.0.0", number


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


class ReadinessChecks:
    """Named checks that must all pass for /readyz to answer 200. A check returns True/False,
    or raises (counted as failing, with the error as detail)."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()

    def register(self, name: str, check: Callable[[], bool]) -> None:
        with self._lock:
            self._checks[name] = check

    def unregister(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def run(self) -> list[CheckResult]:
        with self._lock:
            checks = sorted(self._checks.items())
        results = []
        for name, check in checks:
            try:
                results.append(CheckResult(name, bool(check())))
            except Exception as exc:  # a broken check means not ready, never a 500
                results.append(CheckResult(name, False, repr(exc)))
        return results


def _render(results: Iterable[CheckResult]) -> tuple[bool, str]:
    results = list(results)
    lines = [f"[{'+' if r.ok else '-'}]{r.name} {'ok' if r.ok else 'failed'}"
             + (f": {r.detail}" if r.detail else "") for r in results]
    ok = all(r.ok for r in results)
    lines.append("ready" if ok else "not ready")
    return ok, "\n".join(lines) + "\n"


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves /metrics, /healthz (the process answers), /readyz (every readiness check
    passes) and `/`, the status page (controller/statuspage.py: health from the readiness
    checks, objects from the source set by `set_status_source`), from a daemon thread.
    `start()` binds (so a port in use fails at once); `stop()` closes the socket."""

    def __init__(self, address: str = ":9102", *, readiness: ReadinessChecks | None = None,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.readiness = readiness or ReadinessChecks()
        self._host, self._port = parse_address(address)
        self._registry = registry
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._status_source: Callable[[], Any] | None = None

    def set_status_source(self, source: Callable[[], Any] | None) -> None:
        """Where the status page's objects come from: a callable giving the running Manager,
        or None while this process does not lead (the page then shows health only)."""
        self._status_source = source

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(outer._registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._reply(200, b"ok\n")
                elif path == "/readyz":
                    ok, body = _render(outer.readiness.run())
                    self._reply(200 if ok else 503, body.encode())
                elif path == "/":
                    # Imported here: the page reads the kinds' models, which a process that
                    # only exports metrics need not load.
                    from controller import statuspage

                    body = statuspage.page(outer._status_source, outer.readiness.run())
                    self._reply(200, body.encode(), "text/html; charset=utf-8")
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, code: int, body: bytes,
                       content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the controller's own logs

        server_class = _IPv6Server if ":" in self._host else ThreadingHTTPServer
        self._server = server_class((self._host, self._port), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps stop() quick; the cost is negligible.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="metrics-server", daemon=True)
        self._thread.start()
        log.info("metrics server listening", host=self._host, port=self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
