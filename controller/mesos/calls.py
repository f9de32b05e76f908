"""The JSON Docket sends to the master, built from plain values: no I/O, no state.

Owns the spelling of the FrameworkInfo that SUBSCRIBE carries and of the KILL, RECONCILE and
ACKNOWLEDGE fields. Apart from the adapter because the ack senders build ACKNOWLEDGE too, and
so that what Docket declares and asks for can be read (and checked) without the threads and
the driver around it. Each function returns the call's own field; the adapter adds `type` and
`framework_id` when it sends.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Sequence
from typing import Any

from controller.mesos.backend import TaskUpdate
from controller.mesos.config import MesosConfig


def framework_info(config: MesosConfig, framework_id: str | None) -> dict[str, Any]:
    """The FrameworkInfo to subscribe with; `framework_id` to resume an existing framework."""
    c = config
    caps = [{"type": "PARTITION_AWARE"}, {"type": "TASK_KILLING_STATE"}]
    info: dict[str, Any] = {
        "name": c.name,
        "user": c.user or getpass.getuser(),
        "checkpoint": True,
        "failover_timeout": c.failover_timeout_seconds,
    }
    if c.roles:
        info["roles"] = list(c.roles)
        caps.append({"type": "MULTI_ROLE"})
    elif c.role:
        info["role"] = c.role
    if c.principal:
        info["principal"] = c.principal
    if c.gpu_resources:
        caps.append({"type": "GPU_RESOURCES"})
    info["capabilities"] = caps
    if framework_id:
        info["id"] = {"value": framework_id}
    return info


def kill_body(task_id: str, agent_id: str | None, grace: float | None) -> dict[str, Any]:
    kill: dict[str, Any] = {"task_id": {"value": task_id}}
    if agent_id:
        kill["agent_id"] = {"value": agent_id}
    if grace is not None:
        kill["kill_policy"] = {"grace_period": {"nanoseconds": round(grace * 1e9)}}
    return {"kill": kill}


def reconcile_bodies(known: Sequence[tuple[str, str | None]], batch: int
                     ) -> Iterator[dict[str, Any]]:
    """RECONCILE of these (task id, agent id or None), at most `batch` tasks a call (one
    call naming every task would be unbounded); none known: one implicit RECONCILE."""
    if not known:
        yield {"reconcile": {"tasks": []}}
        return
    step = max(1, batch)
    for i in range(0, len(known), step):
        tasks = []
        for task_id, agent_id in known[i:i + step]:
            item: dict[str, Any] = {"task_id": {"value": task_id}}
            if agent_id:
                item["agent_id"] = {"value": agent_id}
            tasks.append(item)
        yield {"reconcile": {"tasks": tasks}}


def ack_body(update: TaskUpdate) -> dict[str, Any]:
    return {"acknowledge": {"agent_id": {"value": update.agent_id},
                            "task_id": {"value": update.task_id}, "uuid": update.uuid}}
