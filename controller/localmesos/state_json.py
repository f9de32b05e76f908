"""Mesos' JSON shapes for the read endpoints of the master and of a real agent: every
`/state` (and `/tasks`) the embedded Mesos serves is shaped here, the HTTP servers only route.

Tasks, task statuses, resources and attributes are written as Mesos 1.11's own writers
write them (src/common/http.cpp): a status in a task's `statuses` has only its state,
timestamp, labels, container status and health (`healthy`, as the latest update of that
state carried it); a task's `health_check` has its proto defaults written out; resources
are one object of name to quantity, `ports` a range string. An agent's `/state` follows
src/slave/http.cpp (`Http::state`, `FrameworkWriter`, `ExecutorWriter`): the agent's
frameworks with their live executors, and the frameworks and executors that have
completed, each executor naming its container and sandbox `directory`. The master's `/state`
follows src/master/readonly_handler.cpp: its agents, and its frameworks with their tasks and
offers.

Environments and secrets. What a 1.11 cluster shows of a task's environment, secret-typed
variables (`Environment.Variable` type SECRET) included:
- the master's `/state` and `/tasks`: nothing. Its Task (src/common/protobuf_utils.cpp
  `createTask`) copies no CommandInfo from the TaskInfo, and `json(JSON::ObjectWriter*, const
  Task&)` (src/common/http.cpp) writes no command; `model(const CommandInfo&)` there, which
  writes variables as name and value only, serves executors, which command tasks have none of
  on the master;
- an agent's `/state`: its launched and completed tasks are Tasks (no command either); only a
  *queued* task, a TaskInfo the executor has not taken yet, is written with its command
  (src/slave/http.cpp `json(..., const TaskInfo&)` -> common/http.cpp `json(..., const
  CommandInfo&)`), whose environment goes through JSON::Protobuf: every variable with its
  `type` (the proto default VALUE written out), `value` or `secret`, and a secret's `data`
  as bytes are, base64 (stout/protobuf.hpp). So a real 1.11 agent shows a VALUE secret's data
  while the task is queued on it, and so does this one (`environment_json`); it is the
  task's environment on the agent, which holds the value anyway.

That is how Mesos tools find a task's sandbox: the master's `/state` gives the agent's
address (`slaves[].pid`), the agent's `/state` gives the executor's `directory`, and the
agent's `/files/read?path=<directory>/stdout` serves the file.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from controller.localmesos.health import canonical_health_check
from controller.localmesos.models import (
    MASTER_CAPABILITIES,
    MESOS_VERSION,
    TERMINAL_STATES,
    Task,
    capability_types,
)
from controller.localmesos.resources import Resources
from controller.localmesos.validation import secret_data

if TYPE_CHECKING:
    from controller.localmesos.agents import AgentFramework, ExecutorRun, RealRuntime
    from controller.localmesos.master import Master
    from controller.localmesos.models import Agent, Framework, Offer

AGENT_CAPABILITIES = ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT",
                      "RESOURCE_PROVIDER", "RESIZE_VOLUME", "AGENT_OPERATION_FEEDBACK",
                      "AGENT_DRAINING", "TASK_RESOURCE_LIMITS"]

# What the agent adds to a command task for its executor (src/slave/constants.cpp
# DEFAULT_EXECUTOR_CPUS and DEFAULT_EXECUTOR_MEM; slave.cpp `getExecutorInfo`).
EXECUTOR_OVERHEAD = Resources.of(cpus=0.1, mem=32)


def resources_json(r: Resources) -> dict[str, Any]:
    out: dict[str, Any] = {k: r.get(k) for k in ("cpus", "mem", "disk", "gpus")}
    if r.ports:
        out["ports"] = "[" + ", ".join(f"{b}-{e}" for b, e in r.ports) + "]"
    return out


def attribute_value(attr: dict[str, Any]) -> Any:
    if attr.get("type") == "SCALAR":
        return attr["scalar"]["value"]
    return attr.get("text", {}).get("value")


def attributes_json(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    return {x["name"]: attribute_value(x) for x in attributes}


def status_json(status: dict[str, Any]) -> dict[str, Any]:
    """A TaskStatus as an entry of a task's `statuses` (common/http.cpp): the container
    status carries its container id and networks, not the executor's pid."""
    out: dict[str, Any] = {"state": status["state"], "timestamp": status["timestamp"]}
    if "labels" in status:
        out["labels"] = status["labels"]
    container = status.get("container_status")
    if container is not None:
        out["container_status"] = {k: container[k] for k in (
            "container_id", "network_infos", "cgroup_info") if k in container}
    if "healthy" in status:
        out["healthy"] = status["healthy"]
    return out


