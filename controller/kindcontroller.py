"""One kind's controller: its informer, workqueue, worker threads and record cache, around the
kind's pure planner (docs/architecture.md §1, §6).

An informer caches the kind's specs and enqueues their keys; worker threads take ready keys in
batches, build each object's planner input from the cache (`KindDef.plan`), and hand the plans
to the shared `Executor`, which commits their writes together (group commit) before anything
reaches Mesos. Level-triggered: an event only enqueues a key; what happens next depends on the
state, never on the event.

Objects deleted while no controller ran have status or records but no spec, so the informer
never mentions them: after the first full load of the records, those owners are enqueued too
and their planner cleans up after them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from typing import Any

import structlog

from controller.admission import ADMIT_ALL, AdmissionGate
from controller.executor import Executor, Snapshot, StalePlan
from controller.logs import object_logger
from controller.reconcile import Plan
from controller.records import RecordCache
from controller.registry import KindDef, PlanRequest, Related
from controller.runtime import Controller, Informer, ObjectKey, Result, WorkQueue
from controller.store import EtcdUnavailable, Store, StoreError

log = structlog.get_logger("docket.kinds")

# Keys a worker takes at once when several are waiting: planned one by one, their writes
# committed in shared etcd requests and their launches handed over together. Every extra
# thread waking for its own round trip waited for the interpreter lock in a busy process.
RECONCILE_BATCH = 50


class KindController:
    def __init__(self, kind: KindDef, store: Store, executor: Executor, records: RecordCache,
                 *, clock: Callable[[], datetime], workers: int = 4,
                 resync_seconds: float = 300.0, related: Related | None = None,
                 on_status: Callable[[Any], None] | None = None, sources: Any = None,
                 admission: AdmissionGate = ADMIT_ALL,
                 throttled: Callable[[str, str, str], str | None] | None = None) -> None:
        self.kind = kind
        self.admission = admission
        self._throttled = throttled
        self.store = store
        self.executor = executor
        self.records = records
        self.now = clock
        self.related = related
        self.sources = sources
        # Told of every object whose status this controller wrote (its owner may care).
        self._on_status = on_status
        self.informer = Informer(store, kind.plural, kind.kind, resync_seconds=resync_seconds)
        self.queue = WorkQueue(kind.kind)
        self.loop = Controller(kind.kind, self.queue, self.reconcile, workers=workers,
                               reconcile_many=self.reconcile_many, batch=RECONCILE_BATCH)
        self.informer.enqueue_into(self.queue.add)
        self._stop = threading.Event()
        self._lifecycle = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, caches_synced: Callable[[float], bool] | None = None) -> None:
        """Start the informer now and the workers once `caches_synced` (by default: this
        kind's own informer) says every cache the planner reads is filled. Keys queued
        meanwhile wait: planned from a cache still being filled, an object not listed yet
        would look deleted, and its tasks or children would be killed."""
        synced = caches_synced or self.informer.wait_for_sync
        self.informer.start()
        threading.Thread(target=self._start_when_synced, args=(synced,),
                         name=f"{self.kind.plural}-start", daemon=True).start()

    def _start_when_synced(self, synced: Callable[[float], bool]) -> None:
        while not self._stop.is_set():
            if synced(1.0):
                break
        with self._lifecycle:
            if self._stop.is_set():
                return  # stopped before the caches filled: no worker may start now
            self.loop.start()
        self._enqueue_leftovers()

    def stop(self) -> None:
        with self._lifecycle:
            self._stop.set()
        self.loop.stop()
        self.informer.stop()

    def synced(self) -> bool:
        return self.informer.has_synced()

    def wake(self, namespace: str, name: str) -> None:
        self.queue.add(ObjectKey(self.kind.kind, namespace, name))

    def _enqueue_leftovers(self) -> None:
        """Load every status and record of the kind into the cache; then enqueue the owners
        the informer will never mention: objects deleted while no controller ran still have
        status or records (and maybe running tasks)."""
        while not self._stop.is_set():
            try:
                self.records.load_all()
                break
            except EtcdUnavailable as exc:
                log.warning("cannot load status and records; retrying", kind=self.kind.kind,
                            error=str(exc))
                self._stop.wait(1.0)
            except StoreError as exc:
                # E.g. more records than one etcd response may carry: carry on reading each
                # object's records when it is reconciled.
                log.error("cannot load all status and records at once; reading them per "
                          "object", kind=self.kind.kind, error=str(exc))
                break
        if not self.informer.wait_for_sync(3600) or self._stop.is_set():
            return
        for namespace, name in self.records.owners():
            if self.informer.get(namespace, name) is None:
                self.wake(namespace, name)

    # --- reconcile ---------------------------------------------------------------------------
    def reconcile(self, key: Hashable) -> Result:
        outcome = self.reconcile_many([key])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def reconcile_many(self, keys: Sequence[Hashable]) -> list[Result | Exception]:
        """Reconcile several objects: each planned on its own, their writes committed together
        (`Executor.apply_many`). An outcome per key, in order: its Result or its error."""
        now = self.now()
        outcomes: list[Result | Exception] = [Result() for _ in keys]
        planned: list[tuple[Plan, Snapshot, Any]] = []
        where: list[tuple[int, str, str]] = []
        before: list[Any] = []
        for i, key in enumerate(keys):
            assert isinstance(key, tuple)
            _kind, namespace, name = key
            try:
                plan, snap, old_status = self._plan(namespace, name, now)
            except Exception as exc:
                self.records.invalidate(namespace, name)
                outcomes[i] = exc
                continue
            planned.append((plan, snap, object_logger(self.kind.kind, namespace, name)))
            where.append((i, namespace, name))
            before.append(old_status)
        applied = self.executor.apply_many(planned, now)
        for (plan, _, logger), (i, namespace, name), old_status, outcome in zip(
                planned, where, before, applied, strict=True):
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
                    if self.kind.status_written is not None:
                        self.kind.status_written(namespace, name, old_status, None)
                if outcome.forgotten:
                    self.records.forgot(namespace, name, outcome.forgotten)
                if plan.status is not None and self.kind.status_written is not None:
                    self.kind.status_written(namespace, name, old_status, plan.status)
                if plan.status is not None:
                    logger.info("status written",
                                phase=str(getattr(plan.status, "phase", "")))
                    cached = self.informer.get(namespace, name)
                    if (cached is not None and self._on_status is not None
                            and self.kind.owner_cares(plan.status)):
                        self._on_status(cached)
                if self.kind.observe is not None:
                    for observation in plan.observations:
                        self.kind.observe(observation)
                # A launch cancelled before it reached Mesos ended here, with no update to
                # come and wake the object: plan it again at once (a deleted Job then cleans up).
                outcomes[i] = Result(requeue_after=0.0 if outcome.cancelled
                                     else plan.requeue_after)
        return outcomes

    def _plan(self, namespace: str, name: str, now: datetime
              ) -> tuple[Plan, Snapshot, Any]:
        known = self.records.get(namespace, name)
        cached = self.informer.get(namespace, name)
        spec = getattr(cached, "object", None) if cached is not None and cached.valid else None
        denial = (self.admission.check(self.kind.kind, namespace, name, spec)
                  if spec is not None else None)
        request = PlanRequest(self.kind.kind, namespace, name, cached, known, now,
                              **({"related": self.related} if self.related else {}),
                              sources=self.sources, denial=denial, keys=self.store.keys,
                              throttled=self._throttled(self.kind.kind, namespace, name)
                              if self._throttled is not None else None)
        plan = self.kind.plan(request)
        return plan, Snapshot(self.kind.plural, namespace, name, known.status_revision,
                              known.executions), known.status
