"""The admission policy at work: `evaluate` judges an object against the operator's policy
(controller/api/policy.py), and `PolicyCache` keeps the policy in force, read from
`<prefix>/policy` by one watch, for the admission gate (controller/admission.py) and the
Mesos adapter's roles (docs/architecture.md §10).

Why a cache: every plan of every object asks the gate, so the policy must be a memory read;
one watch of a single key keeps it current and wakes every object when it changes (a denial
lifts, or starts, at once: level-triggered like everything else).

What is in force:
- no policy key: nothing is denied, every task runs under the framework's configured role;
- a valid document: that policy;
- an invalid document (bad YAML, wrong shape): the last valid policy stays in force, an error
  naming each field is logged, `docket_policy_valid` is 0 and `docket policy` says why. At
  start-up with no valid policy read yet, nothing is denied (fail-open, as with no key): a
  typo in the policy must not stop a cluster's work on a controller restart, and the error
  is loud (log, metric, CLI) until it is fixed.
- a deleted key: no policy (the operator removed it).

Throttles and pools (issue 16) select tasks by their owner's kind, namespace and name and by
labels: **the object's metadata.labels merged with its task template's labels, the template's
winning on a key both set** (`task_labels`). `throttles_for` and `pool_constraints_for` are the
pure verdicts; the cache puts them on every launch in `prepare` (`LaunchRequest.throttles`,
pool constraints appended to a copy of the template's own: pools only add) and publishes each
throttle's limit as `docket_throttle_limit`. `prepare` sees only the launch: the owner's kind,
namespace and name come from the task id, its template from the request, and its
metadata.labels from the `objects` lookup the manager gives (`(kind, namespace, name) -> the
decoded object or None`, from its informers); without one only the template's labels count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import posixpath
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pyetcd.events
import structlog

from controller.admission import POLICY_DENIED, Denial
from controller.api.codec import ObjectInvalid, Problem
from controller.api.kinds import CronJobSpec, JobSpec, QueueSpec
from controller.api.policy import (
    POLICY_KEY,
    Policy,
    ResourceLimits,
    Rules,
    decode_policy,
    glob_regex,
)
from controller.api.service import ServiceSpec
from controller.api.template import Constraint, ContainerType, Network, TaskTemplate
from controller.metrics import POLICY_VALID, set_throttle_limits
from controller.reconcile.taskid import parse_task_id
from controller.store.watch import create_prefix_watch

if TYPE_CHECKING:
    from controller.mesos.backend import LaunchRequest
    from controller.store import Store

log = structlog.get_logger("docket.policy")

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


# --- the cache ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PolicyState:
    """What the controller holds: the policy in force (None: none) and the revision of the
    document it came from, and the verdict on the document stored now."""

    policy: Policy | None = None
    revision: int = 0
    stored_revision: int = 0
    problems: tuple[Problem, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems


def judge(raw: bytes | None) -> tuple[Policy | None, tuple[Problem, ...]]:
    """The stored document's verdict: (policy, ()) or (None, its problems)."""
    if raw is None:
        return None, ()
    try:
        return decode_policy(raw), ()
    except ObjectInvalid as exc:
        return None, tuple(exc.problems)


_WAKE = object()


def _limits(policy: Policy | None) -> dict[str, int]:
    return {} if policy is None else {t.name: t.max_running for t in policy.spec.throttles}