def task_json(task: Task, *, agent_view: bool = False) -> dict[str, Any]:
    """A Task as the master's (or, with `agent_view`, the agent's) endpoints show it. A
    command task has no executor_id: only a task with its own ExecutorInfo does."""
    state = task.agent_state if agent_view else task.state
    statuses = task.agent_statuses if agent_view else task.statuses
    out: dict[str, Any] = {
        "id": task.task_id,
        "name": task.name,
        "framework_id": task.framework_id,
        "executor_id": "",
        "slave_id": task.agent_id,
        "state": state,
        "resources": resources_json(task.resources),
        "role": task.role,
        "statuses": [status_json(s) for s in statuses],
    }
    user = (task.info.get("command") or {}).get("user")
    if user is not None:
        out["user"] = user
    labels = (task.info.get("labels") or {}).get("labels")
    if labels:
        out["labels"] = labels
    # Copied from the TaskInfo as Mesos' Task keeps them.
    for name in ("discovery", "container"):
        if name in task.info:
            out[name] = task.info[name]
    if isinstance(task.info.get("health_check"), dict):
        # Written by JSON::Protobuf, which writes the defaults of unset fields too.
        out["health_check"] = canonical_health_check(task.info["health_check"])
    if task.unreachable_time is not None and not agent_view:
        out["unreachable_time"] = {"nanoseconds": int(task.unreachable_time * 1e9)}
    return out


def environment_json(environment: dict[str, Any]) -> dict[str, Any]:
    """An Environment as JSON::Protobuf writes it (see the module docstring): fields in the
    proto's order, `type` always (its default is VALUE), a secret's data base64 again."""
    variables = []
    for var in environment.get("variables") or []:
        out: dict[str, Any] = {"name": var.get("name", "")}
        kind = var.get("type", "VALUE")
        out["type"] = kind if kind in ("UNKNOWN", "VALUE", "SECRET") else "VALUE"
        if "value" in var:
            out["value"] = var["value"]
        secret = var.get("secret")
        if isinstance(secret, dict):
            written: dict[str, Any] = {}
            if secret.get("type") in ("UNKNOWN", "REFERENCE", "VALUE"):
                written["type"] = secret["type"]
            reference = secret.get("reference")
            if isinstance(reference, dict):
                written["reference"] = {k: reference[k] for k in ("name", "key")
                                        if k in reference}
            if isinstance(secret.get("value"), dict):
                written["value"] = {"data": base64.b64encode(secret_data(secret)).decode()}
            out["secret"] = written
        variables.append(out)
    return {"variables": variables} if variables else {}


def _queued_task_json(task: Task) -> dict[str, Any]:
    """A TaskInfo the executor has not taken yet (slave/http.cpp `json(TaskInfo)`)."""
    out: dict[str, Any] = {"id": task.task_id, "name": task.name, "slave_id": task.agent_id,
                           "resources": resources_json(task.resources), "role": task.role}
    command = task.info.get("command")
    if command is not None:
        cmd: dict[str, Any] = {k: command[k] for k in ("shell", "value") if k in command}
        cmd["argv"] = list(command.get("arguments") or [])
        if "environment" in command:
            cmd["environment"] = environment_json(command["environment"])
        cmd["uris"] = [{"value": u.get("value", ""), "executable": bool(u.get("executable"))}
                       for u in command.get("uris") or []]
        out["command"] = cmd
    if "discovery" in task.info:
        out["discovery"] = task.info["discovery"]
    return out


