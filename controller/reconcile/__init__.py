"""Pure reconciliation: (desired object, recorded status, recorded executions, now) -> Plan.

Nothing in this package does I/O, reads a clock or draws random numbers, so every decision can
be tested as a table row and replayed exactly; the runtime reads state, calls a planner and
applies the returned Plan in one place.
"""

from controller.reconcile.actions import (
    Action,
    CreateObject,
    DeleteObject,
    DeleteOwnerData,
    Kill,
    Launch,
    ObjectKey,
    Observation,
    Plan,
    UpdateExecution,
    WriteStatus,
)
from controller.reconcile.job import JobInput, plan_job
from controller.reconcile.taskid import TaskIdParts, is_valid_mesos_id, parse_task_id, task_id
from controller.reconcile.tasks import ACTIVE_STATES, TERMINAL_STATES

__all__ = [
    "ACTIVE_STATES", "TERMINAL_STATES", "Action", "CreateObject", "DeleteObject",
    "DeleteOwnerData", "JobInput", "Kill", "Launch", "ObjectKey", "Observation", "Plan",
    "TaskIdParts", "UpdateExecution", "WriteStatus", "is_valid_mesos_id", "parse_task_id",
    "plan_job", "task_id",
]
