"""What every part of the master shares: its state, the one way events leave it, and the
records of task state that several parts write.

The master is one object (`master.Master`) assembled from parts that each own one concern:
the offer allocator (allocator.py), task lifecycle and status updates (tasks.py),
reconciliation (reconcile.py) and fault injection (faults.py), with subscriptions and call
dispatch in master.py. They are mixins of one class rather than objects calling each other
because the per-task paths (ACCEPT, every status update, every acknowledgement) were tuned for
CPU: a call between parts stays a plain method call on `self`, with no extra hop, and a test
may still replace one of them on the instance (tests/e2e/test_crash.py counts `_launch`).

All state is guarded by `lock`; nothing blocks on I/O while holding it (see stream.py).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.localmesos.models import (
    PARTITION_AWARE_STATES,
    Agent,
    Framework,
    MasterConfig,
    Offer,
    Task,
)
from controller.localmesos.stream import MasterLock, Stream
from controller.localmesos.timers import Timer, Timers

if TYPE_CHECKING:
    from controller.localmesos.resources import Resources


class MasterBase:
    def __init__(self, config: MasterConfig | None = None) -> None:
        self.config = config or MasterConfig()
        self.master_id = str(uuid.uuid4())
        self.start_time = time.time()
        self.elected_time = self.start_time  # set again when a master is elected (ha.py)
        self.lock = MasterLock()
        self.timers = Timers()
        self.frameworks: dict[str, Framework] = {}
        self.removed_frameworks: dict[str, Framework] = {}
        self.agents: dict[str, Agent] = {}
        self.offers: dict[str, Offer] = {}
        self.all_tasks: dict[tuple[str, str], Task] = {}  # every task ever launched
        # Every launch the master accepted, in order, duplicates included: the source of truth
        # the chaos suite checks "no task id launched twice" against (all_tasks is keyed).
        self.launch_log: list[tuple[float, str, str, str]] = []  # (time, fw, task, agent)
        self._framework_seq = 0
        self._agent_seq = 0
        self._offer_seq = 0
        self._allocation_timer: Timer | None = None
        self._retries: list[tuple[float, int, Task, dict[str, Any]]] = []
        self._retry_seq = itertools.count()
        self._retry_timer: Timer | None = None
        self.event_observers: list[Callable[[str, dict[str, Any]], None]] = []
        # Fault injection of status updates and launches: set in faults.py, read where
        # updates are forwarded and tasks launched (tasks.py).
        self.update_delay = 0.0
        self.duplicate_updates = False
        self.drop_updates = 0
        self.fail_launches = 0

    if TYPE_CHECKING:
        # What the parts call across their seams, defined in the part named; declared here
        # only so each part type-checks on its own (mypy checks they match).
        def allocate(self) -> None: ...  # allocator.py

        def _remove_offer(self, offer_id: str, *, rescind: bool) -> Offer | None:
            ...  # allocator.py

        def _launch(self, fw: Framework, agent: Agent, role: str, info: dict[str, Any],
                    available: Resources) -> Resources: ...  # tasks.py

        def _forward_head(self, task: Task) -> None: ...  # tasks.py

        def reconcile(self, fw: Framework, tasks: list[dict[str, Any]]) -> None:
            ...  # reconcile.py

        def _disconnect(self, fw: Framework) -> None: ...  # master.py

    # --- sending events --------------------------------------------------------------------
    def _send(self, fw: Framework, event: dict[str, Any], record: bytes | None = None) -> bool:
        if fw.stream is None or fw.stream.closed or not fw.connected:
            return False
        self._send_on(fw.stream, event, record)
        return True

    def _send_on(self, stream: Stream, event: dict[str, Any],
                 record: bytes | None = None) -> None:
        """Every event goes out here, so `event_observers` see each one."""
        for observer in self.event_observers:
            observer(stream.framework_id, event)
        stream.send(event, record)

    # --- the master's records of a task's state ------------------------------------------
    def _master_status(self, fw: Framework, task: Task | None, state: str, message: str,
                       reason: str, *, info: dict[str, Any] | None = None,
                       agent_id: str | None = None,
                       unreachable_time: float | None = None,
                       container_status: dict[str, Any] | None = None,
                       healthy: bool | None = None) -> dict[str, Any]:
        """An update the master makes itself: no uuid (no ack expected) and, for command
        tasks, no executor_id (the master's Task has none; only the executor sets it)."""
        if state in PARTITION_AWARE_STATES and not fw.partition_aware:
            state = "TASK_LOST"
        status: dict[str, Any] = {
            "task_id": {"value": task.task_id if task else info["task_id"]["value"]},  # type: ignore[index]
            "state": state,
            "source": "SOURCE_MASTER",
            "message": message,
            "reason": reason,
            "timestamp": time.time(),
        }
        aid = task.agent_id if task else agent_id
        if aid:
            status["agent_id"] = {"value": aid}
        if container_status is not None:
            status["container_status"] = container_status
        if healthy is not None:
            status["healthy"] = healthy
        if unreachable_time is not None:
            status["unreachable_time"] = {"nanoseconds": int(unreachable_time * 1e9)}
        return status

    def _send_master_update(self, fw: Framework, info: dict[str, Any], state: str,
                            message: str, reason: str) -> None:
        agent_id = (info.get("agent_id") or {}).get("value")
        status = self._master_status(fw, None, state, message, reason, info=info,
                                     agent_id=agent_id)
        self._send(fw, {"type": "UPDATE", "update": {"status": status}})

    def _set_state(self, task: Task, status: dict[str, Any]) -> None:
        task.state = str(status["state"])
        self._add_status(task.statuses, status)

    @staticmethod
    def _add_status(statuses: list[dict[str, Any]], status: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"state": status["state"], "timestamp": status["timestamp"]}
        if "container_status" in status:
            entry["container_status"] = status["container_status"]
        if "healthy" in status:  # read back by getTaskHealth and written by the endpoints
            entry["healthy"] = status["healthy"]
        # Like Mesos' updateTask (master) and updateTaskState (agent): a repeated state
        # replaces the previous entry.
        if statuses and statuses[-1]["state"] == entry["state"]:
            statuses.pop()
        statuses.append(entry)

    def _release(self, task: Task) -> None:
        if task.resources_released:
            return
        task.resources_released = True
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.used = agent.used - task.resources

    def _complete(self, fw: Framework, task: Task) -> None:
        fw.tasks.pop(task.task_id, None)
        fw.unreachable_tasks.pop(task.task_id, None)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.pop((fw.framework_id, task.task_id), None)
        fw.completed_tasks.append(task)
