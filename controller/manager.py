"""The controller process: one Mesos framework, one task-event pump, one executor, and a
controller per kind (docs/architecture.md §1, §6).

`Manager` wires what every kind shares — the Mesos backend (one subscription, one FrameworkID),
the `TaskEventPump` that records and routes every task update, the `Executor` that applies
every plan with fenced writes — to one `KindController` per registered kind
(`controller/registry.py`). `run_controller` is the process around it, used by `docket run`
and `docket up`: metrics and health, leader election, the migration of old key layouts, and a
Manager started while this process leads and stopped when it does not.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from controller.admission import AdmissionGate, AdmissionSource
from controller.api import ExecutionRecord, StatusBase
from controller.clock import Clock, RealClock
from controller.executor import Executor, NotLeader, Snapshot, fenced_commit
from controller.kindcontroller import KindController
from controller.mesos.backend import LaunchRequest, MesosBackend
from controller.policy import PolicyCache
from controller.policy_status import PolicyStatusWriter
from controller.pump import TaskEventPump
from controller.records import RecordCache
from controller.registry import KINDS, KindDef
from controller.runtime import Fence, Handlers
from controller.secrets import SecretCache
from controller.store import Put, Store, StoreError
from controller.throttles import Throttles

if TYPE_CHECKING:
    from controller.config import Settings

log = structlog.get_logger("docket.manager")

KnownTasks = Callable[[], Iterable[tuple[str, str | None]]]


def utcnow() -> datetime:
    return datetime.now(UTC)


TIME_FILE_ENV = "DOCKET_TEST_TIME_FILE"


class FileClock(RealClock):
    """The real clock, but for the wall clock: an RFC 3339 instant read from a file on every
    call (DOCKET_TEST_TIME_FILE). A seam for tests that drive a controller process through
    hours of schedule in seconds (and kill it in the middle), not a setting for operators: a
    controller on a false clock launches at false times."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.utcnow()  # a missing or unreadable file fails at start, not in a worker

    def utcnow(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text().strip())


def process_clock() -> Clock:
    """The clock of `docket run`: the machine's, unless DOCKET_TEST_TIME_FILE is set."""
    path = os.environ.get(TIME_FILE_ENV)
    if not path:
        return RealClock()
    log.warning("the controller's wall clock is read from a file (a test seam)", path=path)
    return FileClock(path)


