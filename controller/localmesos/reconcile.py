"""Reconciliation: what the master answers a RECONCILE (and a KILL of a task it does not
know), as Mesos 1.11's Master::reconcile does.

Implicit reconciliation (no tasks named) sends the latest state of every task the framework
has (its unreachable ones aside); explicit reconciliation answers each task named: a known
task's latest state (that of its oldest unacknowledged update, as Mesos reports it), otherwise
what the agent named tells of it: TASK_GONE on an agent that is up, TASK_UNREACHABLE on a
partitioned one, TASK_GONE_BY_OPERATOR on a removed one, TASK_UNKNOWN when no known agent is
named (a framework that is not partition-aware sees TASK_LOST for each, as `_master_status`
maps them). Every answer is a master update with REASON_RECONCILIATION and no uuid: nothing
to acknowledge. A known task's answer carries its latest container status and health, as
Mesos copies them from the task's statuses."""

from __future__ import annotations

from typing import Any

from controller.localmesos.base import MasterBase
from controller.localmesos.models import Framework, Task


class Reconciliation(MasterBase):
    def reconcile(self, fw: Framework, tasks: list[dict[str, Any]]) -> None:
        if not tasks:
            for task in list(fw.tasks.values()):
                self._send(fw, {"type": "UPDATE", "update": {"status": self._reconcile_status(
                    fw, task, task.status_update_state,
                    "Reconciliation: Latest task state")}})
            return
        for entry in tasks:
            task_id = (entry.get("task_id") or {}).get("value", "")
            agent_id = (entry.get("agent_id") or {}).get("value")
            known = fw.tasks.get(task_id)
            if known is not None:
                status = self._reconcile_status(fw, known, known.status_update_state,
                                                "Reconciliation: Latest task state")
            else:
                agent = self.agents.get(agent_id) if agent_id else None
                if agent is not None and agent.state == "active":
                    state, message, when = ("TASK_GONE",
                                            "Reconciliation: Task is unknown to the agent", None)
                elif agent is not None and agent.state == "unreachable":
                    state, message, when = ("TASK_UNREACHABLE",
                                            "Reconciliation: Task is unreachable",
                                            agent.unreachable_time)
                elif agent is not None and agent.state == "gone":
                    state, message, when = ("TASK_GONE_BY_OPERATOR",
                                            "Reconciliation: Task is gone", None)
                else:
                    state, message, when = ("TASK_UNKNOWN", "Reconciliation: Task is unknown",
                                            None)
                status = self._master_status(fw, None, state, message,
                                             "REASON_RECONCILIATION",
                                             info={"task_id": {"value": task_id}},
                                             agent_id=agent_id, unreachable_time=when)
            self._send(fw, {"type": "UPDATE", "update": {"status": status}})

    def _reconcile_status(self, fw: Framework, task: Task, state: str,
                          message: str) -> dict[str, Any]:
        status = self._master_status(fw, task, state, message, "REASON_RECONCILIATION",
                                     container_status=task.latest_container_status,
                                     healthy=task.healthy)
        status["state"] = state  # the task's own state is reported as it is
        return status