def executor_name(task: Task) -> str:
    """The command executor's name (slave.cpp `getExecutorInfo`)."""
    command = task.info.get("command") or {}
    name = f"(Task: {task.task_id}) "
    value = command.get("value")
    if command.get("shell", True):
        if value is None:
            name += "(Command: NO COMMAND)"
        else:
            name += f"(Command: sh -c '{value[:12] + '...' if len(value) > 15 else value}')"
    elif value is None:
        name += "(Command: NO EXECUTABLE)"
    else:
        args = ", ".join([value, *[str(a) for a in command.get("arguments") or []]])
        name += f"(Command: [{args[:12] + '...' if len(args) > 15 else args}])"
    return "Command Executor " + name


def _executor_json(run: ExecutorRun) -> dict[str, Any]:
    task = run.task
    queued = task.agent_state == "TASK_STAGING"
    terminal = task.agent_state in TERMINAL_STATES
    allocated = EXECUTOR_OVERHEAD if terminal else EXECUTOR_OVERHEAD + task.resources
    out: dict[str, Any] = {
        "id": task.executor_id,
        "name": executor_name(task),
        "source": task.task_id,
        "container": task.container_id,
        "directory": str(run.directory),
        "resources": resources_json(allocated),
        "role": task.role,
    }
    labels = (task.info.get("labels") or {}).get("labels")
    if labels:
        out["labels"] = labels
    out["tasks"] = [] if queued or terminal else [task_json(task, agent_view=True)]
    out["queued_tasks"] = [_queued_task_json(task)] if queued and not terminal else []
    out["completed_tasks"] = [task_json(task, agent_view=True)] if terminal else []
    return out


def _framework_json(framework_id: str, book: AgentFramework) -> dict[str, Any]:
    info = book.info
    out: dict[str, Any] = {
        "id": framework_id,
        "name": info.get("name", ""),
        "user": info.get("user", ""),
        "failover_timeout": float(info.get("failover_timeout", 0.0)),
        "checkpoint": bool(info.get("checkpoint", False)),
        "hostname": info.get("hostname", ""),
    }
    if "principal" in info:
        out["principal"] = info["principal"]
    if "MULTI_ROLE" in capability_types(info):
        out["roles"] = list(info.get("roles") or [])
    else:
        out["role"] = info.get("role", "*")
    out["executors"] = [_executor_json(run) for run in book.executors.values()]
    out["completed_executors"] = [_executor_json(run) for run in book.completed]
    return out


def agent_state(master: Master, agent: Agent, runtime: RealRuntime) -> dict[str, Any]:
    """A real agent's `/state`. Call with the master lock held."""
    runtime.sweep(agent.tasks)
    host = master.config.host
    allocated = Resources()
    for book in runtime.frameworks.values():
        for run in book.executors.values():
            if run.task.agent_state not in TERMINAL_STATES:
                allocated = allocated + EXECUTOR_OVERHEAD + run.task.resources
            else:
                allocated = allocated + EXECUTOR_OVERHEAD
    live = {fid: b for fid, b in runtime.frameworks.items() if b.executors}
    done = sorted(((fid, b) for fid, b in runtime.frameworks.items() if not b.executors),
                  key=lambda item: item[1].completed_seq)
    return {
        "version": MESOS_VERSION,
        "build_date": "",  # as the master's /version says
        "build_time": 0,
        "build_user": "docket",
        "start_time": agent.registered_time,
        "id": agent.agent_id,
        "pid": f"{agent.pid_name}@{host}:{agent.port}",
        "hostname": agent.hostname,
        "capabilities": AGENT_CAPABILITIES,
        "resources": resources_json(agent.total),
        "reserved_resources": {},
        "unreserved_resources": resources_json(agent.total),
        "reserved_resources_full": {},
        "unreserved_resources_full": agent.total.to_json(),
        "reserved_resources_allocated": {},
        "unreserved_resources_allocated": resources_json(allocated),
        "resource_providers": [],
        "attributes": attributes_json(agent.attributes),
        "master_hostname": master.config.hostname,
        "flags": {"work_dir": str(runtime.work_dir), "port": str(agent.port),
                  "hostname": agent.hostname, "master": f"{host}:{master.config.port}"},
        "frameworks": [_framework_json(fid, b) for fid, b in live.items()],
        "completed_frameworks": [_framework_json(fid, b) for fid, b in done],
    }


