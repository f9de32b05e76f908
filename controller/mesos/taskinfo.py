"""From a TaskTemplate to what Mesos needs: the TaskRequest matched against offers, and the
v1 TaskInfo JSON (field names exactly as in Mesos' protos) once an offer is chosen.

Host ports: fixed `hostPort`s of port mappings are requested as such; every mapping with
hostPort 0 and every port of `resources.ports` takes a free port of the offer. The task sees
all its host ports as PORT0..PORTn and PORTS (comma separated), as under Marathon.

Timeouts: `taskTimeoutSeconds` is enforced by the controller, which kills the task and records
the failure as TaskTimeout from the start time it keeps in etcd; that works on every Mesos
version and survives controller restarts. Mesos' `max_completion_time` is only a backstop and
is set when the caller passes `max_completion_seconds`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from controller.api.template import ContainerType, Network, TaskTemplate
from controller.mesos.offers import Assignment, TaskRequest

# Mesos' rule for ids (they become directory names on the agent): not empty, not '.' or
# '..', at most 255 characters, no '/', '\\' or control characters.
_BAD_ID_CHAR = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_task_id(task_id: str) -> None:
    if (not task_id or task_id in (".", "..") or len(task_id) > 255
            or _BAD_ID_CHAR.search(task_id)):
        raise ValueError(f"task id {task_id!r} would be rejected by Mesos")


def _port_mappings(template: TaskTemplate) -> list[Any]:
    container = template.container
    if container is None or container.type is not ContainerType.DOCKER:
        return []
    return list(container.port_mappings)


def task_request(template: TaskTemplate, task_id: str, group: str) -> TaskRequest:
    """What a task of this template needs from an offer."""
    check_task_id(task_id)
    mappings = _port_mappings(template)
    fixed = tuple(pm.host_port for pm in mappings if pm.host_port)
    dynamic = sum(1 for pm in mappings if not pm.host_port) + template.resources.ports
    res = template.resources
    return TaskRequest(
        task_id=task_id,
        group=group,
        cpus=res.cpus,
        mem=res.mem,
        disk=res.disk,
        gpus=res.gpus,
        ports=dynamic,
        host_ports=fixed,
        constraints=tuple(template.constraints),
    )


def _nanos(seconds: float) -> dict[str, int]:
    return {"nanoseconds": round(seconds * 1_000_000_000)}


def task_info(
    template: TaskTemplate,
    assignment: Assignment,
    *,
    name: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    max_completion_seconds: float | None = None,
) -> dict[str, Any]:
    """The v1 TaskInfo launching `template` on the offer chosen in `assignment`.

    `extra_env` is added last (the controller's own variables, such as DOCKET_BATCH).
    """
    task_id = assignment.task_id
    check_task_id(task_id)
    ports = list(assignment.ports)
    fixed_count = len(assignment.request.host_ports)

    env: dict[str, str] = {f"PORT{i}": str(p) for i, p in enumerate(ports)}
    if ports:
        env["PORTS"] = ",".join(str(p) for p in ports)
    env.update(template.env)
    env.update(extra_env or {})

    command: dict[str, Any] = {}
    if template.command is not None:
        command["shell"] = True
        command["value"] = template.command
    elif template.args is not None:
        command["shell"] = False
        command["value"] = template.args[0]
        command["arguments"] = list(template.args)
    else:
        command["shell"] = False  # run the image's entrypoint
    if env:
        command["environment"] = {
            "variables": [{"name": k, "value": v} for k, v in env.items()]
        }
    if template.uris:
        uris = []
        for uri in template.uris:
            item: dict[str, Any] = {
                "value": uri.value,
                "executable": uri.executable,
                "extract": uri.extract,
                "cache": uri.cache,
            }
            if uri.output_file is not None:
                item["output_file"] = uri.output_file
            uris.append(item)
        command["uris"] = uris

    info: dict[str, Any] = {
        "name": name or task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": assignment.offer.agent_id},
        "resources": [dict(r) for r in assignment.resources],
        "command": command,
        "kill_policy": {"grace_period": _nanos(template.kill_grace_period_seconds)},
    }

    container = _container(template, dynamic_ports=ports[fixed_count:])
    if container is not None:
        info["container"] = container
    if template.labels:
        info["labels"] = {
            "labels": [{"key": k, "value": v} for k, v in template.labels.items()]
        }
    if max_completion_seconds is not None:
        info["max_completion_time"] = _nanos(max_completion_seconds)
    return info


def _container(template: TaskTemplate, dynamic_ports: list[int]) -> dict[str, Any] | None:
    c = template.container
    if c is None:
        return None
    out: dict[str, Any] = {"type": c.type.value}
    if c.volumes:
        out["volumes"] = [
            {"container_path": v.container_path, "host_path": v.host_path, "mode": v.mode}
            for v in c.volumes
        ]
    if c.type is ContainerType.DOCKER:
        free = iter(dynamic_ports)
        docker: dict[str, Any] = {
            "image": c.image,
            "network": (c.network or Network.HOST).value,
            "force_pull_image": c.force_pull_image,
        }
        if c.port_mappings:
            docker["port_mappings"] = [
                {
                    "host_port": pm.host_port or next(free),
                    "container_port": pm.container_port,
                    "protocol": pm.protocol,
                }
                for pm in c.port_mappings
            ]
        if c.parameters:
            docker["parameters"] = [{"key": p.key, "value": p.value} for p in c.parameters]
        out["docker"] = docker
    elif c.image is not None:
        out["mesos"] = {"image": {"type": "DOCKER", "docker": {"name": c.image}}}
    elif not c.volumes:
        return None  # a plain command: no ContainerInfo at all
    return out
