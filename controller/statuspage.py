"""The controller's status page: the read-only HTML page served at `/` on the metrics address
(`controller.metrics.MetricsServer`), for a person who wants the state of the farm at a glance
without a CLI or a Prometheus.

This module owns what the page shows and how: a `Snapshot` taken from the running Manager's
caches (each kind's informer for the specs, its `RecordCache` for statuses and execution
records), so a page load costs no etcd read but the readiness checks' own; and `render`, a
pure function from a snapshot to the HTML, so what the page says — and that it escapes every
user-supplied string (names, namespaces, labels, condition and task messages are user data) —
is tested without a server. The page refreshes itself every few seconds (a meta refresh: no
script at all, no build step). When this process does not lead there is no Manager, and the
page says so and shows health only: the leader's page has the objects.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from controller.api import ExecutionRecord, QueueStatus, ServiceStatus, StatusBase
from controller.reconcile.tasks import Outcome, outcome

if TYPE_CHECKING:
    from controller.manager import Manager

log = structlog.get_logger("docket.statuspage")

KIND_ORDER = ("Job", "CronJob", "Queue", "Service")
REFRESH_SECONDS = 5
RECENT_FAILURES = 20
"""How many failed executions the page lists, newest first."""

# A condition that says something is wrong when its status is "True" ...
_BAD_WHEN_TRUE = ("Failed", "Invalid", "SourceUnavailable")
# ... or when it is "False" (a Service's).
_BAD_WHEN_FALSE = ("Available", "Progressing")
_BAD_PHASES = ("Failed", "Invalid", "Degraded")

StatusSource = Callable[[], "Manager | None"]
"""What the metrics server asks for the page's data: the running Manager, None when this
process does not lead."""


class Check(Protocol):
    """A readiness check's result (controller.metrics.CheckResult)."""

    @property
    def name(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class ObjectRow:
    """One stored object: its spec's identity and labels, with its status as last written."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    status: StatusBase | None = None
    invalid: str = ""
    """The problems of a stored spec that does not validate (no status may say so yet)."""

    @property
    def phase(self) -> str:
        if self.status is not None:
            return str(self.status.phase)
        return "Invalid" if self.invalid else "Pending"


@dataclass(frozen=True)
class FailedExecution:
    kind: str
    namespace: str
    name: str
    record: ExecutionRecord


@dataclass(frozen=True)
class Snapshot:
    """Everything the page shows, read at `taken_at`. `objects` is None when this process
    does not lead (no Manager: health only); `error` says why objects could not be read."""

    taken_at: datetime
    checks: Sequence[Check]
    objects: Sequence[ObjectRow] | None = None
    failed: Sequence[FailedExecution] = ()
    error: str = ""


# --- the snapshot, from the Manager's caches ----------------------------------------------------
def _problems(obj: Any) -> str:
    problems = getattr(obj, "problems", None) or ()
    return "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems)


def _failed(rec: ExecutionRecord) -> bool:
    return outcome(rec) in (Outcome.TASK_FAILURE, Outcome.SYSTEM_FAILURE)


def _when(rec: ExecutionRecord) -> datetime:
    stamp = rec.finished_at or rec.started_at or rec.submitted_at
    return stamp if stamp is not None else datetime.min.replace(tzinfo=UTC)


def take(manager: Manager | None, checks: Sequence[Check], *, now: datetime | None = None,
         recent: int = RECENT_FAILURES) -> Snapshot:
    """A snapshot of `manager`'s caches (specs from the informers, statuses and execution
    records from the record caches), or health only when there is no Manager."""
    taken_at = now or datetime.now(UTC)
    if manager is None:
        return Snapshot(taken_at, checks)
    rows: list[ObjectRow] = []
    failed: list[FailedExecution] = []
    for kind, controller in manager.controllers.items():
        for cached in controller.informer.list():
            obj = getattr(cached, "object", None)
            metadata = getattr(obj, "metadata", None)
            records = controller.records.get(cached.namespace, cached.name)
            rows.append(ObjectRow(
                kind, cached.namespace, cached.name,
                labels=dict(getattr(metadata, "labels", None) or {}),
                status=records.status,
                invalid="" if cached.valid else _problems(obj) or "the stored spec is invalid"))
            failed += [FailedExecution(kind, cached.namespace, cached.name, rec)
                       for rec, _ in records.executions.values() if _failed(rec)]
    failed.sort(key=lambda f: (_when(f.record), f.record.task_id), reverse=True)
    return Snapshot(taken_at, checks, rows, failed[:recent])


def page(source: StatusSource | None, checks: Sequence[Check]) -> str:
    """The page as served: a snapshot of what `source` gives, rendered. A snapshot that fails
    (a record cache reading etcd after a conflict, say) still gives a page, saying why."""
    now = datetime.now(UTC)
    try:
        snap = take(source() if source is not None else None, checks, now=now)
    except Exception as exc:  # the page must answer: health is what is wanted most then
        log.warning("status page: cannot read the controller's caches", error=repr(exc))
        snap = Snapshot(now, checks, error=f"cannot read the controller's caches: {exc!r}")
    return render(snap)


# --- rendering: pure ------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def failing_condition(row: ObjectRow) -> tuple[str, str] | None:
    """(what, message) when the object is failing: its phase is Failed, Invalid or Degraded,
    or a condition says something is wrong (Failed, Invalid or SourceUnavailable true; a
    Service's Available or Progressing false); None when it is fine."""
    status = row.status
    if status is None:
        return ("Invalid", row.invalid) if row.invalid else None
    for cond in status.conditions:
        bad = ((cond.type in _BAD_WHEN_TRUE and cond.status == "True")
               or (cond.type in _BAD_WHEN_FALSE and cond.status == "False"))
        if bad:
            what = f"{cond.type}={cond.status}" + (f" ({cond.reason})" if cond.reason else "")
            return what, cond.message
    if status.phase in _BAD_PHASES:
        return str(status.phase), row.invalid
    return None


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _oldest(status: QueueStatus, now: datetime) -> float | None:
    if status.oldest_pending_since is not None and status.pending:
        return (now - status.oldest_pending_since).total_seconds()
    return status.oldest_pending_seconds if status.pending else None


def _labels(labels: Mapping[str, str]) -> str:
    return " ".join(f'<span class="label">{_e(k)}={_e(v)}</span>'
                    for k, v in sorted(labels.items()))


def _ref(row: ObjectRow) -> str:
    return f"{_e(row.namespace)}/{_e(row.name)}"


def _table(cls: str, head: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table of already-escaped cells."""
    body = [f"<tr>{''.join(f'<td>{c}</td>' for c in r)}</tr>" for r in rows]
    if not body:
        return f'<p class="empty" id="{cls}-empty">{_e(empty)}</p>'
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (f'<table class="{cls}" id="{cls}"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _health(snap: Snapshot) -> str:
    checks = {c.name: c for c in snap.checks}
    leader = checks.get("leader")
    if snap.objects is not None:
        leading = "This process leads the controllers."
    elif leader is not None and leader.ok:
        leading = "This process holds the lease; its controllers are starting."
    else:
        leading = "This process does not lead (a standby)."
    rows = [(_e(c.name), '<span class="ok">ok</span>' if c.ok else '<span class="bad">failed'
             "</span>", _e(c.detail)) for c in snap.checks]
    return (f'<section id="health"><h2>Leader and health</h2><p id="leader">{_e(leading)}</p>'
            + _table("checks", ("Check", "State", "Detail"), rows, "No readiness checks.")
            + "</section>")


def _by_phase(objects: Sequence[ObjectRow]) -> str:
    counts: dict[str, Counter[str]] = {k: Counter() for k in KIND_ORDER}
    for row in objects:
        counts.setdefault(row.kind, Counter())[row.phase] += 1
    rows = []
    for kind, phases in counts.items():
        detail = ", ".join(f'<span class="phase">{_e(p)}: {n}</span>'
                           for p, n in sorted(phases.items()))
        rows.append((_e(kind), str(sum(phases.values())), detail or "—"))
    return ('<section id="kinds"><h2>Objects by phase</h2>'
            + _table("phases", ("Kind", "Total", "By phase"), rows, "") + "</section>")


def _failing(objects: Sequence[ObjectRow]) -> str:
    rows = []
    for row in objects:
        found = failing_condition(row)
        if found is not None:
            what, message = found
            rows.append((_e(row.kind), _ref(row), _e(row.phase), _e(what), _e(message),
                         _labels(row.labels)))
    return ('<section id="failing"><h2>Failing objects</h2>'
            + _table("failing", ("Kind", "Object", "Phase", "Condition", "Message", "Labels"),
                     rows, "Nothing is failing.") + "</section>")


def _queues(objects: Sequence[ObjectRow], now: datetime) -> str:
    rows = []
    for row in objects:
        if row.kind != "Queue":
            continue
        st = row.status if isinstance(row.status, QueueStatus) else None
        if st is None:
            rows.append((_ref(row), _e(row.phase), "—", "—", "—", "—", "—", _labels(row.labels)))
            continue
        unavailable = st.condition("SourceUnavailable")
        source = ('<span class="bad">unavailable</span>'
                  if unavailable is not None and unavailable.status == "True"
                  else '<span class="ok">up</span>')
        rows.append((_ref(row), _e(row.phase), str(st.pending), _e(_age(_oldest(st, now))),
                     str(st.in_flight), f"{st.succeeded} / {st.dead_lettered}", source,
                     _labels(row.labels)))
    return ('<section id="queue-section"><h2>Queues</h2>'
            + _table("queues", ("Queue", "Phase", "Pending", "Oldest", "In flight",
                                "Succeeded / dead-lettered", "Source", "Labels"),
                     rows, "No Queues.") + "</section>")


def _services(objects: Sequence[ObjectRow]) -> str:
    rows = []
    for row in objects:
        if row.kind != "Service":
            continue
        st = row.status if isinstance(row.status, ServiceStatus) else None
        if st is None:
            rows.append((_ref(row), _e(row.phase), "—", "—", "—", _labels(row.labels)))
            continue
        cls = "ok" if st.healthy >= st.instances else "bad"
        rows.append((_ref(row), _e(row.phase),
                     f'<span class="{cls}">{st.healthy}/{st.instances}</span>',
                     str(st.running), _e(st.version or "—"), _labels(row.labels)))
    return ('<section id="service-section"><h2>Services</h2>'
            + _table("services", ("Service", "Phase", "Healthy/total", "Running", "Version",
                                  "Labels"), rows, "No Services.") + "</section>")


def logs_command(failure: FailedExecution) -> str:
    """The command that prints the failed task's output."""
    return (f"docket logs {failure.kind.lower()} {failure.namespace}/{failure.name} "
            f"--task {failure.record.task_id}")


def _executions(failed: Sequence[FailedExecution]) -> str:
    rows = []
    for f in failed:
        rec = f.record
        why = " — ".join(_e(x) for x in (rec.reason, rec.kill_reason, rec.message) if x)
        when = _when(rec)
        rows.append((_e(f.kind), f"{_e(f.namespace)}/{_e(f.name)}", _e(rec.task_id),
                     _e(rec.state), "—" if rec.exit_code is None else str(rec.exit_code),
                     why or "—",
                     "—" if when.year == 1 else _e(when.strftime("%Y-%m-%d %H:%M:%S")),
                     f"<code>{_e(logs_command(f))}</code>"))
    return ('<section id="execution-section"><h2>Recent failed executions</h2>'
            + _table("executions", ("Kind", "Object", "Task", "State", "Exit code",
                                    "Reason / message", "When (UTC)", "Logs"),
                     rows, "No failed executions.") + "</section>")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.ok{color:#17702a}.bad{color:#b00020;font-weight:bold}
.label{background:#eef;border-radius:3px;padding:0 .3em;margin-right:.2em}
.notice{background:#fff4e5;border:1px solid #f0c36d;padding:.5em}.empty{color:#666}
code{font-size:.95em}
"""


def render(snap: Snapshot) -> str:
    """The whole page for `snap`, as HTML; every string from the snapshot is escaped."""
    parts = [_health(snap)]
    if snap.error:
        parts.append(f'<p class="notice" id="notice">{_e(snap.error)}</p>')
    elif snap.objects is None:
        parts.append('<p class="notice" id="notice">This process is not leading: only health '
                     "is shown here. The leading controller's page shows the objects.</p>")
    else:
        objects = sorted(snap.objects, key=lambda r: (
            KIND_ORDER.index(r.kind) if r.kind in KIND_ORDER else len(KIND_ORDER),
            r.namespace, r.name))
        parts += [_by_phase(objects), _failing(objects), _queues(objects, snap.taken_at),
                  _services(objects), _executions(snap.failed)]
    stamp = snap.taken_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        "<title>Docket status</title>"
        f"<style>{_STYLE}</style></head><body>"
        f'<h1>Docket status</h1><p class="empty">As of {_e(stamp)}; refreshes every '
        f"{REFRESH_SECONDS} s.</p>"
        + "".join(parts) + "</body></html>\n")
