"""How a Mesos status update changes an execution record — pure, so the rules can be tested
without etcd or Mesos.

The controller records an update in etcd before it acknowledges it (Mesos resends anything
unacknowledged), so `record_update` must be idempotent: a resent or reconciled update that
says nothing new yields the record unchanged, and the caller skips the write. A record that
reached a final state keeps it: a late or duplicate update cannot turn a finished attempt
back into a running one. TASK_UNREACHABLE and TASK_UNKNOWN are the exceptions — an agent can
come back — and the planner decides what a returning task counts as.

A launch intent (LAUNCHING) answered TASK_UNKNOWN is a task Mesos never saw: the controller
wrote the intent and died, or never got to send the launch. The record is marked
`kill_reason=NeverLaunched` in the same write, so the planner relaunches its slot without
counting a failure or backing off (see controller.reconcile.tasks), and kills the task should it
turn up after all. Only the record's own previous state tells this apart from a task that once
ran and was then lost, which is why it is decided here and not in the planner.

A Service instance's record also follows its health, its host ports and its reachability:

- `healthy` is the last health Mesos reported. Mesos sets TaskStatus.healthy only on updates
  about a health check (and on answers to reconciliation and the TASK_KILLED of a task its
  check killed), so an update without it keeps the last known value: a plain TASK_RUNNING
  must not make an unhealthy instance look healthy again, nor a healthy one unknown.
  `health_changed_at` is the time of the update that changed it.
- `host_ports` are written once, from the first update that carries them: the adapter knows
  them only from the launch it made, not after a controller restart, so a later update
  without them must not erase them, and a task's ports never change.
- `unreachable_at` is set when the task becomes TASK_UNREACHABLE (again after it came back);
  repeats of that state keep the first time, since the unreachable strategy's clocks run from
  it. It stays when the task returns, so the planner can tell a returning original from an
  instance that never left; `state` tells whether it is unreachable now.
"""

from __future__ import annotations

from datetime import UTC, datetime

from controller.api import LAUNCHING, ExecutionRecord
from controller.mesos.backend import TaskUpdate
from controller.reconcile import TERMINAL_STATES
from controller.reconcile.tasks import NEVER_LAUNCHED

# Final states a later update may still change: the agent may re-register.
_REVERSIBLE = frozenset({"TASK_UNREACHABLE", "TASK_UNKNOWN"})
_RUNNING = frozenset({"TASK_RUNNING", "TASK_KILLING"})


def sandbox_path(framework_id: str, task_id: str) -> str:
    """The task's sandbox as Mesos' /files endpoints name it. Command tasks run under the
    command executor, which Mesos names after the task."""
    return f"/frameworks/{framework_id}/executors/{task_id}/runs/latest"


def is_final(state: str) -> bool:
    """No update can change a record in this state."""
    return state in TERMINAL_STATES and state not in _REVERSIBLE


def record_update(record: ExecutionRecord, update: TaskUpdate, framework_id: str | None,
                  now: datetime) -> ExecutionRecord:
    """The record with `update` applied (the same object when nothing changes).

    Times: Mesos' status timestamp when it has one (when the agent saw it), else `now`.
    `started_at` is the first RUNNING; `finished_at` and `duration_seconds` are set once, on
    the first terminal update."""
    if is_final(record.state):
        return record
    at = (datetime.fromtimestamp(update.timestamp, UTC) if update.timestamp is not None
          else now)
    changes: dict[str, object] = {"state": update.state}
    if record.state == LAUNCHING and update.state == "TASK_UNKNOWN" \
            and record.kill_reason is None:
        changes["kill_reason"] = NEVER_LAUNCHED
    if update.reason is not None:
        changes["reason"] = update.reason
    if update.message is not None:
        changes["message"] = update.message
    if update.agent_id:
        changes["agent_id"] = update.agent_id
        if framework_id:
            changes["sandbox_path"] = sandbox_path(framework_id, record.task_id)
    if update.hostname:
        changes["hostname"] = update.hostname
    if update.exit_code is not None:
        changes["exit_code"] = update.exit_code
    if update.healthy is not None and update.healthy != record.healthy:
        changes["healthy"] = update.healthy
        changes["health_changed_at"] = at
    if update.host_ports is not None and record.host_ports is None:
        changes["host_ports"] = list(update.host_ports)
    if update.state == "TASK_UNREACHABLE" and (record.state != "TASK_UNREACHABLE"
                                               or record.unreachable_at is None):
        changes["unreachable_at"] = at
    if update.state in _RUNNING and record.started_at is None:
        changes["started_at"] = at
    if update.state in TERMINAL_STATES and record.finished_at is None \
            and update.state not in _REVERSIBLE:
        changes["finished_at"] = at
        began = record.started_at or changes.get("started_at")
        if isinstance(began, datetime):
            changes["duration_seconds"] = max(0.0, (at - began).total_seconds())
    if all(getattr(record, k) == v for k, v in changes.items()):
        return record
    return record.model_copy(update=changes)


# Kills Docket asks for when a task is no longer wanted: the task did not fail. A
# never-launched intent that turns up after all is killed too, and was no failure either.
_UNWANTED = frozenset({"Suspended", "Deleted", "Superseded", "NotNeeded", "JobFinished",
                       NEVER_LAUNCHED})


def is_failure(record: ExecutionRecord) -> bool:
    """Whether a final record counts in docket_tasks_failed_total: it did not succeed and
    was not killed because it was no longer wanted (suspend, delete, a newer spec...) nor
    written off as a launch Mesos never saw."""
    return record.state != "TASK_FINISHED" and record.kill_reason not in _UNWANTED


def end_reason(record: ExecutionRecord) -> str:
    """The `reason` label of docket_tasks_finished_total for a final record (a fixed set:
    never a task or object name)."""
    kill = record.kill_reason
    if kill == "TaskTimeout":
        return "timeout"
    if kill == "DeadlineExceeded":
        return "deadline"
    if kill == "Suspended":
        return "suspended"
    if kill == "Deleted":
        return "deleted"
    return {
        "TASK_FINISHED": "succeeded", "TASK_FAILED": "failed", "TASK_KILLED": "killed",
        "TASK_LOST": "lost", "TASK_ERROR": "error", "TASK_DROPPED": "dropped",
        "TASK_GONE": "gone", "TASK_GONE_BY_OPERATOR": "gone", "TASK_UNREACHABLE": "unreachable",
        "TASK_UNKNOWN": "lost",
    }.get(record.state, "failed")