class PolicyCache:
    """The policy in force, from one watch of `<prefix>/policy` (see the module docstring).
    An admission source (controller/admission.py). `on_change()` is called, from the watch
    thread, whenever the policy in force changes (the manager plans every object again);
    `roles_to.set_roles(roles)`, when given and when the set of roles the policy names
    changes (the Mesos adapter subscribes with them). `objects` finds the object a launch
    belongs to, for its metadata.labels (see the module docstring); it may also be set later,
    as the attribute of that name."""

    def __init__(self, store: Store, *, on_change: Callable[[], None] | None = None,
                 roles_to: Any = None, max_backoff: float = 2.0,
                 objects: ObjectLookup | None = None) -> None:
        self._store = store
        self.objects: ObjectLookup | None = objects
        self.key = f"{store.keys.prefix}/{POLICY_KEY}"
        self._on_change = on_change
        # Told what the cache holds after every apply that changed it (and the first): the
        # policy's status (controller/policy_status.py).
        self.on_state: Callable[[PolicyState], None] | None = None
        self._told = False
        self._set_roles: Callable[[Iterable[str]], None] | None = getattr(
            roles_to, "set_roles", None)
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._state = PolicyState()
        self._roles: frozenset[str] | None = None
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inbox: queue.Queue[Any] | None = None
        POLICY_VALID.set(1)

    # --- AdmissionSource -----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="watch-policy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        inbox = self._inbox
        if inbox is not None:
            inbox.put(_WAKE)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def wait_for_sync(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def check(self, kind: str, namespace: str, name: str, spec: Any) -> Denial | None:
        return evaluate(self._state.policy, kind, namespace, spec)

    def prepare(self, request: LaunchRequest) -> LaunchRequest:
        """The launch with its namespace's role, the throttles it counts against and its
        pools' constraints added to its template's (the task id names the owner). A foreign
        task id, or no policy, leaves it as it is."""
        policy = self._state.policy
        parts = parse_task_id(request.task_id)
        if policy is None or parts is None:
            return request
        kind, namespace, name = parts.owner.kind, parts.owner.namespace, parts.owner.name
        changes: dict[str, Any] = {}
        role = policy.role_for(namespace) if request.role is None else None
        if role is not None:
            changes["role"] = role
        if policy.spec.throttles or policy.spec.pools:
            labels = task_labels(self._lookup(kind, namespace, name), request.template)
            throttles = throttles_for(policy, kind, namespace, name, labels)
            if throttles != request.throttles:
                changes["throttles"] = throttles
            own = request.template.constraints
            extra = [c for c in pool_constraints_for(policy, kind, namespace, name, labels)
                     if c not in own]
            if extra:
                changes["template"] = request.template.model_copy(
                    update={"constraints": [*own, *extra]})
        return dataclasses.replace(request, **changes) if changes else request

    def throttle_limits(self) -> dict[str, int]:
        """Each throttle of the policy in force: name -> maxRunning."""
        return _limits(self._state.policy)

    def throttles_of(self, kind: str, namespace: str, name: str, obj: Any
                     ) -> tuple[str, ...]:
        """The throttles the tasks of `obj` (a decoded Job, Queue or Service, as the
        informer holds it) count against, judged with its template's labels."""
        return throttles_for(self._state.policy, kind, namespace, name, task_labels(obj))

    def _lookup(self, kind: str, namespace: str, name: str) -> Any:
        lookup = self.objects
        if lookup is None:
            return None
        try:
            return lookup(kind, namespace, name)
        except Exception:
            log.exception("could not look the launch's object up; its template's labels only",
                          kind=kind, namespace=namespace, name=name)
            return None

    # --- reads ---------------------------------------------------------------------------
    @property
    def state(self) -> PolicyState:
        return self._state

    @property
    def policy(self) -> Policy | None:
        return self._state.policy

    # --- applying what is stored -----------------------------------------------------------
    def apply(self, raw: bytes | None, mod_revision: int) -> None:
        """The stored document at `mod_revision` (None: no key). Public for the watch thread
        and tests alike; idempotent."""
        policy, problems = judge(raw)
        with self._lock:
            old = self._state
            if mod_revision and mod_revision < old.stored_revision:
                return  # older than what was applied (a re-read racing the watch)
            if problems:
                new = dataclasses.replace(old, stored_revision=mod_revision, problems=problems)
            else:
                new = PolicyState(policy, mod_revision, mod_revision, ())
            POLICY_VALID.set(0 if problems else 1)
            # Before the state: whoever sees the new policy sees its limits published.
            set_throttle_limits(_limits(new.policy))
            self._state = new
        if problems and problems != old.problems:
            log.error("policy is invalid; the last valid one stays in force" if
                      old.policy is not None else
                      "policy is invalid and none was valid before: nothing is denied",
                      key=self.key, revision=mod_revision,
                      problems=[str(p) for p in problems], in_force=old.revision or None)
        changed = new.policy is not old.policy and (new.revision != old.revision)
        if changed:
            log.info("policy in force", key=self.key, revision=new.revision or None,
                     namespaces=sorted(new.policy.spec.namespaces) if new.policy else [],
                     throttles=[t.name for t in new.policy.spec.throttles] if new.policy
                     else [])
        roles = new.policy.roles() if new.policy is not None else frozenset()
        if self._set_roles is not None and roles != self._roles:
            self._roles = roles
            try:
                self._set_roles(sorted(roles))
            except Exception:
                log.exception("could not pass the policy's roles to Mesos")
        if changed and self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                log.exception("policy change callback failed")
        if self.on_state is not None and (new != old or not self._told):
            self._told = True
            try:
                self.on_state(new)
            except Exception:
                log.exception("policy state callback failed")

    def _read(self) -> int:
        """Read the key now; the revision to watch from."""
        items, revision = self._store.list_raw(self.key)
        found = [(v, mod) for key, v, mod, _c, _v in items if key == self.key]
        if found:
            self.apply(found[0][0], found[0][1])
        else:
            self.apply(None, revision)
        self._synced.set()
        return revision + 1

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                start = self._read()
                backoff = 0.05
                self._watch(start)
                return
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("policy watch failed; reading again", error=str(exc) or
                            type(exc).__name__)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _watch(self, start_revision: int) -> None:
        inbox: queue.Queue[Any] = queue.Queue()
        self._inbox = inbox
        raw = self._store.watch_client.raw
        # A prefix watch on the exact key (the shared creation lock lives with prefix
        # watches); other keys that start with it are skipped below.
        watch_id = create_prefix_watch(raw, self.key, inbox.put, start_revision=start_revision)
        try:
            while not self._stop.is_set():
                try:
                    item = inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _WAKE:
                    continue
                if item is None:
                    raise ConnectionError("policy watch stream closed")
                if isinstance(item, BaseException):
                    raise item
                for ev in item.events:
                    if bytes(ev.key).decode("utf-8", "replace") != self.key:
                        continue
                    if isinstance(ev, pyetcd.events.DeleteEvent):
                        self.apply(None, int(ev.mod_revision))
                    else:
                        self.apply(bytes(ev.value), int(ev.mod_revision))
        finally:
            with contextlib.suppress(Exception):
                raw.cancel_watch(watch_id)
