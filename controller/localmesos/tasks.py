"""Task lifecycle: launching a task on its agent, its status updates, their reliable delivery,
and killing it.

As in Mesos 1.11 (src/master/master.cpp, src/slave/task_status_update_manager.cpp): an
update an agent reports carries a uuid and is forwarded to the framework, one at a time per
task and in order; the head is resent, at an interval doubling from `status_update_retry_min`
to `status_update_retry_max`, until the framework acknowledges that uuid, and only then is the
next one sent. A task whose terminal update is acknowledged is completed. While its agent is
partitioned, the agent keeps its updates (`Task.held`); faults.py hands them back on heal.

These are the per-task hot paths (three updates and three acknowledgements a task), which is
why a resend writes the bytes encoded for its first send (`Task.head_record`) and retries are
bare heap entries that an acknowledgement never has to cancel.
"""

from __future__ import annotations

import heapq
import time
from typing import Any

from controller.localmesos.base import MasterBase
from controller.localmesos.models import TERMINAL_STATES, Agent, Framework, Task, new_uuid_bytes
from controller.localmesos.resources import Resources
from controller.localmesos.stream import recordio
from controller.localmesos.validation import validate_task

DEFAULT_KILL_GRACE_SECONDS = 3.0


class TaskLifecycle(MasterBase):
    def _launch(self, fw: Framework, agent: Agent, role: str, info: dict[str, Any],
                available: Resources) -> Resources:
        error, wanted = validate_task(fw, agent, role, info, available)
        if error is not None:
            self._send_master_update(fw, info, "TASK_ERROR", error, "REASON_TASK_INVALID")
            return available
        task = Task(info["task_id"]["value"], str(info.get("name", "")), fw.framework_id,
                    agent.agent_id, wanted, info, role)
        # No status yet: Mesos' createTask records none; the first comes with the first update.
        fw.tasks[task.task_id] = task
        agent.tasks[(fw.framework_id, task.task_id)] = task
        agent.used = agent.used + wanted
        self.all_tasks[(fw.framework_id, task.task_id)] = task
        self.launch_log.append((time.time(), fw.framework_id, task.task_id, agent.agent_id))
        if self.fail_launches > 0:
            self.fail_launches -= 1
            self.timers.call_soon(lambda: self.agent_update(
                agent.agent_id, fw.framework_id, task.task_id, "TASK_FAILED",
                message="Failed to launch container: injected launch failure",
                reason="REASON_CONTAINER_LAUNCH_FAILED", source="SOURCE_AGENT"))
        else:
            agent.runtime.launch(task)
        return available - wanted

    # --- status updates --------------------------------------------------------------------
    def _container_status(self, task: Task, extra: dict[str, Any] | None) -> dict[str, Any]:
        """What the agent merges into an executor's update from its containerizer: the
        container id, the executor's pid when there is a process, and the agent's IP as the
        container's network when the container has no network of its own."""
        if extra and "executor_pid" in extra:
            task.executor_pid = int(extra["executor_pid"])
        status: dict[str, Any] = {"container_id": {"value": task.container_id}}
        if task.executor_pid is not None:
            status["executor_pid"] = task.executor_pid
        # The JSON writer (stout's protobuf.hpp) writes an unset field that has a declared
        # default; IPAddress.protocol defaults to IPv4.
        address = {"protocol": "IPv6" if ":" in self.config.host else "IPv4",
                   "ip_address": self.config.host}
        status["network_infos"] = [{"ip_addresses": [address]}]
        return status

    def agent_update(self, agent_id: str, framework_id: str, task_id: str, state: str, *,
                     message: str | None = None, reason: str | None = None,
                     source: str = "SOURCE_EXECUTOR",
                     container_status: dict[str, Any] | None = None,
                     healthy: bool | None = None) -> None:
        """A task's state change reported by its agent: recorded, then delivered reliably.
        `healthy` is what the executor's health checker says (health.py)."""
        with self.lock:
            agent = self.agents.get(agent_id)
            task = agent.tasks.get((framework_id, task_id)) if agent else None
            if agent is None or task is None or agent.state == "gone":
                return
            if task.agent_state in TERMINAL_STATES:
                return  # an agent never changes a terminal state
            fw = self.frameworks.get(framework_id)
            status: dict[str, Any] = {
                "task_id": {"value": task_id},
                "state": state,
                "source": source,
                "agent_id": {"value": agent_id},
                "executor_id": {"value": task.executor_id},
                "timestamp": time.time(),
                "uuid": new_uuid_bytes(),
            }
            if message is not None:
                status["message"] = message
            if reason is not None:
                status["reason"] = reason
            if healthy is not None:
                status["healthy"] = healthy
            if source == "SOURCE_EXECUTOR":
                status["container_status"] = self._container_status(task, container_status)
            task.agent_state = state
            self._add_status(task.agent_statuses, status)
            if state in TERMINAL_STATES:
                self._release(task)
            if agent.state == "unreachable":
                # The master hears nothing from a partitioned agent; the agent keeps the
                # update and sends it when it reregisters.
                task.held.append(status)
                return
            self._set_state(task, status)
            task.pending.append(status)
            if len(task.pending) == 1 and fw is not None:
                self._forward_head(task)

    def _forward_head(self, task: Task) -> None:
        fw = self.frameworks.get(task.framework_id)
        if fw is None or not task.pending:
            return
        status = task.pending[0]
        if task.retry_interval == 0:
            task.retry_interval = self.config.status_update_retry_min
        # A plain heap entry, not a timer: an acknowledged update's entry is just skipped
        # when it comes due, so the ack path cancels nothing.
        heapq.heappush(self._retries, (time.monotonic() + task.retry_interval,
                                       next(self._retry_seq), task, status))
        if self.drop_updates > 0:
            self.drop_updates -= 1
            return
        event = {"type": "UPDATE", "update": {"status": status}}
        if self.update_delay > 0:
            delay = self.update_delay
            self.timers.call_later(delay, lambda: self._send_locked(fw, event))
            if self.duplicate_updates:
                self._send(fw, event)
            return
        cached = task.head_record
        if cached is None or cached[0] is not status:
            cached = task.head_record = (status, recordio(event))
        self._send(fw, event, cached[1])
        if self.duplicate_updates:
            self._send(fw, event, cached[1])

    def _send_locked(self, fw: Framework, event: dict[str, Any]) -> None:
        with self.lock:
            self._send(fw, event)

    def _resend_due(self) -> None:
        """Resend every forwarded update whose retry time has come and that is still its
        task's unacknowledged head, doubling its interval up to the maximum."""
        with self.lock:
            now = time.monotonic()
            retries = self._retries
            while retries and retries[0][0] <= now:
                _, _, task, status = heapq.heappop(retries)
                if task.pending and task.pending[0] is status:
                    task.retry_interval = min(task.retry_interval * 2,
                                              self.config.status_update_retry_max)
                    self._forward_head(task)

    def acknowledge(self, fw: Framework, ack: dict[str, Any]) -> None:
        task_id = (ack.get("task_id") or {}).get("value")
        task = fw.tasks.get(task_id) if task_id else None
        if task is None or not task.pending:
            return
        if task.pending[0].get("uuid") != ack.get("uuid"):
            return  # an old or duplicate acknowledgement
        task.pending.popleft()
        task.head_record = None
        task.retry_interval = 0
        if task.pending:
            self._forward_head(task)
        elif task.state in TERMINAL_STATES:
            self._complete(fw, task)

    # --- kill ------------------------------------------------------------------------------
    def kill(self, fw: Framework, kill: dict[str, Any]) -> None:
        task_id = (kill.get("task_id") or {}).get("value", "")
        agent_id = (kill.get("agent_id") or {}).get("value")
        task = fw.tasks.get(task_id)
        if task is None:
            entry: dict[str, Any] = {"task_id": {"value": task_id}}
            if agent_id:
                entry["agent_id"] = {"value": agent_id}
            self.reconcile(fw, [entry])
            return
        if agent_id and agent_id != task.agent_id:
            return
        agent = self.agents[task.agent_id]
        if agent.state != "active" or task.state in TERMINAL_STATES:
            return
        grace = kill_grace(kill.get("kill_policy") or task.info.get("kill_policy"))
        agent.runtime.kill(task, grace, killing_state="TASK_KILLING_STATE" in fw.capabilities)


def kill_grace(policy: dict[str, Any] | None) -> float:
    """The seconds between SIGTERM and SIGKILL for a KillPolicy (the command executor's
    `kill`: the policy's grace period, else 3 seconds)."""
    nanos = ((policy or {}).get("grace_period") or {}).get("nanoseconds")
    return DEFAULT_KILL_GRACE_SECONDS if nanos is None else max(0.0, nanos / 1e9)

