"""The admission policy's verdicts, pure: `evaluate` judges an object against the operator's
policy (controller/api/policy.py), `judge` a stored document, `throttles_for` and
`pool_constraints_for` the throttles and pools a task falls under (docs/architecture.md §10).
No I/O, no clock: tested as tables and properties (tests/policy/); `controller/policy.py`'s
cache applies them to every plan and every launch.

Throttles and pools (issue 16) select tasks by their owner's kind, namespace and name and by
labels: **the object's metadata.labels merged with its task template's labels, the template's
winning on a key both set** (`task_labels`).
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from controller.admission import POLICY_DENIED, Denial
from controller.api.codec import ObjectInvalid, Problem
from controller.api.kinds import CronJobSpec, JobSpec, QueueSpec
from controller.api.policy import (
    Policy,
    ResourceLimits,
    Rules,
    decode_policy,
    glob_regex,
)
from controller.api.service import ServiceSpec
from controller.api.template import Constraint, ContainerType, Network, TaskTemplate

_SCALARS = ("cpus", "mem", "disk", "gpus")
# Docker run parameters that would set what the rules judge (volumes, network) behind
# their backs: denied when the rule they would bypass is in force.
_VOLUME_PARAMETERS = frozenset({"volume", "v", "mount", "volumes-from", "volume-driver"})
_NETWORK_PARAMETERS = frozenset({"net", "network", "network-alias"})


# --- evaluation (pure) ----------------------------------------------------------------------
def _deny(field: str, message: str) -> Denial:
    return Denial(POLICY_DENIED, field, message)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _templates(spec: Any) -> tuple[TaskTemplate, str, int, str] | None:
    """(template, its path, most concurrent tasks, the field that says so) of a spec."""
    if isinstance(spec, JobSpec):
        return spec.template, "spec.template", spec.parallelism, "spec.parallelism"
    if isinstance(spec, QueueSpec):
        return spec.template, "spec.template", spec.max_concurrent, "spec.maxConcurrent"
    if isinstance(spec, ServiceSpec):
        over = spec.upgrade_strategy.maximum_over_capacity
        # The planner's ceiling (reconcile/service.py), live instances during a rollout.
        ceiling = math.floor(spec.instances * (1 + over) + 1e-9)
        return spec.template, "spec.template", max(spec.instances, ceiling), "spec.instances"
    if isinstance(spec, CronJobSpec):
        job = spec.job_template.spec
        return (job.template, "spec.jobTemplate.spec.template", job.parallelism,
                "spec.jobTemplate.spec.parallelism")
    return None


def _spec_of(obj: Any) -> Any:
    """The spec of an object (Job, CronJob, Queue, Service), or the spec itself."""
    return getattr(obj, "spec", obj)


def host_path_allowed(path: str, prefixes: Iterable[str]) -> bool:
    """Whether `path` lies under one of `prefixes`, component by component ('/data' allows
    '/data' and '/data/x', not '/database'). A relative path, or one holding '..' (which a
    symlink may send anywhere; lexical normalisation cannot tell), is never allowed."""
    if not path.startswith("/") or ".." in path.split("/"):
        return False
    parts = [p for p in posixpath.normpath(path).split("/") if p]
    for prefix in prefixes:
        want = [p for p in posixpath.normpath(prefix).split("/") if p]
        if parts[:len(want)] == want:
            return True
    return False


def image_allowed(image: str, patterns: Iterable[str]) -> bool:
    return any(glob_regex(p).match(image) for p in patterns)


def _namespace_text(namespace: str) -> str:
    return f"in namespace {namespace}"


def _restricted(rules: Rules) -> bool:
    """Whether any rule but the role restricts what a task may be: then docker parameters
    must be allowed by name, since almost any of them can undo one of the rules."""
    return any(value is not None and value is not False for value in (
        rules.allowed_images, rules.require_image, rules.allowed_host_paths,
        rules.allowed_networks, rules.max_task_resources, rules.max_object_resources))


def _local_path(uri: str) -> str | None:
    """The agent-local path a fetcher URI names (file:// or a bare absolute path), or None
    for a remote one (http, https, ftp, hdfs, s3...): the Mesos fetcher copies a local one
    into the sandbox, which the container sees."""
    if uri.startswith("file://"):
        return uri[len("file://"):] or "/"
    if uri.startswith("/"):
        return uri
    return None


def _check_template(rules: Rules, namespace: str, t: TaskTemplate, path: str
                    ) -> Iterator[Denial]:
    where = _namespace_text(namespace)
    container = t.container
    image = container.image if container is not None else None
    cpath = f"{path}.container"
    if rules.allowed_images is not None and image is not None and not image_allowed(
            image, rules.allowed_images):
        yield _deny(f"{cpath}.image", f"image {image!r} is not allowed {where} (allowed: "
                                      f"{', '.join(rules.allowed_images) or 'none'})")
    if rules.require_image and image is None:
        yield _deny(f"{cpath}.image", f"a container image is required {where} "
                                      "(requireImage)")
    if container is not None and rules.allowed_host_paths is not None:
        for i, volume in enumerate(container.volumes):
            if not host_path_allowed(volume.host_path, rules.allowed_host_paths):
                yield _deny(f"{cpath}.volumes[{i}].hostPath",
                            f"host path {volume.host_path!r} is not allowed {where} "
                            f"(allowed prefixes: "
                            f"{', '.join(rules.allowed_host_paths) or 'none'})")
    if rules.allowed_networks is not None:
        docker = container is not None and container.type is ContainerType.DOCKER
        network = (container.network if docker and container is not None
                   and container.network is not None else Network.HOST)
        if network not in rules.allowed_networks:
            field = f"{cpath}.network" if docker else f"{path}.container"
            yield _deny(field, f"network {network.value} is not allowed {where} (allowed: "
                               f"{', '.join(n.value for n in rules.allowed_networks) or 'none'})"
                               + ("" if docker else "; a task outside a DOCKER container "
                                  "shares the host's network"))
    restricted = _restricted(rules)
    if container is not None:
        allowed_parameters = set(rules.allowed_docker_parameters or ())
        for i, parameter in enumerate(container.parameters):
            key = parameter.key.lstrip("-")
            if restricted and key not in allowed_parameters and key not in (
                    _VOLUME_PARAMETERS | _NETWORK_PARAMETERS):
                yield _deny(f"{cpath}.parameters[{i}].key",
                            f"docker parameter {parameter.key!r} is not allowed {where} "
                            "(allowedDockerParameters: "
                            f"{', '.join(sorted(allowed_parameters)) or 'none'})")
            if rules.allowed_host_paths is not None and key in _VOLUME_PARAMETERS:
                yield _deny(f"{cpath}.parameters[{i}].key",
                            f"docker parameter {parameter.key!r} is not allowed {where} "
                            "(allowedHostPaths: use container.volumes)")
            if rules.allowed_networks is not None and key in _NETWORK_PARAMETERS:
                yield _deny(f"{cpath}.parameters[{i}].key",
                            f"docker parameter {parameter.key!r} is not allowed {where} "
                            "(allowedNetworks: use container.network)")
    if rules.allowed_host_paths is not None:
        for i, uri in enumerate(t.uris):
            local = _local_path(uri.value)
            if local is not None and not host_path_allowed(local, rules.allowed_host_paths):
                yield _deny(f"{path}.uris[{i}].value",
                            f"fetching the agent's file {local!r} is not allowed {where} "
                            f"(allowedHostPaths: "
                            f"{', '.join(rules.allowed_host_paths) or 'none'})")
    limits = rules.max_task_resources
    if limits is not None:
        for name in _SCALARS:
            bound = getattr(limits, name)
            value = getattr(t.resources, name)
            if bound is not None and value > bound + 1e-9:
                yield _deny(f"{path}.resources.{name}",
                            f"{_number(value)} {name} per task exceeds the maximum of "
                            f"{_number(bound)} {where} (maxTaskResources.{name})")


def _check_object(limits: ResourceLimits, namespace: str, t: TaskTemplate, tasks: int,
                  field: str) -> Iterator[Denial]:
    for name in _SCALARS:
        bound = getattr(limits, name)
        value = getattr(t.resources, name)
        if bound is not None and value * tasks > bound + 1e-9:
            yield _deny(field, f"{tasks} tasks x {_number(value)} {name} = "
                               f"{_number(value * tasks)} {name} at once exceeds the maximum "
                               f"of {_number(bound)} per object {_namespace_text(namespace)} "
                               f"(maxObjectResources.{name})")


def violations(policy: Policy | None, kind: str, namespace: str, obj: Any) -> list[Denial]:
    """Every rule of the policy the object breaks, in the order of the spec's fields."""
    if policy is None:
        return []
    found = _templates(_spec_of(obj))
    if found is None:
        return []
    template, path, tasks, tasks_field = found
    rules = policy.rules_for(namespace)
    out = list(_check_template(rules, namespace, template, path))
    if rules.max_object_resources is not None:
        out += _check_object(rules.max_object_resources, namespace, template, tasks,
                             tasks_field)
    return out


def evaluate(policy: Policy | None, kind: str, namespace: str, obj: Any) -> Denial | None:
    """The first rule the object (or its spec) breaks, or None when it may launch."""
    found = violations(policy, kind, namespace, obj)
    return found[0] if found else None


# --- throttles and pools (pure) -------------------------------------------------------------
ObjectLookup = Callable[[str, str, str], Any]
"""(kind, namespace, name) -> the decoded object (Job, Queue, Service), or None."""


def task_labels(obj: Any, template: TaskTemplate | None = None) -> dict[str, str]:
    """The labels a match compares for the tasks of `obj`: its metadata.labels merged with its
    task template's labels, the template's winning on a key both set. `template` is the one
    launched (a launch's own, e.g. a Service instance of an older version); by default the
    object's. An object without trustworthy metadata (None, an invalid document) adds none."""
    meta = getattr(getattr(obj, "metadata", None), "labels", None)
    if template is None and obj is not None:
        found = _templates(_spec_of(obj))
        template = found[0] if found is not None else None
    own = template.labels if template is not None else {}
    return {**(meta if isinstance(meta, dict) else {}), **own}


def throttles_for(policy: Policy | None, kind: str, namespace: str, name: str,
                  labels: Mapping[str, str]) -> tuple[str, ...]:
    """The names of the throttles a task of `kind/namespace/name` with `labels` (see
    `task_labels`) counts against, in the policy's order."""
    if policy is None:
        return ()
    return tuple(t.name for t in policy.spec.throttles
                 if t.match.matches(kind, namespace, name, labels))


def pool_constraints_for(policy: Policy | None, kind: str, namespace: str, name: str,
                         labels: Mapping[str, str]) -> list[Constraint]:
    """The constraints every matching pool adds, in the policy's order, each once."""
    out: list[Constraint] = []
    for pool in policy.spec.pools if policy is not None else ():
        if pool.match.matches(kind, namespace, name, labels):
            out += [c for c in pool.constraints if c not in out]
    return out




def judge(raw: bytes | None) -> tuple[Policy | None, tuple[Problem, ...]]:
    """The stored document's verdict: (policy, ()) or (None, its problems)."""
    if raw is None:
        return None, ()
    try:
        return decode_policy(raw), ()
    except ObjectInvalid as exc:
        return None, tuple(exc.problems)


