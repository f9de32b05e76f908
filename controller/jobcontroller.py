"""The Job controller: Job specs in etcd become tasks on Mesos, and what Mesos reports comes
back as execution records and status.

Wiring (docs/architecture.md §1, §6): an informer caches the Job specs and enqueues their keys;
worker threads take a key, read its status and execution records from etcd, ask the pure
planner (`controller.reconcile.plan_job`) what to do and hand the plan to the `Executor`, the
one place that writes and launches. A single event thread takes what the Mesos backend reports:
a status update is written into its execution record, THEN acknowledged (so Mesos resends it if
we die before it is recorded), THEN the owner's key is enqueued. Level-triggered: the update
only wakes the owner; what happens next depends on the records, never on the event.

Tasks are matched to objects by their id alone (`controller.reconcile.taskid`). An update
for a Docket task that has no execution record is an orphan — its object or incarnation is
gone, e.g. found by implicit reconciliation after a restart — and is killed. Updates for ids
in other formats belong to someone else: acknowledged and ignored.

`run_controller(settings, stop)` is the process-level entry point used by `docket run` and
`docket up`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from controller import metrics
from controller.api import ExecutionRecord, Job, JobStatus, encode_model
from controller.executor import MAX_TXN_OPS, Executor, Snapshot, StalePlan, fenced_commit
from controller.logs import object_logger
from controller.mesos.backend import (
    Disconnected,
    MesosBackend,
    MesosEvent,
    Subscribed,
    TaskLaunched,
    TaskUpdate,
)
from controller.reconcile import JobInput, Plan, parse_task_id, plan_job
from controller.records import RecordCache
from controller.runtime import Controller, Fence, Informer, ObjectKey, Result, WorkQueue
from controller.store import EtcdUnavailable, Expect, Put, Store, StoreError
from controller.updates import end_reason, is_failure, is_final, record_update

if TYPE_CHECKING:
    from controller.config import Settings

log = structlog.get_logger("docket.jobs")

UPDATE_BATCH = 500
# Keys a worker takes at once when several are waiting: planned one by one, their writes
# committed in shared etcd requests and their launches handed over together. Every extra
# thread waking for its own round trip waited for the interpreter lock in a busy process.
RECONCILE_BATCH = 50
GAUGE_SECONDS = 2.0
_STARTING = frozenset({"LAUNCHING", "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"})

PLURAL = "jobs"
KIND = "Job"

KnownTasks = Callable[[], Iterable[tuple[str, str | None]]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobController:
    """Reconciles Jobs. `make_backend(known_tasks)` builds the Mesos backend; `known_tasks`
    is what the backend reconciles explicitly on every (re)subscription."""

    def __init__(self, store: Store, make_backend: Callable[[KnownTasks], MesosBackend], *,
                 workers: int = 4, resync_seconds: float = 300.0,
                 clock: Callable[[], datetime] = utcnow,
                 fence: Callable[[], Fence | None] | None = None) -> None:
        self.store = store
        self._fence = fence
        self.now = clock
        self.backend = make_backend(self.known_tasks)
        self.informer = Informer(store, PLURAL, KIND, resync_seconds=resync_seconds)
        self.queue = WorkQueue(KIND)
        self.loop = Controller(KIND, self.queue, self.reconcile, workers=workers,
                               reconcile_many=self.reconcile_many, batch=RECONCILE_BATCH)
        self.records = RecordCache(store, PLURAL)
        self.executor = Executor(
            store, self.backend, on_launch=self._handed_over,
            on_launch_dropped=self._dropped,
            on_written=lambda snap, rev, recs, status: self.records.wrote(
                snap.namespace, snap.name, rev, recs, status), fence=fence)
        self.informer.enqueue_into(self.queue.add)
        self.framework_id: str | None = None
        self._subscribed = False
        # Launches handed to the backend and not yet sent to Mesos: the backend holds them, so
        # they are not reconciled (Mesos would answer GONE while they are about to launch).
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._events_thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.informer.start()
        self.loop.start()
        self.backend.start()
        self._events_thread = threading.Thread(target=self._pump, name="mesos-events",
                                               daemon=True)
        self._events_thread.start()
        threading.Thread(target=self._enqueue_leftovers, name="jobs-leftovers",
                         daemon=True).start()

    def stop(self) -> None:
        """Stop acting; the framework and its tasks stay up for the next instance."""
        self._stop.set()
        self.loop.stop()
        self.backend.stop()
        if self._events_thread is not None:
            self._events_thread.join(timeout=10)
        self.informer.stop()
        # A standby (or a deposed leader) reports no tasks: the leader's gauges count them.
        for state in metrics.TASK_STATES:
            metrics.TASKS_ACTIVE.labels(state).set(0)

    def ready(self) -> dict[str, bool]:
        return {"mesos": self._subscribed and self.backend.connected,
                "cache": self.informer.has_synced()}

    def _enqueue_leftovers(self) -> None:
        """Load every status and record into the cache; then enqueue the owners the informer
        will never mention: objects deleted while no controller ran still have status or
        records (and maybe running tasks)."""
        while not self._stop.is_set():
            try:
                self.records.load_all()
                break
            except EtcdUnavailable as exc:
                log.warning("cannot load status and records; retrying", error=str(exc))
                self._stop.wait(1.0)
            except StoreError as exc:
                # E.g. more records than one etcd response may carry: carry on reading each
                # object's records when it is reconciled.
                log.error("cannot load all status and records at once; reading them per "
                          "object", error=str(exc))
                break
        if not self.informer.wait_for_sync(3600) or self._stop.is_set():
            return
        for namespace, name in self.records.owners():
            if self.informer.get(namespace, name) is None:
                self.queue.add(ObjectKey(KIND, namespace, name))

    # --- reconcile ---------------------------------------------------------------------------
    def reconcile(self, key: Hashable) -> Result:
        outcome = self.reconcile_many([key])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def reconcile_many(self, keys: Sequence[Hashable]) -> list[Result | Exception]:
        """Reconcile several Jobs: each planned on its own, their writes committed together
        (`Executor.apply_many`). An outcome per key, in order: its Result or its error."""
        now = self.now()
        outcomes: list[Result | Exception] = [Result() for _ in keys]
        planned: list[tuple[Plan, Snapshot, Any]] = []
        where: list[tuple[int, str, str]] = []
        for i, key in enumerate(keys):
            assert isinstance(key, tuple)
            _kind, namespace, name = key
            try:
                plan, snap = self._plan(namespace, name, now)
            except Exception as exc:
                self.records.invalidate(namespace, name)
                outcomes[i] = exc
                continue
            planned.append((plan, snap, object_logger(KIND, namespace, name)))
            where.append((i, namespace, name))
        applied = self.executor.apply_many(planned, now)
        for (plan, _, logger), (i, namespace, name), outcome in zip(planned, where, applied,
                                                                     strict=True):
            if isinstance(outcome, StalePlan):
                self.records.invalidate(namespace, name)
                logger.debug("plan was stale; planning again", reason=str(outcome))
                outcomes[i] = Result(requeue=True)
            elif isinstance(outcome, Exception):
                self.records.invalidate(namespace, name)
                outcomes[i] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                if outcome.owner_data_deleted:
                    self.records.deleted(namespace, name)
                if plan.status is not None:
                    logger.info("status written",
                                phase=str(getattr(plan.status, "phase", "")))
                outcomes[i] = Result(requeue_after=plan.requeue_after)
        return outcomes

    def _plan(self, namespace: str, name: str, now: datetime) -> tuple[Plan, Snapshot]:
        cached = self.informer.get(namespace, name)
        known = self.records.get(namespace, name)
        status = known.status
        if status is not None and not isinstance(status, JobStatus):
            raise StoreError(f"status of job {namespace}/{name} is not a JobStatus")
        job: Any = None
        uid = status.uid if status is not None else None
        spec_revision = 0
        if cached is not None:
            job = getattr(cached, "object", None)
            uid = getattr(cached, "uid", None)
            spec_revision = cached.mod_revision
            if not isinstance(job, Job) and cached.valid:
                job = None
        plan = plan_job(JobInput(namespace, name, job, spec_revision, uid, status,
                                 [rec for rec, _ in known.executions.values()], now))
        return plan, Snapshot(PLURAL, namespace, name, known.status_revision, known.executions)

    def _handed_over(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.update(task_ids)

    def _dropped(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.difference_update(task_ids)

    # --- Mesos events ------------------------------------------------------------------------
    def known_tasks(self) -> list[tuple[str, str | None]]:
        """Every task our records say may exist (LAUNCHING intents included), except launches
        this process still holds: called by the backend on each subscription."""
        records: list[ExecutionRecord] = []
        try:
            items, _ = self.store.list_raw(f"{self.store.keys.prefix}/executions/")
            for _key, value, *_ in items:
                try:
                    records.append(ExecutionRecord.model_validate_json(value))
                except ValueError:
                    continue
        except EtcdUnavailable:
            raise
        except StoreError as exc:
            log.warning("cannot list every record at once; reading them per object",
                        error=str(exc))
            owners = {(o.namespace, o.name) for o in self.informer.list()}
            owners.update(self.records.owners())
            for namespace, name in owners:
                known = self.records.get(namespace, name)
                records.extend(rec for rec, _ in known.executions.values())
        with self._lock:
            pending = set(self._pending)
        return [(rec.task_id, rec.agent_id) for rec in records
                if not is_final(rec.state) and rec.task_id not in pending]

    def _pump(self) -> None:
        next_gauges = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_gauges:
                self._update_gauges()
                next_gauges = time.monotonic() + GAUGE_SECONDS
            try:
                event = self.backend.events.get(timeout=0.2)
            except queue.Empty:
                continue
            # Take what else is waiting: updates are recorded in batches (one etcd transaction
            # for many), in arrival order, and other events are handled between batches.
            updates: list[TaskUpdate] = []
            while True:
                if isinstance(event, TaskUpdate):
                    updates.append(event)
                else:
                    self._flush(updates)
                    updates = []
                    self._guarded(self._on_event, event)
                if len(updates) >= UPDATE_BATCH:
                    break
                try:
                    event = self.backend.events.get_nowait()
                except queue.Empty:
                    break
            self._flush(updates)

    def _update_gauges(self) -> None:
        counts = dict.fromkeys(metrics.TASK_STATES, 0)
        for rec in self.records.all_executions():
            state = rec.state.removeprefix("TASK_").lower()
            if state in counts:
                counts[state] += 1
            elif rec.state == "LAUNCHING":
                counts["staging"] += 1
        for state, count in counts.items():
            metrics.TASKS_ACTIVE.labels(state).set(count)

    @staticmethod
    def _guarded(fn: Callable[[Any], None], arg: Any) -> None:
        try:
            fn(arg)
        except Exception:
            # An update not acknowledged is sent again by Mesos.
            log.exception("handling a mesos event failed", event=repr(arg)[:300])

    def _on_event(self, event: MesosEvent) -> None:
        if isinstance(event, TaskUpdate):
            self._flush([event])
        elif isinstance(event, TaskLaunched):
            with self._lock:
                self._pending.discard(event.task_id)
        elif isinstance(event, Subscribed):
            self.framework_id = event.framework_id
            self._subscribed = True
        elif isinstance(event, Disconnected):
            log.warning("mesos disconnected", reason=event.reason)

    def _flush(self, updates: list[TaskUpdate]) -> None:
        """Record a batch of updates: one compare-and-swap transaction for all the records
        they change, then acknowledge them, then wake their owners. A conflict (a worker wrote
        one of the records meanwhile) sends the batch through one by one, read afresh."""
        if not updates:
            return
        try:
            self._record(updates)
        except StalePlan:
            for update in updates:
                self._guarded(lambda u: self._record([u], fresh=True), update)
        except Exception:
            log.exception("recording a batch of mesos updates failed", count=len(updates))

    def _record(self, updates: list[TaskUpdate], fresh: bool = False) -> None:
        keys = self.store.keys
        now = self.now()
        changed: dict[str, tuple[ExecutionRecord, int, ObjectKey]] = {}
        done: list[tuple[TaskUpdate, ObjectKey | None]] = []
        for update in updates:
            parts = parse_task_id(update.task_id)
            if parts is None or parts.owner.kind != KIND:
                log.info("ignoring update of a task that is not Docket's",
                         task_id=update.task_id, state=update.state)
                done.append((update, None))
                continue
            with self._lock:
                self._pending.discard(update.task_id)
            owner = ObjectKey(KIND, parts.owner.namespace, parts.owner.name)
            key = keys.execution(owner.namespace, owner.name, update.task_id)
            if key in changed:
                record, revision, _ = changed[key]
            else:
                if fresh:
                    self.records.invalidate(owner.namespace, owner.name)
                found = self.records.execution(owner.namespace, owner.name, update.task_id)
                if found is None:
                    # Killing is drastic: make sure with etcd itself, not just the cache.
                    self.records.invalidate(owner.namespace, owner.name)
                    found = self.records.execution(owner.namespace, owner.name,
                                                   update.task_id)
                if found is None:
                    self._orphan(update, object_logger(KIND, owner.namespace, owner.name,
                                                       task_id=update.task_id))
                    continue
                record, revision = found
            new = record_update(record, update, self.framework_id, now)
            if new is not record:
                changed[key] = (new, revision, owner)
            # A task going on as planned changes no plan (its timeout wake-up is already
            # queued, and the periodic resync covers the rest): only wake the owner for
            # endings, kills under way and anything unusual.
            routine = (record.state in _STARTING and new.state in _STARTING
                       and new.kill_reason is None)
            done.append((update, None if routine else owner))
        if changed:
            items = list(changed.items())
            for i in range(0, len(items), MAX_TXN_OPS):
                chunk = items[i:i + MAX_TXN_OPS]
                try:
                    revision = fenced_commit(
                        self.store, self._fence,
                        [Put(k, encode_model(rec)) for k, (rec, _, _) in chunk],
                        [Expect(k, rev) for k, (_, rev, _) in chunk])
                except Exception:
                    for _, (_, _, owner) in chunk:
                        self.records.invalidate(owner.namespace, owner.name)
                    raise
                for _, (rec, _, owner) in chunk:
                    self.records.wrote(owner.namespace, owner.name, revision, [rec])
                    self._count(rec, owner)
        owners: set[ObjectKey] = set()
        for update, woken in done:
            self.backend.acknowledge(update)
            if woken is not None:
                if update.terminal:
                    self.backend.cancel(update.task_id)  # an answer GONE to a launch held
                owners.add(woken)
        for owner in owners:
            self.queue.add(owner)

    @staticmethod
    def _count(rec: ExecutionRecord, owner: ObjectKey) -> None:
        log.debug("task update recorded", kind=KIND, namespace=owner.namespace,
                  name=owner.name, task_id=rec.task_id, state=rec.state, reason=rec.reason)
        if is_final(rec.state):
            metrics.TASKS_FINISHED.labels(end_reason(rec)).inc()
            if is_failure(rec):
                metrics.TASKS_FAILED.labels(end_reason(rec)).inc()

    def _orphan(self, update: TaskUpdate, logger: Any) -> None:
        if not update.terminal:
            logger.warning("killing orphan task: its object or incarnation is gone",
                           state=update.state)
            self.backend.kill(update.task_id, update.agent_id)
        self.backend.acknowledge(update)


# --- the process ----------------------------------------------------------------------------
def run_controller(settings: Settings, stop: threading.Event, *,
                   on_ready: Callable[[JobController, int], None] | None = None,
                   lease_ttl: int = 15) -> int:
    """Run the controller until `stop` is set; 0 after a clean shutdown. Call it from the main
    thread the first time (pymesos installs a signal handler on import). `on_ready(jobs,
    metrics_port)` is called once this process leads and everything is started (tests,
    `docket up`).

    Only the holder of the controller lease in etcd acts (a second instance waits as a
    standby), and every write it makes is fenced on that lease: a process that lost it cannot
    write, even if it does not know yet. Losing the lease stops the controller (the framework
    stays registered) until it is won again."""
    import os
    import socket

    from controller.logs import configure
    from controller.mesos.adapter import MesosAdapter, MesosConfig
    from controller.metrics import MetricsServer
    from controller.runtime import LeaderElector

    configure(settings.log_level, settings.log_format)
    store = Store(settings.etcd_endpoints, prefix=settings.key_prefix)
    role = None if settings.framework_role == "*" else settings.framework_role
    config = MesosConfig(master=settings.mesos_master, name=settings.framework_name,
                         role=role, principal=settings.framework_principal,
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

    elector = LeaderElector(store, store.keys.controller("leader"),
                            f"{socket.gethostname()}:{os.getpid()}", ttl=lease_ttl)

    def make() -> JobController:
        return JobController(store, lambda known: MesosAdapter(config, _FrameworkIds(), known),
                             workers=settings.workers, resync_seconds=settings.resync_seconds,
                             fence=lambda: elector.fence)

    current: list[JobController] = []

    def check(part: str) -> bool:
        jobs = current[0] if current else None
        return jobs is not None and jobs.ready()[part]

    server = MetricsServer(settings.metrics_address)
    server.readiness.register("etcd", lambda: _etcd_ok(store))
    server.readiness.register("leader", elector.is_leader)
    server.readiness.register("mesos", lambda: check("mesos"))
    server.readiness.register("caches", lambda: check("cache"))
    server.start()
    log.info("controller starting", etcd=settings.etcd_endpoints, mesos=settings.mesos_master)
    elector.start()
    announced = False
    try:
        while not stop.wait(0.1):
            leading = elector.is_leader()
            if leading and not current:
                log.info("leading: starting the job controller")
                jobs = make()
                jobs.start()
                current.append(jobs)
                if on_ready is not None and not announced:
                    announced = True
                    on_ready(jobs, server.port)
            elif not leading and current:
                log.warning("not leading any more: stopping the job controller")
                current.pop().stop()
    finally:
        log.info("controller stopping")
        if current:
            current.pop().stop()
        elector.stop()
        server.stop()
        store.close()
    return 0


def _etcd_ok(store: Store) -> bool:
    raw = store.client.raw
    store.client.call("status", "", raw.status, retry_seconds=0)
    return True
