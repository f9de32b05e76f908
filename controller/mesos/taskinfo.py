"""From a TaskTemplate to what Mesos needs: the TaskRequest matched against offers, and the
v1 TaskInfo JSON (field names exactly as in Mesos' protos) once an offer is chosen.

Host ports. A task's host ports come in three sorts, and the task sees them all, in this
order, as PORT0..PORTn and PORTS (comma separated), as under Marathon:

1. `template.ports`, the named ports: each takes a free port of the offer and is also given
   as PORT_<NAME>. Under DOCKER BRIDGE each is mapped to its `containerPort` (to the same
   number when it has none, Marathon's rule for containerPort 0, so a task listening on
   $PORT_<NAME> inside the container is reachable on the host port).
2. the port mappings of a DOCKER container: those with a fixed `hostPort` first (requested
   as such), then those with hostPort 0, which take free ports of the offer;
3. `resources.ports`: free ports of the offer.

Templates without named ports get exactly the order they had before named ports existed.
The offer matcher only knows "these fixed ports, and N others"; `port_layout` turns what it
chose back into this order, and is the one place that knows it (the adapter reports the same
order as the task's host ports).

Health checks. `LaunchRequest.health_check` becomes `TaskInfo.health_check`, run by the
agent's executor as Mesos' built-in executors do. HTTP and TCP checks name the port the task
listens on in its own network namespace (Mesos' docs/health-checks.md: "an actual port the
task is listening on, not a mapped one"): the container port under DOCKER BRIDGE, else the
host port. Every timing is written out, as Mesos' defaults differ from Marathon's.

Secrets. An `env` value taken from a Secret (`valueFrom.secretKeyRef`) is sent as Mesos'
own secret-typed variable (include/mesos/v1/mesos.proto `Environment.Variable` type SECRET
with a `Secret` of type VALUE; its `data` is bytes, so base64 in v1 JSON):
`{"name": N, "type": "SECRET", "secret": {"type": "VALUE", "value": {"data": <base64>}}}`.
A 1.11 master shows no task's command in `/state` or `/tasks` at all (its Task has none), so the
value goes nowhere but the agent. Plain variables stay `{"name", "value"}` (type VALUE is the
proto's default). The values come in `secret_env` (LaunchRequest.secret_env, filled on the
launch's way to Mesos); a referenced variable without a value there cannot be launched
(ValueError: the launch fails with TASK_ERROR) rather than start without its secret.

Timeouts: `taskTimeoutSeconds` is enforced by the controller, which kills the task and records
the failure as TaskTimeout from the start time it keeps in etcd; that works on every Mesos
version and survives controller restarts. Mesos' `max_completion_time` is only a backstop and
is set when the caller passes `max_completion_seconds`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Container as Container_
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.api.service import HealthCheck, HealthCheckType
from controller.api.template import ContainerType, Network, PortMapping, TaskTemplate
from controller.mesos.offers import Assignment, TaskRequest

# Mesos' rule for ids (they become directory names on the agent): not empty, not '.' or
# '..', at most 255 characters, no '/', '\\' or control characters.
_BAD_ID_CHAR = re.compile(r"[/\\\x00-\x1f\x7f]")

NEVER_KILL = 2**32 - 1
"""`consecutive_failures` for a health check that must never kill its task. Mesos kills once
`failures >= consecutive_failures` (src/checks/health_checker.cpp), so 0 would kill at the
first failure; the largest uint32 is the nearest it has to "never"."""


def check_task_id(task_id: str) -> None:
    if (not task_id or task_id in (".", "..") or len(task_id) > 255
            or _BAD_ID_CHAR.search(task_id)):
        raise ValueError(f"task id {task_id!r} would be rejected by Mesos")


def _port_mappings(template: TaskTemplate) -> list[PortMapping]:
    container = template.container
    if container is None or container.type is not ContainerType.DOCKER:
        return []
    return list(container.port_mappings)


def _bridge(template: TaskTemplate) -> bool:
    c = template.container
    return c is not None and c.type is ContainerType.DOCKER and c.network is Network.BRIDGE


@dataclass(frozen=True)
class HostPort:
    """One host port of a task. `listen` is the port the task listens on in its own network
    namespace: the container port it is mapped to under DOCKER BRIDGE, else the host port."""

    number: int
    listen: int
    protocol: str = "tcp"
    name: str | None = None
    """The name in `template.ports`, for a named port."""
    container_port: int | None = None
    """For a DOCKER port mapping: the port it maps to (written whatever the network, as
    before named ports existed)."""


@dataclass(frozen=True)
class PortLayout:
    ordered: tuple[HostPort, ...]
    """PORT0..PORTn in order."""
    mappings: tuple[HostPort, ...]
    """DOCKER `port_mappings`: the named ports' (BRIDGE only), then the template's own in
    their order."""

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(p.number for p in self.ordered)


def port_count(template: TaskTemplate) -> int:
    """How many host ports a task of this template gets (PORT0..PORT<count-1>)."""
    return len(template.ports) + len(_port_mappings(template)) + template.resources.ports


def port_layout(template: TaskTemplate, assignment: Assignment) -> PortLayout:
    """The host ports `assignment` got, as the task sees them (see the module docstring)."""
    chosen = list(assignment.ports)
    # The matcher gives the fixed ports first, in request order, then the dynamic ones; the
    # named ports were requested as the first dynamic ones.
    fixed_count = len(assignment.request.host_ports)
    fixed, dynamic = iter(chosen[:fixed_count]), iter(chosen[fixed_count:])
    bridge = _bridge(template)
    named = []
    for port in template.ports:
        number = next(dynamic)
        if bridge:
            inside = port.container_port or number
            named.append(HostPort(number, inside, port.protocol, port.name, inside))
        else:  # `containerPort` means nothing without a bridge: the task listens on the host
            named.append(HostPort(number, number, port.protocol, port.name))
    mappings = _port_mappings(template)
    by_mapping: list[HostPort] = []
    for pm in mappings:
        number = next(fixed) if pm.host_port else next(dynamic)
        by_mapping.append(HostPort(number, pm.container_port if bridge else number,
                                   pm.protocol, container_port=pm.container_port))
    rest = [HostPort(n, n) for n in dynamic]
    fixed_first = ([hp for hp, pm in zip(by_mapping, mappings, strict=True) if pm.host_port]
                   + [hp for hp, pm in zip(by_mapping, mappings, strict=True)
                      if not pm.host_port])
    return PortLayout(
        ordered=tuple(named + fixed_first + rest),
        mappings=tuple((named if bridge else []) + by_mapping),
    )


def _probe_index(template: TaskTemplate, check: HealthCheck) -> int:
    """Which PORT<n> an HTTP or TCP check probes; ValueError when the task has no such port."""
    if check.port_name is not None:
        names = [p.name for p in template.ports]
        if check.port_name not in names:
            raise ValueError(f"health check port {check.port_name!r} is not in template.ports")
        return names.index(check.port_name)
    index = check.port_index if check.port_index is not None else 0
    count = port_count(template)
    if index >= count:
        raise ValueError(f"health check port PORT{index} does not exist: the task has "
                         f"{count} port(s)")
    return index


def _check_probe_protocol(template: TaskTemplate, check: HealthCheck, index: int) -> None:
    # Which protocol PORT<index> has is known before any offer: named ports, then the
    # mappings (fixed ones first), then resources.ports (tcp).
    mappings = _port_mappings(template)
    protocols = ([p.protocol for p in template.ports]
                 + [pm.protocol for pm in mappings if pm.host_port]
                 + [pm.protocol for pm in mappings if not pm.host_port])
    if index < len(protocols) and protocols[index] != "tcp":
        # An HTTP or TCP probe of a UDP port fails every time and would kill the task in a
        # loop: refuse it at launch instead.
        raise ValueError(f"health check {check.type.value} cannot probe PORT{index}: it is "
                         f"{protocols[index]}")


def task_request(template: TaskTemplate, task_id: str, group: str,
                 health_check: HealthCheck | None = None) -> TaskRequest:
    """What a task of this template needs from an offer. ValueError when it cannot become a
    task at all (a bad id, a health check on a port the task does not have)."""
    check_task_id(task_id)
    if health_check is not None and health_check.type is not HealthCheckType.COMMAND:
        _check_probe_protocol(template, health_check, _probe_index(template, health_check))
    mappings = _port_mappings(template)
    fixed = tuple(pm.host_port for pm in mappings if pm.host_port)
    # Named ports first: port_layout takes them from the head of the dynamic ports.
    dynamic = (len(template.ports) + sum(1 for pm in mappings if not pm.host_port)
               + template.resources.ports)
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


def health_check_json(template: TaskTemplate, check: HealthCheck,
                      ports: Sequence[HostPort]) -> dict[str, Any]:
    """The v1 HealthCheck of `check` for a task with these host ports (in PORT order)."""
    out: dict[str, Any] = {"type": check.type.value}
    if check.type is HealthCheckType.COMMAND:
        # The task's environment (PORT0, PORT_<NAME>...) is there already: the command
        # executor is given it (src/slave/slave.cpp) and its checks inherit the executor's.
        out["command"] = {"shell": True, "value": check.command}
    else:
        port = ports[_probe_index(template, check)].listen
        if check.type is HealthCheckType.HTTP:
            out["http"] = {"port": port, "path": check.path, "scheme": "http"}
        else:
            out["tcp"] = {"port": port}
    out.update({
        "delay_seconds": float(check.delay_seconds),
        "interval_seconds": float(check.interval_seconds),
        "timeout_seconds": float(check.timeout_seconds),
        "consecutive_failures": check.max_consecutive_failures or NEVER_KILL,
        "grace_period_seconds": float(check.grace_period_seconds),
    })
    return out


def task_info(
    template: TaskTemplate,
    assignment: Assignment,
    *,
    name: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    max_completion_seconds: float | None = None,
    health_check: HealthCheck | None = None,
    secret_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The v1 TaskInfo launching `template` on the offer chosen in `assignment`.

    `extra_env` is added last (the controller's own variables, such as DOCKET_BATCH).
    `secret_env` holds the values of the template's secret variables (see the module
    docstring); ValueError when one of them is missing.
    """
    task_id = assignment.task_id
    check_task_id(task_id)
    layout = port_layout(template, assignment)
    ports = layout.numbers

    env: dict[str, str] = {f"PORT{i}": str(p) for i, p in enumerate(ports)}
    if ports:
        env["PORTS"] = ",".join(str(p) for p in ports)
    # The named ports are the first ones of the layout, in template order.
    env.update({p.env_name: str(hp.number)
                for p, hp in zip(template.ports, layout.ordered, strict=False)})
    env.update(template.plain_env)
    secrets = secret_variables(template, secret_env or {}, overridden=extra_env or {})
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
    if env or secrets:
        command["environment"] = {
            "variables": [{"name": k, "value": v} for k, v in env.items()] + secrets
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

    container = _container(template, layout.mappings)
    if container is not None:
        info["container"] = container
    if health_check is not None:
        info["health_check"] = health_check_json(template, health_check, layout.ordered)
    if template.labels:
        info["labels"] = {
            "labels": [{"key": k, "value": v} for k, v in template.labels.items()]
        }
    if max_completion_seconds is not None:
        info["max_completion_time"] = _nanos(max_completion_seconds)
    return info


def secret_variables(template: TaskTemplate, values: Mapping[str, str], *,
                     overridden: Container_[str] = ()) -> list[dict[str, Any]]:
    """The template's secret variables as Mesos SECRET variables, with their values from
    `values` (a str carries bytes through 'surrogateescape', so any byte string survives);
    those in `overridden` (the controller's own variables win) are left out."""
    out = []
    for name, ref in template.secret_env.items():
        if name in overridden:
            continue
        value = values.get(name)
        if value is None:
            # Never launch without it: the task would run with the variable unset.
            raise ValueError(f"env {name}: the value of secret {ref.name!r} key {ref.key!r} "
                             "is not available (the secret or the key is gone)")
        raw = value.encode("utf-8", "surrogateescape")
        if b"\0" in raw:  # Mesos refuses it (common/validation.cpp validateEnvironment)
            raise ValueError(f"env {name}: secret {ref.name!r} key {ref.key!r} holds a NUL "
                             "byte, which an environment variable cannot")
        data = base64.b64encode(raw).decode("ascii")
        out.append({"name": name, "type": "SECRET",
                    "secret": {"type": "VALUE", "value": {"data": data}}})
    return out


def _container(template: TaskTemplate, mappings: Sequence[HostPort]) -> dict[str, Any] | None:
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
        docker: dict[str, Any] = {
            "image": c.image,
            "network": (c.network or Network.HOST).value,
            "force_pull_image": c.force_pull_image,
        }
        if mappings:
            docker["port_mappings"] = [
                {"host_port": hp.number, "container_port": hp.container_port,
                 "protocol": hp.protocol}
                for hp in mappings
            ]
        if c.parameters:
            docker["parameters"] = [{"key": p.key, "value": p.value} for p in c.parameters]
        out["docker"] = docker
    elif c.image is not None:
        out["mesos"] = {"image": {"type": "DOCKER", "docker": {"name": c.image}}}
    elif not c.volumes:
        return None  # a plain command: no ContainerInfo at all
    return out