class Manager:
    """Every kind's controller over one Mesos backend. `make_backend(known_tasks)` builds the
    backend; `known_tasks` is what it reconciles explicitly on every (re)subscription."""

    def __init__(self, store: Store, make_backend: Callable[[KnownTasks], MesosBackend], *,
                 kinds: Sequence[KindDef] = KINDS, workers: int = 4,
                 resync_seconds: float = 300.0, clock: Clock | None = None,
                 fence: Callable[[], Fence | None] | None = None,
                 redis_factory: Callable[[str, str], Any] | None = None) -> None:
        clock = clock or RealClock()
        self.clock = clock
        self.store = store
        self.records = {k.plural: RecordCache(store, k.plural) for k in kinds}
        self.controllers: dict[str, KindController] = {}
        self.pump = TaskEventPump(store, self.controllers, clock=clock.utcnow, fence=fence)
        self.backend = make_backend(self.pump.known_tasks)
        # Queue sources: a watch of every etcd queue's items (a new message wakes its Queue at
        # once) and the Redis lists, read and changed only through QueueSources.
        self.queue_items: Any = None
        self.sources: Any = None
        if any(k.kind == "Queue" for k in kinds):
            from controller.queues.etcd_items import EtcdQueueItems
            from controller.queues.sources import QueueSources

            self.queue_items = EtcdQueueItems(store, on_change=self._queue_changed,
                                              clock=clock.utcnow)
            self.sources = (
                QueueSources(store, self.queue_items, clock=clock.utcnow)
                if redis_factory is None else
                QueueSources(store, self.queue_items, clock=clock.utcnow,
                             redis_factory=redis_factory))
        # Admission (controller/admission.py): caches of what, beside its own spec, decides
        # whether an object may launch (the policy, the secrets it refers to), each checking
        # objects before they are planned and preparing launches on their way to Mesos.
        self.admission = AdmissionGate()
        self._launch_preparers: list[Callable[[LaunchRequest], LaunchRequest]] = []
        self._admission_sources: list[AdmissionSource] = []
        self.executor = Executor(store, self.backend, on_launch=self.pump.handed_over,
                                 on_launch_dropped=self.pump.dropped,
                                 on_written=self._written, fence=fence,
                                 run_source=self.sources.run_redis if self.sources else None,
                                 prepare_launch=self._launch_preparers)
        for kind in kinds:
            self.controllers[kind.kind] = KindController(
                kind, store, self.executor, self.records[kind.plural], clock=clock.utcnow,
                workers=workers, resync_seconds=resync_seconds, related=self,
                on_status=self._wake_owner,
                sources=self.sources if kind.kind == "Queue" else None,
                admission=self.admission, throttled=self._throttled_by)
        self._by_plural = {c.kind.plural: c for c in self.controllers.values()}
        # Children by owner, kept by the informers' handlers, so an owner finds its children
        # without scanning every object of their kind. A child created, changed or deleted,
        # or its status written, wakes its owner (a CronJob learns that its Job finished).
        self._children: dict[tuple[str, str, str, str], set[str]] = {}
        self._children_lock = threading.Lock()
        for controller in self.controllers.values():
            controller.informer.add_handlers(self._child_handlers(controller.kind.plural))
        # Admission sources, in the order they are asked (each module adds its own line here).
        self.policy = PolicyCache(store, on_change=self._policy_changed,
                                  roles_to=self.backend, objects=self._object)
        status_writer = PolicyStatusWriter(store, fence, clock.utcnow)
        self.policy.on_state = status_writer
        self.policy.last_valid = status_writer.last_valid
        self.add_admission(self.policy)
        self.add_admission(SecretCache(store, on_change=self.wake_namespace))
        # Throttles across objects (issue 16): judged by the offer matcher, counted from the
        # records, and told back to the planners of the objects they hold.
        self.throttles = Throttles(self.policy, self.controllers, self._wake_owner_key)
        set_throttle_source = getattr(self.backend, "set_throttle_source", None)
        if set_throttle_source is not None:
            set_throttle_source(self.throttles)

    def _child_handlers(self, plural: str) -> Handlers:
        def added(new: Any) -> None:
            self._child_changed(plural, None, new)

        def updated(old: Any, new: Any) -> None:
            self._child_changed(plural, old, new)

        def deleted(old: Any) -> None:
            self._child_changed(plural, old, None)

        return Handlers(on_add=added, on_update=updated, on_delete=deleted)

    def _child_changed(self, plural: str, old: Any, new: Any) -> None:
        with self._children_lock:
            for cached, present in ((old, False), (new, True)):
                for ref in _owner_refs(cached):
                    key = (plural, cached.namespace, ref.kind, ref.name)
                    names = self._children.setdefault(key, set())
                    if present:
                        names.add(cached.name)
                    else:
                        names.discard(cached.name)
                        if not names:
                            del self._children[key]
        if old is not None and new is not None and old.mod_revision == new.mod_revision:
            return  # a resync, not a change: the owner's own resync covers it
        for cached in (old, new):
            if cached is not None:
                self._wake_owner(cached)

    def _wake_owner(self, cached: Any) -> None:
        for ref in _owner_refs(cached):
            owner = self.controllers.get(ref.kind)
            if owner is not None:
                owner.wake(cached.namespace, ref.name)

    def owned(self, plural: str, namespace: str, owner_kind: str, owner_name: str
              ) -> list[tuple[Any, StatusBase | None]]:
        """The objects of `plural` in `namespace` whose owner reference names the owner, each
        with its status (registry.Related)."""
        controller = self._by_plural.get(plural)
        if controller is None:
            return []
        with self._children_lock:
            names = sorted(self._children.get((plural, namespace, owner_kind, owner_name), ()))
        out: list[tuple[Any, StatusBase | None]] = []
        for name in names:
            cached = controller.informer.get(namespace, name)
            if cached is not None:
                out.append((cached, controller.records.get(namespace, name).status))
        return out

    def add_admission(self, source: AdmissionSource) -> None:
        """Before `start`: a source whose `check` judges objects before they are planned and
        whose `prepare` completes their launches; the workers wait for it to sync."""
        self._admission_sources.append(source)
        self.admission.add(source.check)
        self._launch_preparers.append(source.prepare)

    def _object(self, kind: str, namespace: str, name: str) -> Any:
        """The decoded object as the informers hold it (a pool or throttle matching its
        labels), or None."""
        controller = self.controllers.get(kind)
        cached = controller.informer.get(namespace, name) if controller is not None else None
        return getattr(cached, "object", None)

    def _throttled_by(self, kind: str, namespace: str, name: str) -> str | None:
        throttles = getattr(self, "throttles", None)  # None while the manager is being built
        return throttles.throttled(kind, namespace, name) if throttles is not None else None

    def _wake_owner_key(self, owner: tuple[str, str, str]) -> None:
        controller = self.controllers.get(owner[0])
        if controller is not None:
            controller.wake(owner[1], owner[2])

    def _policy_changed(self) -> None:
        """A new policy in force: launches still waiting for an offer were prepared under the
        old one (their role, throttles, pool constraints) and may be denied now. They are
        taken back — cancelled, then reconciled, so Mesos answers TASK_UNKNOWN and they are
        written off as never launched (no failure) — and every object is planned again under
        the new policy. A launch already accepted runs as it was launched."""
        taken = [task_id for task_id in self.backend.pending_ids()
                 if self.backend.cancel(task_id)]
        if taken:
            self.pump.dropped(taken)
            self.backend.reconcile([(task_id, None) for task_id in taken])
            log.info("launches waiting for an offer taken back for the new policy",
                     launches=len(taken))
        self.wake_all()

    def wake_all(self) -> None:
        """Plan every object of every kind again (the policy changed)."""
        for controller in self.controllers.values():
            for cached in controller.informer.list():
                controller.wake(cached.namespace, cached.name)

    def wake_namespace(self, namespace: str) -> None:
        """Plan every object of a namespace again (one of its secrets changed)."""
        for controller in self.controllers.values():
            for cached in controller.informer.list():
                if cached.namespace == namespace:
                    controller.wake(cached.namespace, cached.name)

    def _written(self, snap: Snapshot, revision: int, records: Sequence[ExecutionRecord],
                 status: StatusBase | None) -> None:
        self.records[snap.plural].wrote(snap.namespace, snap.name, revision, records, status)

    def _queue_changed(self, namespace: str, name: str) -> None:
        controller = self.controllers.get("Queue")
        if controller is not None:
            controller.wake(namespace, name)

    def controller(self, kind: str) -> KindController:
        return self.controllers[kind]

    def _all_synced(self, timeout: float) -> bool:
        # Every kind reads other kinds' caches (a CronJob its Jobs), so no worker starts
        # before every informer has listed; nor before the queue items are (a Queue planned
        # from an empty cache would claim nothing, and count nothing pending).
        # Nor before the admission caches are: an object planned before the policy is read
        # would launch unchecked.
        return all(c.informer.wait_for_sync(timeout) for c in self.controllers.values()) and (
            self.queue_items is None or self.queue_items.wait_for_sync(timeout)) and all(
            s.wait_for_sync(timeout) for s in self._admission_sources)

    def start(self) -> None:
        for source in self._admission_sources:
            source.start()
        if self.queue_items is not None:
            self.queue_items.start()
        for controller in self.controllers.values():
            controller.start(self._all_synced)
        self.backend.start()
        self.pump.start(self.backend)

    def stop(self) -> None:
        """Stop acting; the framework and its tasks stay up for the next instance."""
        for controller in self.controllers.values():
            controller.loop.stop()
        self.backend.stop()
        self.pump.stop()
        for controller in self.controllers.values():
            controller.stop()
        if self.queue_items is not None:
            self.queue_items.stop()
        for source in self._admission_sources:
            source.stop()
        if self.sources is not None:
            self.sources.close()
            # A standby exports no queue gauges: the leader's are the truth.
            from controller import queue_metrics

            queue_metrics.forget_all()
        from controller import service_metrics

        service_metrics.forget_all()

    def ready(self) -> dict[str, bool]:
        return {"mesos": self.pump.subscribed and self.backend.connected,
                "cache": all(c.synced() for c in self.controllers.values())}


