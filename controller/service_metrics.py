"""The Service metrics (defined in `controller/metrics.py`), kept from the statuses and
execution records the controller writes. No series names a Service: Services may be many and
their instances many more, so every figure is summed over all Services (`docket get services`
and `docket describe service` say which one).

The controller calls `observe_status` after each Service status write (`old` as stored before,
None when there was none), `observe_record` for each execution record of a Service it writes
(an update from Mesos, or its own edit such as a kill reason), `forget` when a Service is gone
and `forget_all` when it stops leading. `observe_records` may be called with every record of
one Service as the planner read them, to rebuild what `observe_record` keeps from them (after
a restart, say); it counts nothing.

`docket_service_instances{state}` is a gauge of the sum over Services:
- running, healthy, unhealthy: the status' `running`, `healthy` and `unavailable` (wanted but
  not healthy: failing or not yet passing its check, starting, crash-looping or unreachable),
  so `healthy + unhealthy` is at least the instances wanted, and `unhealthy` is 0 exactly
  when every Service has all its instances healthy;
- staging, unreachable: the records in LAUNCHING/TASK_STAGING/TASK_STARTING, and those in
  TASK_UNREACHABLE not yet written off (kill reason Unreachable, after expungeAfterSeconds),
  each task counted once however often its record is observed.

The counters move on transitions only, so an update written twice (a retry, a resent Mesos
update) or a status written again counts nothing more:
- `docket_service_rollouts_total{result}`: the Progressing condition's reason turning into
  RolloutComplete (completed) or ProgressDeadlineExceeded (stuck), compared with the status it
  replaces (a status of another uid, or none, has no reason: a new Service's first rollout
  counts when it completes);
- `docket_service_health_check_failures_total`: a record's `healthy` turning False (from True
  or unknown);
- `docket_service_restarts_total{reason}`: a record reaching an end that Docket did not ask
  for (no kill reason), so that its Service replaces the instance: TASK_UNREACHABLE
  (unreachable), TASK_KILLED reported unhealthy (unhealthy: its health check killed it), a
  system failure such as TASK_LOST, TASK_GONE or TASK_DROPPED or an agent's failure (lost), any
  other end, TASK_FINISHED included (failed). An intent Mesos never saw (LAUNCHING, then
  TASK_UNKNOWN) is not a restart (docs/architecture.md §5, rule 5).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from controller.api import LAUNCHING, ExecutionRecord, ServiceStatus
from controller.metrics import (
    SERVICE_HEALTH_CHECK_FAILURES,
    SERVICE_INSTANCE_STATES,
    SERVICE_INSTANCES,
    SERVICE_RESTARTS,
    SERVICE_ROLLOUTS,
)
from controller.reconcile.taskid import parse_task_id
from controller.reconcile.tasks import TERMINAL_STATES, Outcome, outcome

PROGRESSING = "Progressing"
ROLLOUT_COMPLETE = "RolloutComplete"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
STAGING_STATES = frozenset({LAUNCHING, "TASK_STAGING", "TASK_STARTING"})

Key = tuple[str, str]

# Every change of what is kept here happens under the lock, and the gauges are set from the
# totals before it is released, so concurrent observers never leave a gauge behind its total.
_lock = threading.Lock()
_from_status: dict[Key, dict[str, int]] = {}  # running, healthy, unhealthy of each Service
_tasks: dict[Key, dict[str, str]] = {}  # task id -> staging | unreachable, of each Service
_totals: dict[str, int] = dict.fromkeys(SERVICE_INSTANCE_STATES, 0)


def observe_status(namespace: str, name: str, old: ServiceStatus | None,
                   new: ServiceStatus) -> None:
    """Set the Service's share of the instance gauges from `new`; count a rollout that
    completed or got stuck since `old` (the status `new` replaces, as stored)."""
    counts = {"running": new.running, "healthy": new.healthy, "unhealthy": new.unavailable}
    before = rollout_reason(old) if old is not None and old.uid == new.uid else None
    after = rollout_reason(new)
    with _lock:
        _apply(_from_status.get((namespace, name), {}), counts)
        _from_status[(namespace, name)] = counts
        if after != before:
            if after == ROLLOUT_COMPLETE:
                SERVICE_ROLLOUTS.labels("completed").inc()
            elif after == PROGRESS_DEADLINE_EXCEEDED:
                SERVICE_ROLLOUTS.labels("stuck").inc()


def rollout_reason(status: ServiceStatus | None) -> str | None:
    """RolloutComplete (Progressing True), ProgressDeadlineExceeded (Progressing False), or
    None for any other state of the rollout."""
    progressing = status.condition(PROGRESSING) if status is not None else None
    if progressing is None:
        return None
    if progressing.status == "True" and progressing.reason == ROLLOUT_COMPLETE:
        return ROLLOUT_COMPLETE
    if progressing.status == "False" and progressing.reason == PROGRESS_DEADLINE_EXCEEDED:
        return PROGRESS_DEADLINE_EXCEEDED
    return None


def observe_record(old: ExecutionRecord | None, new: ExecutionRecord) -> None:
    """A Service instance's record changed from `old` (None: it is new) to `new`: count a
    health-check failure or a restart it shows, and follow its state. Records of other kinds
    are ignored."""
    key = _service_of(new)
    if key is None:
        return
    if (old.healthy if old is not None else None) is not False and new.healthy is False:
        SERVICE_HEALTH_CHECK_FAILURES.inc()
    reason = restart_reason(old, new)
    if reason is not None:
        SERVICE_RESTARTS.labels(reason).inc()
    with _lock:
        tasks = _tasks.setdefault(key, {})
        before = _count_tasks(tasks)
        state = instance_state(new)
        if state is None:
            tasks.pop(new.task_id, None)
        else:
            tasks[new.task_id] = state
        if not tasks:
            del _tasks[key]
        _apply(before, _count_tasks(tasks))


def observe_records(namespace: str, name: str, records: Iterable[ExecutionRecord]) -> None:
    """Every record of one Service: what `observe_record` keeps of its instances' states is
    rebuilt from them. Counts nothing."""
    tasks = {}
    for rec in records:
        state = instance_state(rec)
        if state is not None:
            tasks[rec.task_id] = state
    with _lock:
        before = _count_tasks(_tasks.get((namespace, name), {}))
        if tasks:
            _tasks[(namespace, name)] = tasks
        else:
            _tasks.pop((namespace, name), None)
        _apply(before, _count_tasks(tasks))


def instance_state(rec: ExecutionRecord) -> str | None:
    """staging, unreachable, or None (running, ended, or written off): what the records say
    of an instance that the status does not count."""
    if rec.kill_reason is not None:
        return None
    if rec.state in STAGING_STATES:
        return "staging"
    if rec.state == "TASK_UNREACHABLE":
        return "unreachable"
    return None


def restart_reason(old: ExecutionRecord | None, new: ExecutionRecord) -> str | None:
    """Why the instance of `new` is replaced, if `old` -> `new` is the end of it that Docket
    did not ask for; None otherwise (module docstring)."""
    if new.kill_reason is not None or new.state not in TERMINAL_STATES:
        return None
    if old is not None and old.state in TERMINAL_STATES:
        return None  # ended before (an unreachable task's later TASK_GONE, a resent update)
    if new.state == "TASK_UNKNOWN" and (old is None or old.state == LAUNCHING):
        return None  # an intent Mesos never saw: launched again, nothing failed
    if new.state == "TASK_UNREACHABLE":
        return "unreachable"
    if new.state == "TASK_KILLED" and new.healthy is False:
        return "unhealthy"
    if outcome(new) == Outcome.SYSTEM_FAILURE:
        return "lost"
    return "failed"


def forget(namespace: str, name: str) -> None:
    """A Service is gone: take its instances out of the gauges (no-op for one never seen)."""
    with _lock:
        before = _from_status.pop((namespace, name), {})
        tasks = _tasks.pop((namespace, name), {})
        _apply(before, {})
        _apply(_count_tasks(tasks), {})


def forget_all() -> None:
    """This process stops leading: its instance gauges go to 0 (the leader's are the truth).
    The counters keep their totals, as counters do."""
    with _lock:
        _from_status.clear()
        _tasks.clear()
        for state in SERVICE_INSTANCE_STATES:
            _totals[state] = 0
            SERVICE_INSTANCES.labels(state).set(0)


def _service_of(rec: ExecutionRecord) -> Key | None:
    parts = parse_task_id(rec.task_id)
    if parts is None or parts.owner.kind != "Service":
        return None
    return parts.owner.namespace, parts.owner.name


def _count_tasks(tasks: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in tasks.values():
        counts[state] = counts.get(state, 0) + 1
    return counts


def _apply(before: dict[str, int], after: dict[str, int]) -> None:
    """Move the totals (and their gauges) from one Service's `before` share to `after`.
    The caller holds the lock."""
    for state in set(before) | set(after):
        delta = after.get(state, 0) - before.get(state, 0)
        if delta:
            _totals[state] += delta
            SERVICE_INSTANCES.labels(state).set(_totals[state])
