"""The JSON Docket sends to the master, built from plain values: no I/O, no state.

Owns the spelling of the FrameworkInfo that SUBSCRIBE and UPDATE_FRAMEWORK carry (and which
roles it names) and of the KILL, RECONCILE and ACKNOWLEDGE fields. Apart from the adapter
because the ack senders build ACKNOWLEDGE too, and
so that what Docket declares and asks for can be read (and checked) without the threads and
the driver around it. Each function returns the call's own field; the adapter adds `type` and
`framework_id` when it sends.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from controller.mesos.backend import TaskUpdate
from controller.mesos.config import MesosConfig


def framework_roles(config: MesosConfig, extra_roles: Iterable[str] = ()
                    ) -> tuple[tuple[str, ...], bool]:
    """(the roles to subscribe with, whether as a MULTI_ROLE framework). `extra_roles` are
    the roles the admission policy names: none beyond the configured role keeps the
    single-role FrameworkInfo (`role`) Docket always sent; any other makes the framework
    MULTI_ROLE with the configured role first (Mesos 1.11: `roles` and the capability
    together, `role` unset; validation.cpp validateRoles)."""
    if config.roles:
        return tuple(dict.fromkeys([*config.roles, *sorted(extra_roles)])), True
    base = config.role or "*"
    extras = sorted(set(extra_roles) - {base})
    if not extras:
        return (base,), False
    return (base, *extras), True


def default_role(config: MesosConfig, extra_roles: Iterable[str] = ()) -> str | None:
    """The allocation role a launch without one of its own must run under: the configured
    role once the framework is MULTI_ROLE because of the policy (a namespace without a role
    must not take another namespace's share); None (any role offered) otherwise, as before."""
    roles, multi = framework_roles(config, extra_roles)
    return roles[0] if multi and not config.roles else None


def framework_info(config: MesosConfig, framework_id: str | None,
                   extra_roles: Iterable[str] = ()) -> dict[str, Any]:
    """The FrameworkInfo to subscribe with; `framework_id` to resume an existing framework;
    `extra_roles` the roles the admission policy names (framework_roles)."""
    c = config
    caps = [{"type": "PARTITION_AWARE"}, {"type": "TASK_KILLING_STATE"}]
    info: dict[str, Any] = {
        "name": c.name,
        "user": c.user or getpass.getuser(),
        "checkpoint": True,
        "failover_timeout": c.failover_timeout_seconds,
    }
    roles, multi = framework_roles(c, extra_roles)
    if multi:
        info["roles"] = list(roles)
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


def update_framework_body(info: dict[str, Any]) -> dict[str, Any]:
    """UPDATE_FRAMEWORK (Mesos 1.11, scheduler.proto): the whole new FrameworkInfo, its id
    included, and no suppressed role (the master then offers every role again)."""
    return {"update_framework": {"framework_info": info, "suppressed_roles": []}}


def revive_body(config: MesosConfig, extra_roles: Iterable[str],
                pending_roles: Sequence[str] | None) -> dict[str, Any]:
    """REVIVE's field: a MULTI_ROLE framework revives only the roles its pending launches
    wait for (the offers of the others stay declined); None (a launch takes any role) or a
    single-role framework revives every role. Roles the framework does not hold are left
    out: Mesos drops a whole REVIVE naming one (master.cpp revive)."""
    roles, multi = framework_roles(config, extra_roles)
    if not multi or pending_roles is None:
        return {}
    named = [r for r in pending_roles if r in roles]
    return {"revive": {"roles": named}} if named else {}


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