def _owner_refs(cached: Any) -> list[Any]:
    metadata = getattr(getattr(cached, "object", None), "metadata", None)
    return list(getattr(metadata, "owner_references", None) or ())


# --- the process ----------------------------------------------------------------------------
def run_controller(settings: Settings, stop: threading.Event, *,
                   on_ready: Callable[[Manager, int], None] | None = None,
                   lease_ttl: int | None = None) -> int:
    """Run the controller until `stop` is set; 0 after a clean shutdown. Call it from the main
    thread the first time (pymesos installs a signal handler on import). `on_ready(manager,
    metrics_port)` is called once this process leads and everything is started (tests,
    `docket up`).

    Only the holder of the controller lease in etcd acts (a second instance waits as a
    standby), and every write it makes is fenced on that lease: a process that lost it cannot
    write, even if it does not know yet. Losing the lease stops the controllers (the framework
    stays registered) until it is won again."""
    import socket

    from controller.config import ConfigError
    from controller.logs import configure
    from controller.mesos.adapter import MesosAdapter, MesosConfig
    from controller.mesos.secret import read_secret
    from controller.metrics import MetricsServer
    from controller.runtime import LeaderElector

    configure(settings.log_level, settings.log_format)
    try:
        security = settings.etcd_security()
    except ConfigError as exc:
        print(f"docket run: {exc}", file=sys.stderr)
        return 2
    store = Store(settings.etcd_endpoints, prefix=settings.key_prefix, security=security)
    role = None if settings.framework_role == "*" else settings.framework_role
    config = MesosConfig(master=settings.mesos_master, name=settings.framework_name,
                         role=role, principal=settings.framework_principal,
                         secret=read_secret(settings.framework_secret_file)
                         if settings.framework_secret_file else None,
                         user=settings.framework_user,
                         failover_timeout_seconds=settings.failover_timeout,
                         refuse_seconds=settings.decline_refuse_seconds,
                         reconcile_interval_seconds=settings.reconcile_seconds,
                         gpu_resources=settings.gpu_resources)

    class _FrameworkIds:
        def get(self) -> str | None:
            return store.get_framework_id()

        def set(self, framework_id: str) -> None:
            # Fenced like every other write: a deposed leader must not replace the id the
            # current leader registered with.
            fenced_commit(store, lambda: elector.fence,
                          [Put(store.keys.controller("framework-id"), framework_id.encode())])

    # The elector's own connection, without retries: its loop is the retry, and it must see
    # etcd come back at once rather than from inside a 30 s retry (runtime/leader.py).
    lease_store = Store(settings.etcd_endpoints, prefix=settings.key_prefix, retry_seconds=0,
                        security=security)
    elector = LeaderElector(lease_store, store.keys.controller("leader"),
                            f"{socket.gethostname()}:{os.getpid()}",
                            ttl=lease_ttl or settings.leader_lease_seconds)
    # Only a leader's calls are worth retrying: once it is not leading, a worker stuck in a
    # retry while etcd is away would hold up stopping this term (and starting the next).
    store.client.give_up = lambda: not elector.is_leader()

    clock = process_clock()

    def make() -> Manager:
        return Manager(store, lambda known: MesosAdapter(
                           config, _FrameworkIds(), known, clock=clock,
                           may_act=lambda: elector.fence is not None),
                       workers=settings.workers, resync_seconds=settings.resync_seconds,
                       clock=clock, fence=lambda: elector.fence)

    current: list[Manager] = []

    def check(part: str) -> bool:
        manager = current[0] if current else None
        return manager is not None and manager.ready()[part]

    server = MetricsServer(settings.metrics_address)
    server.readiness.register("etcd", lambda: _etcd_ok(store))
    server.readiness.register("leader", elector.is_leader)
    server.readiness.register("mesos", lambda: check("mesos"))
    server.readiness.register("caches", lambda: check("cache"))
    server.set_status_source(lambda: current[0] if current else None)
    server.start()
    log.info("controller starting", etcd=settings.etcd_endpoints, mesos=settings.mesos_master)
    elector.start()
    announced = False
    try:
        while not stop.wait(0.1):
            leading = elector.is_leader()
            if leading and not current:
                if not _migrated(store, elector):
                    continue
                log.info("leading: starting the controllers")
                manager = make()
                manager.start()
                current.append(manager)
                if on_ready is not None and not announced:
                    announced = True
                    on_ready(manager, server.port)
            elif not leading and current:
                log.warning("not leading any more: stopping the controllers")
                current.pop().stop()
    finally:
        log.info("controller stopping")
        if current:
            current.pop().stop()
        elector.stop()
        server.stop()
        lease_store.close()
        store.close()
    return 0


def _migrated(store: Store, elector: Any) -> bool:
    """Whether etcd is in the layout this code reads (moving what is not, as the leader)."""
    from controller.migrate import migrate_execution_keys

    try:
        migrate_execution_keys(store, lambda: elector.fence)
    except NotLeader:
        return False
    except StoreError as exc:
        log.warning("cannot migrate execution records yet; retrying", error=str(exc))
        return False
    return True


# /readyz must answer within a prober's timeout (Kubernetes' default is 1 s), whatever etcd
# does: a frozen etcd hangs a call for the client's whole timeout (5 s).
READYZ_ETCD_TIMEOUT = 0.5


def _etcd_ok(store: Store) -> bool:
    store.ping(READYZ_ETCD_TIMEOUT)
    return True
