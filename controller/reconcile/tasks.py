"""Task attempts as every task-launching kind (Job, Queue, Service) sees them, pure.

A kind launches tasks and learns what became of them only from their execution records (one
per attempt, `controller.api.ExecutionRecord`), written from Mesos' status updates by
`controller.updates`. This module owns the rules that read those records the same way for
every kind: which Mesos states are active or final, what a finished attempt counts as
(`outcome`), how a task is killed with a reason (`kill_actions`), when it times out
(`timeout_at`), which attempts of an object belong to its current incarnation and which are
leftovers to kill, and which attempt number a slot takes next (`next_attempts`). What a kind
does with the counts (budgets, completions, replacement) stays in its planner.

What a recorded attempt counts as (`outcome`):
- ACTIVE: LAUNCHING, TASK_STAGING, TASK_STARTING, TASK_RUNNING, TASK_KILLING, and any state we
  do not know (better wait than launch a duplicate);
- SUCCESS: TASK_FINISHED;
- TASK_FAILURE: TASK_FAILED, TASK_ERROR, TASK_KILLED that Docket did not ask for, or killed
  for TaskTimeout;
- SYSTEM_FAILURE: TASK_LOST, TASK_DROPPED, TASK_GONE, TASK_GONE_BY_OPERATOR, TASK_UNKNOWN,
  TASK_UNREACHABLE, and TASK_FAILED/KILLED/ERROR whose Mesos reason says the infrastructure or
  the launch failed, not the task (`SYSTEM_REASONS`); an explicit `failure_class` on the record
  wins over all this;
- NEUTRAL: a task Docket killed for any reason of its own (suspend, deletion, a kind's own
  reasons such as a Job's deadline) other than TaskTimeout, and an intent Mesos never saw
  (`kill_reason=NeverLaunched`, below).

Never-launched intents. A launch intent is written before the launch is handed to Mesos, so a
controller that dies before Mesos accepted the launch leaves a LAUNCHING record of a task Mesos
never heard of; the next controller's reconciliation answers TASK_UNKNOWN, and
`controller.updates.record_update` marks such a record `kill_reason=NeverLaunched`. The
controller's own crash says nothing about the task or the cluster: the attempt counts as
NEUTRAL (no failure, no backoff) and its slot is launched again under the next attempt number.
The record is final (TASK_UNKNOWN) before that new attempt is planned, and should the task
turn up after all (TASK_UNKNOWN is not final in Mesos), it is killed like a returning
unreachable task (`came_back`), so one slot never has two live attempts for long.

Partitions. TASK_UNREACHABLE is final for Docket: the attempt counts as a SYSTEM_FAILURE at
once and its slot may be retried. The record is then marked `kill_reason=Unreachable`
(`needs_unreachable_mark`) so that if the agent comes back and the task reports RUNNING, it
still counts as that system failure, and is killed.

Kills are asynchronous: the kill reason is written to the record first (UpdateExecution), then
Kill is sent; a record with a kill reason that still reports an active state other than
TASK_KILLING gets the Kill again on every pass (a lost kill is retried, level-triggered).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from controller.api import LAUNCHING, ExecutionRecord, StatusBase
from controller.reconcile.actions import (
    Action,
    DeleteOwnerData,
    Kill,
    ObjectKey,
    Plan,
    UpdateExecution,
)
from controller.reconcile.taskid import parse_task_id

ACTIVE_STATES = frozenset(
    {LAUNCHING, "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"}
)
SYSTEM_FAILURE_STATES = frozenset(
    {"TASK_LOST", "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN",
     "TASK_UNREACHABLE"}
)
TASK_FAILURE_STATES = frozenset({"TASK_FAILED", "TASK_ERROR", "TASK_KILLED"})
TERMINAL_STATES = frozenset({"TASK_FINISHED"}) | SYSTEM_FAILURE_STATES | TASK_FAILURE_STATES
"""States after which Mesos reports nothing more (TASK_UNREACHABLE aside: it may come back)."""
SYSTEM_REASONS = frozenset(
    {
        # The launch never got going: the offer, agent or container runtime failed.
        "REASON_INVALID_OFFERS", "REASON_RESOURCES_UNKNOWN", "REASON_CONTAINER_LAUNCH_FAILED",
        "REASON_EXECUTOR_REGISTRATION_TIMEOUT", "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
        "REASON_TASK_UNAUTHORIZED", "REASON_CONTAINER_PREEMPTED", "REASON_GC_ERROR",
        # The agent or master went away under a running task.
        "REASON_AGENT_DISCONNECTED", "REASON_AGENT_REMOVED", "REASON_AGENT_RESTARTED",
        "REASON_AGENT_UNKNOWN", "REASON_AGENT_REMOVED_BY_OPERATOR",
        "REASON_MASTER_DISCONNECTED", "REASON_RECONCILIATION", "REASON_FRAMEWORK_REMOVED",
        "REASON_INVALID_FRAMEWORKID",
    }
)
"""Mesos reasons that blame the infrastructure or the launch, not the task, for a final state."""

# Kill reasons Docket writes on a record before killing it, that any kind may use. A kind adds
# its own (a Job's JobFinished, DeadlineExceeded, ...); all but TaskTimeout count as NEUTRAL.
TASK_TIMEOUT = "TaskTimeout"  # ran longer than its timeout: the task's own failure
UNREACHABLE = "Unreachable"  # its agent was partitioned: a system failure, killed if it returns
NEVER_LAUNCHED = "NeverLaunched"  # an intent Mesos answered TASK_UNKNOWN to: not a failure
SUSPENDED = "Suspended"  # the object was suspended
DELETED = "Deleted"  # the object's spec key was deleted
SUPERSEDED = "Superseded"  # a task of an older incarnation (uid) of the object


class Outcome(StrEnum):
    """What one recorded attempt counts as (module docstring). The failure values are those
    of `ExecutionRecord.failure_class`."""

    ACTIVE = "active"
    SUCCESS = "success"
    TASK_FAILURE = "task"
    SYSTEM_FAILURE = "system"
    NEUTRAL = "neutral"


def outcome(rec: ExecutionRecord) -> Outcome:
    """What `rec` counts as, from its state, Mesos reason, kill reason and failure class."""
    if rec.kill_reason == UNREACHABLE:
        return Outcome.SUCCESS if rec.state == "TASK_FINISHED" else Outcome.SYSTEM_FAILURE
    if rec.kill_reason == NEVER_LAUNCHED:
        # Written off: even if it turns up running, it is killed, not waited for.
        return Outcome.SUCCESS if rec.state == "TASK_FINISHED" else Outcome.NEUTRAL
    if rec.state == "TASK_FINISHED":
        return Outcome.SUCCESS
    if rec.state in ACTIVE_STATES or not (
        rec.state in SYSTEM_FAILURE_STATES or rec.state in TASK_FAILURE_STATES
    ):
        return Outcome.ACTIVE
    if rec.failure_class is not None:
        return Outcome(rec.failure_class)
    if rec.kill_reason is not None and rec.kill_reason != TASK_TIMEOUT:
        return Outcome.NEUTRAL
    if rec.state in SYSTEM_FAILURE_STATES or rec.reason in SYSTEM_REASONS:
        return Outcome.SYSTEM_FAILURE
    return Outcome.TASK_FAILURE


def may_be_running(rec: ExecutionRecord) -> bool:
    """Whether the task may still be running (whatever it counts as): worth a kill."""
    return rec.state != "TASK_FINISHED" and not (
        rec.state in SYSTEM_FAILURE_STATES or rec.state in TASK_FAILURE_STATES
    )


def came_back(rec: ExecutionRecord) -> bool:
    """Written off (Unreachable, NeverLaunched) and counted, yet reporting a state in which it
    may run again: to be killed; it keeps counting as what it was written off as."""
    return outcome(rec) != Outcome.ACTIVE and may_be_running(rec)


def needs_unreachable_mark(rec: ExecutionRecord) -> bool:
    """TASK_UNREACHABLE not yet marked `kill_reason=Unreachable` (module docstring)."""
    return rec.state == "TASK_UNREACHABLE" and rec.kill_reason is None


def kill_actions(rec: ExecutionRecord, reason: str, grace: float | None) -> list[Action]:
    """Actions that kill an active record for `reason`: record the reason (unless one is
    recorded: the first reason stays), then Kill; nothing while Mesos reports TASK_KILLING.
    Planned on every pass until the task is final, so a lost Kill is sent again."""
    actions: list[Action] = []
    if rec.kill_reason is None:
        actions.append(UpdateExecution(rec.task_id, {"kill_reason": reason}))
    elif rec.state == "TASK_KILLING":
        return actions
    actions.append(Kill(rec.task_id, rec.agent_id, grace, rec.kill_reason or reason))
    return actions


def timeout_at(rec: ExecutionRecord, timeout: float | None) -> datetime | None:
    """When the attempt times out: `timeout` seconds after it started, or after its intent was
    recorded if no start is recorded; None without a timeout or a time to count from."""
    began = rec.started_at or rec.submitted_at
    if timeout is None or began is None:
        return None
    return began + timedelta(seconds=timeout)


def next_attempts(records: Iterable[ExecutionRecord]) -> dict[int, int]:
    """The attempt number each index takes next: its highest recorded attempt + 1, so task ids
    are never reused (docs/architecture.md §4). Indexes without records are absent: attempt 0."""
    nexts: dict[int, int] = {}
    for rec in records:
        nexts[rec.index] = max(nexts.get(rec.index, 0), rec.attempt + 1)
    return nexts


def current_incarnation(
    records: Iterable[ExecutionRecord], owner: ObjectKey, uid: int | None
) -> list[ExecutionRecord]:
    """The records of `owner`'s incarnation `uid`: the only ones that count."""
    out = []
    for rec in records:
        parts = parse_task_id(rec.task_id)
        if parts is not None and parts.owner == owner and parts.uid == uid:
            out.append(rec)
    return out


def kill_superseded(
    records: Iterable[ExecutionRecord], owner: ObjectKey, uid: int | None
) -> list[Action]:
    """Kills of `owner`'s tasks of older incarnations (the object was deleted and created
    again under the same key) that may still run."""
    actions: list[Action] = []
    for rec in records:
        parts = parse_task_id(rec.task_id)
        if (parts is not None and parts.owner == owner and parts.uid != uid
                and may_be_running(rec)):
            actions += kill_actions(rec, SUPERSEDED, None)
    return actions


def plan_deleted_owner(
    plural: str,
    namespace: str,
    name: str,
    status: StatusBase | None,
    records: Sequence[ExecutionRecord],
) -> Plan:
    """The spec key is gone: kill every task of any incarnation that may still run, then, once
    none may, delete the status and the records. The status is not rewritten."""
    actions: list[Action] = []
    for rec in records:
        if may_be_running(rec):
            actions += kill_actions(rec, DELETED, None)
    if any(may_be_running(r) for r in records):
        return Plan(tuple(actions))
    if status is None and not records:
        return Plan()
    return Plan((DeleteOwnerData(plural, namespace, name),))
