"""The Job controller: Job specs in etcd become tasks on Mesos, and what Mesos reports comes
back as execution records and status.

Wiring (DESIGN.md §3): an informer caches the Job specs and enqueues their keys; worker threads
take a key, read its status and execution records from etcd, ask the pure planner
(`controller.reconcile.plan_job`) what to do and hand the plan to the `Executor`, the one
place that writes and launches. A single event thread takes what the Mesos backend reports:
a status update is written into its execution record, THEN acknowledged (so Mesos resends it
if we die before it is recorded), THEN the owner's key is enqueued. Level-triggered: the
update only wakes the owner; what happens next depends on the records, never on the event.

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
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from controller import metrics
from controller.api import ExecutionRecord, Job, JobStatus
from controller.executor import Executor, Snapshot, StalePlan
from controller.logs import object_logger
from controller.mesos.backend import (
    Disconnected,
    MesosBackend,
    MesosEvent,
    Subscribed,
    TaskLaunched,
    TaskUpdate,
)
from controller.reconcile import JobInput, parse_task_id, plan_job
from controller.runtime import Controller, Informer, ObjectKey, Result, WorkQueue
from controller.store import Conflict, Store, StoreError
from controller.updates import end_reason, is_final, record_update

if TYPE_CHECKING:
    from controller.config import Settings

log = structlog.get_logger("docket.jobs")

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
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = clock
        self.backend = make_backend(self.known_tasks)
        self.informer = Informer(store, PLURAL, KIND, resync_seconds=resync_seconds)
        self.queue = WorkQueue(KIND)
        self.loop = Controller(KIND, self.queue, self.reconcile, workers=workers)
        self.executor = Executor(store, self.backend, on_launch=self._handed_over)
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

    def ready(self) -> dict[str, bool]:
        return {"mesos": self._subscribed and self.backend.connected,
                "cache": self.informer.has_synced()}

    def _enqueue_leftovers(self) -> None:
        """Objects deleted while no controller ran still have status or records (and maybe
        running tasks): the informer never sees them, so list them once."""
        if not self.informer.wait_for_sync(3600) or self._stop.is_set():
            return
        try:
            owners = set(self.store.list_statuses(PLURAL))
            items, _ = self.store.list_raw(f"{self.store.keys.prefix}/executions/")
        except StoreError as exc:
            log.warning("cannot list leftover records", error=str(exc))
            return
        head = len(f"{self.store.keys.prefix}/executions/")
        for key, *_ in items:
            parts = key[head:].split("/")
            if len(parts) == 3:
                owners.add((parts[0], parts[1]))
        for namespace, name in owners:
            self.queue.add(ObjectKey(KIND, namespace, name))

    # --- reconcile ---------------------------------------------------------------------------
    def reconcile(self, key: Hashable) -> Result:
        assert isinstance(key, tuple)
        _kind, namespace, name = key
        logger = object_logger(KIND, namespace, name)
        cached = self.informer.get(namespace, name)
        stored_status = self.store.get_status(PLURAL, namespace, name)
        records = self.store.list_executions(namespace, name)
        status = stored_status.status if stored_status is not None else None
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
        now = self.now()
        plan = plan_job(JobInput(namespace, name, job, spec_revision, uid, status,
                                 [e.record for e in records], now))
        snap = Snapshot(PLURAL, namespace, name,
                        stored_status.mod_revision if stored_status is not None else 0,
                        {e.record.task_id: (e.record, e.mod_revision) for e in records})
        try:
            self.executor.apply(plan, snap, now, logger=logger)
        except StalePlan as exc:
            logger.debug("plan was stale; planning again", reason=str(exc))
            return Result(requeue=True)
        if plan.status is not None:
            logger.info("status written", phase=str(getattr(plan.status, "phase", "")))
        return Result(requeue_after=plan.requeue_after)

    def _handed_over(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.update(task_ids)

    # --- Mesos events ------------------------------------------------------------------------
    def known_tasks(self) -> list[tuple[str, str | None]]:
        """Every task our records say may exist (LAUNCHING intents included), except launches
        this process still holds: called by the backend on each subscription."""
        items, _ = self.store.list_raw(f"{self.store.keys.prefix}/executions/")
        with self._lock:
            pending = set(self._pending)
        out = []
        for _key, value, *_ in items:
            try:
                rec = ExecutionRecord.model_validate_json(value)
            except ValueError:
                continue
            if not is_final(rec.state) and rec.task_id not in pending:
                out.append((rec.task_id, rec.agent_id))
        return out

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.backend.events.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._on_event(event)
            except Exception:
                # Not acknowledged: Mesos sends the update again.
                log.exception("handling a mesos event failed", event=repr(event)[:300])

    def _on_event(self, event: MesosEvent) -> None:
        if isinstance(event, TaskUpdate):
            self._on_update(event)
        elif isinstance(event, TaskLaunched):
            with self._lock:
                self._pending.discard(event.task_id)
        elif isinstance(event, Subscribed):
            self.framework_id = event.framework_id
            self._subscribed = True
        elif isinstance(event, Disconnected):
            log.warning("mesos disconnected", reason=event.reason)

    def _on_update(self, update: TaskUpdate) -> None:
        parts = parse_task_id(update.task_id)
        if parts is None or parts.owner.kind != KIND:
            log.info("ignoring update of a task that is not Docket's", task_id=update.task_id,
                     state=update.state)
            self.backend.acknowledge(update)
            return
        with self._lock:
            self._pending.discard(update.task_id)
        owner = parts.owner
        logger = object_logger(KIND, owner.namespace, owner.name, task_id=update.task_id)
        key = self.store.keys.execution(owner.namespace, owner.name, update.task_id)
        for _ in range(10):
            found = self.store.get_raw(key)
            if found is None:
                self._orphan(update, logger)
                return
            record = ExecutionRecord.model_validate_json(found[0])
            new = record_update(record, update, self.framework_id, self.now())
            if new is record:
                break
            try:
                self.store.put_execution(owner.namespace, owner.name, new,
                                         expected_mod_revision=found[1])
            except Conflict:
                continue  # a worker wrote the record meanwhile (a kill reason): merge again
            logger.info("task update recorded", state=update.state, reason=update.reason)
            if is_final(new.state):
                metrics.TASKS_FINISHED.labels(end_reason(new)).inc()
                if new.state != "TASK_FINISHED":
                    metrics.TASKS_FAILED.labels(end_reason(new)).inc()
            break
        else:
            raise StoreError(f"could not record {update.state} of {update.task_id}")
        self.backend.acknowledge(update)
        if update.terminal:
            self.backend.cancel(update.task_id)  # an answer GONE to a launch still held
        self.queue.add(ObjectKey(KIND, owner.namespace, owner.name))

    def _orphan(self, update: TaskUpdate, logger: Any) -> None:
        if not update.terminal:
            logger.warning("killing orphan task: its object or incarnation is gone",
                           state=update.state)
            self.backend.kill(update.task_id, update.agent_id)
        self.backend.acknowledge(update)


# --- the process ----------------------------------------------------------------------------
def run_controller(settings: Settings, stop: threading.Event, *,
                   on_ready: Callable[[JobController, int], None] | None = None) -> int:
    """Run the controller until `stop` is set; 0 after a clean shutdown. Call it from the main
    thread the first time (pymesos installs a signal handler on import). `on_ready(jobs,
    metrics_port)` is called once everything is started (tests, `docket up`)."""
    from controller.logs import configure
    from controller.mesos.adapter import MesosAdapter, MesosConfig
    from controller.metrics import MetricsServer

    configure(settings.log_level, settings.log_format)
    store = Store(settings.etcd_endpoints, prefix=settings.key_prefix)
    role = None if settings.framework_role == "*" else settings.framework_role
    config = MesosConfig(master=settings.mesos_master, name=settings.framework_name,
                         role=role, principal=settings.framework_principal,
                         user=settings.framework_user,
                         failover_timeout_seconds=settings.failover_timeout,
                         refuse_seconds=settings.decline_refuse_seconds)

    class _FrameworkIds:
        def get(self) -> str | None:
            return store.get_framework_id()

        def set(self, framework_id: str) -> None:
            store.put_framework_id(framework_id)

    jobs = JobController(store, lambda known: MesosAdapter(config, _FrameworkIds(), known),
                         workers=settings.workers, resync_seconds=settings.resync_seconds)
    server = MetricsServer(settings.metrics_address)
    server.readiness.register("etcd", lambda: _etcd_ok(store))
    server.readiness.register("mesos", lambda: jobs.ready()["mesos"])
    server.readiness.register("caches", lambda: jobs.ready()["cache"])
    server.start()
    log.info("controller starting", etcd=settings.etcd_endpoints, mesos=settings.mesos_master)
    jobs.start()
    try:
        if on_ready is not None:
            on_ready(jobs, server.port)
        stop.wait()
    finally:
        log.info("controller stopping")
        jobs.stop()
        server.stop()
        store.close()
    return 0


def _etcd_ok(store: Store) -> bool:
    raw = store.client.raw
    store.client.call("status", "", raw.status, retry_seconds=0)
    return True
