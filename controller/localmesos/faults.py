"""Fault injection: what goes wrong in a real cluster, on demand, for the tests, chaos
experiments and the admin API (http_admin.py, through `LocalMesos` in cluster.py).

Each fault does what Mesos 1.11 does when it happens for real: an agent removed for good
(its tasks TASK_GONE_BY_OPERATOR), an agent partitioned (its tasks TASK_UNREACHABLE, or
TASK_LOST to frameworks that are not partition-aware, while they go on running) and healed
(the tasks reregister, the updates the agent kept are delivered), a master failover (every
stream dropped; optionally the frameworks forgotten and re-learnt from the agents), half-open
streams (connected, silent), and tampering with status updates (delayed, duplicated, dropped)
and launches (failed). The last two only set counters here; tasks.py acts on them, on the paths
it already takes, so an untampered run pays a few comparisons per update.
"""

from __future__ import annotations

import time

from controller.localmesos.base import MasterBase
from controller.localmesos.models import TERMINAL_STATES, Agent, last_health


class FaultInjection(MasterBase):
    def remove_agent(self, agent_id: str) -> None:
        """The agent is gone for good (marked gone by an operator, machine lost)."""
        with self.lock:
            agent = self.agents[agent_id]
            if agent.state == "gone":
                return
            was_unreachable = agent.state == "unreachable"
            agent.state = "gone"
            self._drop_agent_offers(agent)
            for (fid, _tid), task in list(agent.tasks.items()):
                fw = self.frameworks.get(fid)
                if fw is None or (was_unreachable and task.task_id not in fw.unreachable_tasks):
                    continue
                status = self._master_status(
                    fw, task, "TASK_GONE_BY_OPERATOR", "Agent has been marked gone",
                    "REASON_AGENT_REMOVED_BY_OPERATOR" if fw.partition_aware
                    else "REASON_AGENT_REMOVED")
                self._set_state(task, status)
                self._release(task)
                self._complete(fw, task)
                self._send(fw, {"type": "UPDATE", "update": {"status": status}})
            agent.tasks.clear()
        agent.runtime.shutdown()

    def partition_agent(self, agent_id: str) -> None:
        """The agent stops answering: its tasks become unreachable (LOST for frameworks
        that are not partition-aware) while they may well go on running."""
        with self.lock:
            agent = self.agents[agent_id]
            if agent.state != "active":
                return
            agent.state = "unreachable"
            agent.unreachable_time = time.time()
            self._drop_agent_offers(agent)
            for (fid, _tid), task in list(agent.tasks.items()):
                fw = self.frameworks.get(fid)
                if fw is None or task.task_id not in fw.tasks:
                    continue
                status = self._master_status(fw, task, "TASK_UNREACHABLE",
                                             "health check timed out", "REASON_AGENT_REMOVED",
                                             unreachable_time=agent.unreachable_time)
                task.unreachable_time = agent.unreachable_time
                # Unacknowledged updates stay with the agent, which resends them once it
                # reregisters.
                task.held[:0] = task.pending
                task.pending.clear()
                task.head_record = None
                task.retry_interval = 0
                # Whether or not the framework is partition-aware (it saw TASK_LOST then),
                # the master keeps the task among its unreachable ones, as Mesos does.
                fw.tasks.pop(task.task_id)
                fw.unreachable_tasks[task.task_id] = task
                self._set_state(task, status)
                self._send(fw, {"type": "UPDATE", "update": {"status": status}})

    def heal_agent(self, agent_id: str) -> None:
        """The agent reregisters. As in Mesos 1.11, every task it still runs is the
        master's again, whether or not its framework is partition-aware: the framework
        hears the task's current state ("Unreachable agent re-reregistered",
        REASON_AGENT_REREGISTERED), then the updates the agent kept while cut off."""
        with self.lock:
            agent = self.agents[agent_id]
            if agent.state != "unreachable":
                return
            agent.state = "active"
            agent.unreachable_time = None
            for (fid, _tid), task in list(agent.tasks.items()):
                fw = self.frameworks.get(fid)
                if fw is None or task.task_id not in fw.unreachable_tasks:
                    continue
                fw.unreachable_tasks.pop(task.task_id)
                fw.tasks[task.task_id] = task
                task.unreachable_time = None
                status = self._master_status(
                    fw, task, task.agent_state, "Unreachable agent re-reregistered",
                    "REASON_AGENT_REREGISTERED", container_status=task.latest_container_status,
                    healthy=last_health(task.agent_statuses))  # the agent's Task: its health
                status["state"] = task.agent_state  # a live state, never downgraded
                self._set_state(task, status)
                self._send(fw, {"type": "UPDATE", "update": {"status": status}})
                held, task.held = task.held, []
                task.pending.extend(held)
                if task.pending:
                    self._forward_head(task)
                elif task.state in TERMINAL_STATES:
                    self._complete(fw, task)
        self.timers.call_soon(self.allocate)

    def _drop_agent_offers(self, agent: Agent) -> None:
        for offer_id in [o.offer_id for o in self.offers.values()
                         if o.agent_id == agent.agent_id]:
            self._remove_offer(offer_id, rescind=True)

    def restart(self, forget_frameworks: bool = False) -> None:
        """A master failover: every stream is dropped; frameworks must subscribe again. With
        `forget_frameworks`, the new master knows none of them until they do (their tasks
        are re-learnt from the agents)."""
        with self.lock:
            for fw in list(self.frameworks.values()):
                if fw.stream:
                    fw.stream.close()
                if fw.connected:
                    self._disconnect(fw)
            if forget_frameworks:
                for fw in self.frameworks.values():
                    if fw.removal_timer:
                        fw.removal_timer.cancel()
                self.frameworks.clear()
            self.master_id_restarted = time.time()

    def silence_streams(self) -> None:
        """Half-open fault: every stream stays connected but carries nothing more."""
        with self.lock:
            for fw in self.frameworks.values():
                if fw.stream:
                    fw.stream.silent = True

    def fault_updates(self, *, delay: float = 0.0, duplicate: bool = False,
                      drop: int = 0) -> None:
        """From now on, status updates are delivered `delay` seconds late, twice with
        `duplicate`, and the next `drop` of them not at all (their resends still come)."""
        with self.lock:
            self.update_delay = delay
            self.duplicate_updates = duplicate
            self.drop_updates = drop

    def fail_next_launches(self, count: int = 1) -> None:
        """The next `count` tasks launched fail as a container that cannot start."""
        with self.lock:
            self.fail_launches = count