# --- the master ------------------------------------------------------------------------------
def _offer_json(offer: Offer) -> dict[str, Any]:
    return {"id": offer.offer_id, "framework_id": offer.framework_id,
            "slave_id": offer.agent_id,
            "resources": resources_json(offer.resources)}


def _master_framework_json(m: Master, fw: Framework) -> dict[str, Any]:
    info = fw.info
    used = Resources()
    for t in fw.tasks.values():
        if not t.resources_released:
            used = used + t.resources
    offered = Resources()
    for o in fw.offers:
        if o in m.offers:
            offered = offered + m.offers[o].resources
    return {
        "id": fw.framework_id,
        "name": info.get("name", ""),
        "user": info.get("user", ""),
        "hostname": info.get("hostname", ""),
        "principal": info.get("principal"),
        "role": info.get("role", "*"),
        "roles": fw.roles,
        "active": fw.active,
        "connected": fw.connected,
        "recovered": False,
        "checkpoint": bool(info.get("checkpoint", False)),
        "failover_timeout": fw.failover_timeout,
        "webui_url": info.get("webui_url", ""),
        "resources": resources_json(used),
        "used_resources": resources_json(used),
        "offered_resources": resources_json(offered),
        "capabilities": sorted(fw.capabilities),
        "registered_time": fw.registered_time,
        "unregistered_time": fw.unregistered_time or 0,
        "tasks": [task_json(t) for t in fw.tasks.values()],
        "unreachable_tasks": [task_json(t) for t in fw.unreachable_tasks.values()],
        "completed_tasks": [task_json(t) for t in fw.completed_tasks],
        "offers": [_offer_json(m.offers[o]) for o in fw.offers if o in m.offers],
        "executors": [],
        "completed_executors": [],
    }


def master_state(m: Master) -> dict[str, Any]:
    """The master's `/state`. Call with the master lock held."""
    leader = m.master_info()
    slaves = []
    for a in m.agents.values():
        if a.state == "gone":
            continue
        slaves.append({
            "id": a.agent_id,
            "pid": f"{a.pid_name}@{m.config.host}:{a.port}",
            "hostname": a.hostname,
            "port": a.port,
            "resources": resources_json(a.total),
            "used_resources": resources_json(a.used),
            "offered_resources": resources_json(a.offered),
            "unreserved_resources": resources_json(a.total),
            "reserved_resources": {},
            "deactivated": False,
            "capabilities": AGENT_CAPABILITIES,
            "attributes": attributes_json(a.attributes),
            "active": a.state == "active",
            "version": MESOS_VERSION,
            "registered_time": a.registered_time,
        })
    return {
        "version": MESOS_VERSION,
        "id": m.master_id,
        "pid": leader["pid"],
        "hostname": m.config.hostname,
        "start_time": m.start_time,
        "elected_time": m.elected_time,
        "leader": leader["pid"],
        # readonly_handler.cpp writes the leader with common/http.cpp's
        # json(MasterInfo): id, pid, port and hostname only.
        "leader_info": {k: leader[k] for k in ("id", "pid", "port", "hostname")},
        "activated_slaves": sum(1 for a in m.agents.values() if a.state == "active"),
        "deactivated_slaves": 0,
        "unreachable_slaves": sum(1 for a in m.agents.values()
                                  if a.state == "unreachable"),
        "slaves": slaves,
        "frameworks": [_master_framework_json(m, fw) for fw in m.frameworks.values()],
        "completed_frameworks": [_master_framework_json(m, fw)
                                 for fw in m.removed_frameworks.values()],
        "orphan_tasks": [],
        "capabilities": list(MASTER_CAPABILITIES),
        "unregistered_frameworks": [],
        "flags": {"allocation_interval": f"{m.config.allocation_interval}secs",
                  "offer_timeout": str(m.config.offer_timeout)},
    }
