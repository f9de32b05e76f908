"""The Secrets a namespace's tasks read into their environment, held in memory and kept current
by one watch of `<prefix>/secrets/` (docs/architecture.md §3): the admission source
(controller/admission.py) that holds an object back while a Secret it refers to is missing,
and completes its launches with the values on their way to Mesos.

Why here and nowhere else: a Secret's value may appear in exactly two places, its own key and
the task's environment on the agent. So the controller never copies a value into anything it
writes (specs keep `valueFrom.secretKeyRef`, records and status know nothing of it), never logs
one (lines name namespace, secret and key), and puts it into a launch only at the last step:
`prepare` returns a copy of the LaunchRequest with `secret_env` filled (a field left out of
its repr), which the Mesos backend turns into SECRET-typed variables (controller/mesos/
taskinfo.py) and forgets once the task is accepted.

- `check(kind, namespace, name, object)`: every `env` reference of the object's task
  template(s) — a Job's, a Queue's or a Service's `spec.template`, a CronJob's
  `spec.jobTemplate.spec.template` — must name an existing, valid Secret of its namespace that
  has the key, with a value an environment can carry (no NUL byte: Mesos refuses it,
  src/common/validation.cpp validateEnvironment). Otherwise a Denial with reason
  SecretNotFound (missing Secret or key) or SecretInvalid, naming the field
  (`spec.template.env.DB_PASSWORD.valueFrom.secretKeyRef`).
- `prepare(request)`: the values of the template's references, read from the cache under the
  task's namespace (from its id). A reference that vanished between the check and the launch
  is left out: the backend then refuses to build the task (ValueError -> TASK_ERROR, "the
  secret or the key is gone") instead of launching it without its variable, and the next plan
  is denied by `check`.
- `on_change(namespace)`: after any change to a namespace's Secrets (the Manager's
  `wake_namespace`), so a denial lifts as soon as the Secret appears.

Consistency: loaded with one list, then watched from the list's revision + 1. Any broken or
compacted watch is answered with a new list (Secrets are few and small), whose difference from
the cache wakes the namespaces that changed; retried with bounded exponential backoff. While
the watch is down the cache serves what it has.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyetcd.events
import structlog

from controller.admission import SECRET_NOT_FOUND, Denial
from controller.api import ObjectInvalid, TaskTemplate, decode_secret
from controller.reconcile.taskid import parse_task_id
from controller.store.client import is_transient
from controller.store.follower import Follower
from controller.store.metrics import ETCD_WATCH_RESTARTS

if TYPE_CHECKING:
    from controller.mesos.backend import LaunchRequest
    from controller.store import Store

log = structlog.get_logger("docket.secrets")

SECRET_INVALID = "SecretInvalid"
"""A Secret exists but cannot be used (it does not decode, or a value holds a NUL byte)."""



@dataclasses.dataclass(frozen=True)
class _Entry:
    """One Secret: its values, or why it is invalid (a message naming fields, never values).
    No repr of values: an entry may end up in a traceback."""

    values: dict[str, bytes] = dataclasses.field(default_factory=dict, repr=False)
    problem: str = ""
    mod_revision: int = 0


def templates(obj: Any) -> Iterator[tuple[str, TaskTemplate]]:
    """(JSON path, template) of every task template of an object of any kind."""
    spec = getattr(obj, "spec", obj)
    template = getattr(spec, "template", None)
    if isinstance(template, TaskTemplate):
        yield "spec.template", template
    job_template = getattr(spec, "job_template", None)
    inner = getattr(getattr(job_template, "spec", None), "template", None)
    if isinstance(inner, TaskTemplate):
        yield "spec.jobTemplate.spec.template", inner


class SecretCache(Follower):
    """Every Secret under `<prefix>/secrets/`, in memory (see the module docstring)."""

    def __init__(self, store: Store, *, on_change: Callable[[str], None] | None = None,
                 max_backoff: float = 2.0) -> None:
        super().__init__(store, store.keys.secrets_root(), "secrets", max_backoff=max_backoff)
        self._root = self._prefix
        self._on_change = on_change
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], _Entry] = {}
        self._next_revision = 0

    @property
    def next_revision(self) -> int:
        """The first etcd revision not applied yet (tests wait until it passes the head)."""
        with self._lock:
            return self._next_revision

    # --- admission ------------------------------------------------------------------------
    def check(self, kind: str, namespace: str, name: str, spec: Any) -> Denial | None:
        for path, template in templates(spec):
            for var, ref in template.secret_env.items():
                field = f"{path}.env.{var}.valueFrom.secretKeyRef"
                what = f"secret {namespace}/{ref.name}"
                with self._lock:
                    entry = self._secrets.get((namespace, ref.name))
                if entry is None:
                    return Denial(SECRET_NOT_FOUND, field, f"{what} does not exist")
                if entry.problem:
                    return Denial(SECRET_INVALID, field, f"{what} is invalid: {entry.problem}")
                value = entry.values.get(ref.key)
                if value is None:
                    return Denial(SECRET_NOT_FOUND, field, f"{what} has no key {ref.key}")
                if b"\0" in value:
                    return Denial(SECRET_INVALID, field,
                                  f"{what} key {ref.key} holds a NUL byte, which an "
                                  "environment variable cannot")
        return None

    def prepare(self, request: LaunchRequest) -> LaunchRequest:
        refs = request.template.secret_env
        if not refs:
            return request
        parts = parse_task_id(request.task_id)
        if parts is None:
            return request  # not Docket's: nothing of a namespace to read
        namespace = parts.owner.namespace
        values: dict[str, str] = {}
        with self._lock:
            for var, ref in refs.items():
                entry = self._secrets.get((namespace, ref.name))
                value = None if entry is None else entry.values.get(ref.key)
                if value is None:
                    # Left out: the backend refuses to build the task (module docstring).
                    log.warning("secret gone since admission; the launch will fail",
                                task_id=request.task_id, env=var, secret=ref.name,
                                key=ref.key, namespace=namespace)
                    continue
                values[var] = value.decode("utf-8", "surrogateescape")
        return dataclasses.replace(request, secret_env={**request.secret_env, **values})

    # --- the watch thread (controller/store/follower.py) ---------------------------------
    def _failed(self, exc: BaseException) -> None:
        ETCD_WATCH_RESTARTS.labels("disconnected").inc()
        if not is_transient(exc):
            log.warning("secrets watch failed; re-listing", error=type(exc).__name__)

    def _list(self) -> int:
        self._relist()
        return self.next_revision

    def _relist(self) -> None:
        items, revision = self._store.list_raw(self._root)
        fresh: dict[tuple[str, str], _Entry] = {}
        for key, value, mod, _create, _version in items:
            split = self._split(key)
            if split is not None:
                fresh[split] = self._decode(split, value, mod)
        with self._lock:
            old = self._secrets
            self._secrets = fresh
            self._next_revision = revision + 1
        first = not self._synced.is_set()
        self._synced.set()
        if not first:  # nothing was judged before the first list
            changed = {k[0] for k in old.keys() | fresh.keys()
                        if old.get(k, _Entry()).mod_revision
                        != fresh.get(k, _Entry()).mod_revision}
            self._notify(changed)

    def _on_response(self, response: Any) -> None:
        changed: set[str] = set()
        # Events of one transaction or one DeleteRange share a revision: the filter is the
        # revision reached before this response, and it moves once, after all of them.
        with self._lock:
            floor = self._next_revision
        last = floor - 1
        for ev in response.events:
            mod = int(ev.mod_revision)
            if mod < floor:
                continue
            last = max(last, mod)
            try:
                key = bytes(ev.key).decode()
            except UnicodeDecodeError:
                continue
            split = self._split(key)
            entry = (None if split is None or isinstance(ev, pyetcd.events.DeleteEvent)
                     else self._decode(split, bytes(ev.value), mod))
            with self._lock:
                if split is not None:
                    if entry is None:
                        self._secrets.pop(split, None)
                    else:
                        self._secrets[split] = entry
                    changed.add(split[0])
        with self._lock:
            self._next_revision = max(self._next_revision, last + 1)
        self._notify(changed)

    def _split(self, key: str) -> tuple[str, str] | None:
        return self._store.keys.split_secret(key)

    @staticmethod
    def _decode(split: tuple[str, str], value: bytes, mod: int) -> _Entry:
        namespace, name = split
        try:
            secret = decode_secret(value, namespace=namespace, name=name)
        except ObjectInvalid as exc:
            # The problems name fields and keys, never values (controller/api/secret.py).
            log.warning("invalid secret", namespace=namespace, secret=name, error=str(exc))
            return _Entry(problem=str(exc), mod_revision=mod)
        return _Entry(values=secret.values(), mod_revision=mod)

    def _notify(self, namespaces: set[str]) -> None:
        if self._on_change is None:
            return
        for namespace in sorted(namespaces):
            try:
                self._on_change(namespace)
            except Exception:  # a failing callback must not stop the watch
                log.exception("secret change callback failed", namespace=namespace)
