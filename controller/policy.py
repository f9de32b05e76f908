"""The admission policy at work: `PolicyCache` keeps the policy in force, read from
`<prefix>/policy` by one watch, for the admission gate (controller/admission.py) and the
Mesos adapter's roles (docs/architecture.md §10).

Why a cache: every plan of every object asks the gate, so the policy must be a memory read;
one watch of a single key keeps it current and wakes every object when it changes (a denial
lifts, or starts, at once: level-triggered like everything else).

What is in force:
- no policy key: nothing is denied, every task runs under the framework's configured role;
- a valid document: that policy;
- an invalid document (bad YAML, wrong shape): the last valid policy stays in force, an error
  naming each field is logged, `docket_policy_valid` is 0 and `docket policy` says why. The
  leader keeps a copy of the policy in force (controller/policy_status.py), so a controller
  restarted while the stored document is invalid starts with that one (`last_valid`); only
  when there never was a valid policy is nothing denied (as with no key).
- a deleted key: no policy (the operator removed it).

The verdicts are controller/policy_rules.py's (pure; re-exported here). Throttles and pools
(issue 16): the cache puts them on every launch in `prepare` (`LaunchRequest.throttles`,
pool constraints appended to a copy of the template's own: pools only add) and publishes each
throttle's limit as `docket_throttle_limit`. `prepare` sees only the launch: the owner's kind,
namespace and name come from the task id, its template from the request, and its
metadata.labels from the `objects` lookup the manager gives (`(kind, namespace, name) -> the
decoded object or None`, from its informers); without one only the template's labels count.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pyetcd.events
import structlog

from controller.admission import Denial
from controller.api.codec import Problem
from controller.api.policy import POLICY_KEY, Policy
from controller.metrics import POLICY_VALID, set_throttle_limits
from controller.policy_rules import (
    ObjectLookup,
    evaluate,
    host_path_allowed,
    image_allowed,
    judge,
    pool_constraints_for,
    task_labels,
    throttles_for,
    violations,
)
from controller.reconcile.taskid import parse_task_id
from controller.store.follower import Follower

if TYPE_CHECKING:
    from controller.mesos.backend import LaunchRequest
    from controller.store import Store

__all__ = ["ObjectLookup", "PolicyCache", "PolicyState", "evaluate", "host_path_allowed",
           "image_allowed", "judge", "pool_constraints_for", "task_labels", "throttles_for",
           "violations"]

log = structlog.get_logger("docket.policy")

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




def _limits(policy: Policy | None) -> dict[str, int]:
    return {} if policy is None else {t.name: t.max_running for t in policy.spec.throttles}


class PolicyCache(Follower):
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
        self.key = f"{store.keys.prefix}/{POLICY_KEY}"
        # A prefix watch on the exact key (the shared creation lock lives with prefix
        # watches); other keys that start with it are skipped.
        super().__init__(store, self.key, "policy", max_backoff=max_backoff)
        self.objects: ObjectLookup | None = objects
        self._on_change = on_change
        # Told what the cache holds after every apply that changed it (and the first): the
        # policy's status (controller/policy_status.py).
        self.on_state: Callable[[PolicyState], None] | None = None
        # Where the last valid policy is kept across restarts (the leader's copy), or None.
        self.last_valid: Callable[[], tuple[Policy, int] | None] | None = None
        self._told = False
        self._set_roles: Callable[[Iterable[str]], None] | None = getattr(
            roles_to, "set_roles", None)
        self._lock = threading.Lock()
        self._state = PolicyState()
        self._roles: frozenset[str] | None = None
        POLICY_VALID.set(1)

    # --- AdmissionSource -----------------------------------------------------------------
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
        kept = None
        if problems and self._state.policy is None and self.last_valid is not None:
            # A restart met an invalid policy: the one in force before it, as the leader kept
            # it (controller/policy_status.py), stays in force — not "nothing is denied".
            try:
                kept = self.last_valid()
            except Exception:
                log.exception("cannot read the last valid policy")
        with self._lock:
            old = self._state
            if mod_revision and mod_revision < old.stored_revision:
                return  # older than what was applied (a re-read racing the watch)
            if problems and kept is not None and old.policy is None:
                new = PolicyState(kept[0], kept[1], mod_revision, problems)
            elif problems:
                new = dataclasses.replace(old, stored_revision=mod_revision, problems=problems)
            else:
                new = PolicyState(policy, mod_revision, mod_revision, ())
            POLICY_VALID.set(0 if problems else 1)
            # Before the state: whoever sees the new policy sees its limits published.
            set_throttle_limits(_limits(new.policy))
            self._state = new
        if problems and problems != old.problems:
            log.error("policy is invalid; the last valid one stays in force" if
                      new.policy is not None else
                      "policy is invalid and none was valid before: nothing is denied",
                      key=self.key, revision=mod_revision,
                      problems=[str(p) for p in problems], in_force=new.revision or None)
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

    # --- the watch thread (controller/store/follower.py) ---------------------------------
    def _list(self) -> int:
        """Read the key now; the revision to watch from."""
        items, revision = self._store.list_raw(self.key)
        found = [(v, mod) for key, v, mod, _c, _v in items if key == self.key]
        if found:
            self.apply(found[0][0], found[0][1])
        else:
            self.apply(None, revision)
        return revision + 1

    def _failed(self, exc: BaseException) -> None:
        log.warning("policy watch failed; reading again", error=str(exc) or
                    type(exc).__name__)

    def _on_response(self, response: Any) -> None:
        for ev in response.events:
            if bytes(ev.key).decode("utf-8", "replace") != self.key:
                continue
            if isinstance(ev, pyetcd.events.DeleteEvent):
                self.apply(None, int(ev.mod_revision))
            else:
                self.apply(bytes(ev.value), int(ev.mod_revision))
