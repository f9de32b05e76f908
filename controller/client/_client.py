"""`Client`: Docket's Python API over etcd, and task_processing's four runners on top of it.

The client knows etcd's key layout (docs/architecture.md §3) and nothing of Mesos, so it works
against any Docket deployment that it can reach etcd of. See the package docstring for a tour.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.api import (
    AnyObject,
    EtcdSource,
    ExecutionRecord,
    InvalidObject,
    Job,
    JobPhase,
    JobStatus,
    Kind,
    Queue,
    StatusBase,
    kind_for_model,
)
from controller.client.events import (
    Event,
    Selector,
    StatusEvent,
    Subscription,
    resolve_kind,
)
from controller.queues.etcd_push import ItemIds, PushIncomplete, push_items
from controller.store import Conflict, Store, StoredObject
from controller.store.client import EtcdSecurity, split_user

log = structlog.get_logger("docket.client")

KindRef = str | Kind | type[AnyObject]
"""A kind as the client's methods take it: "Job", "jobs", "job", the model class or a Kind."""

TERMINAL_PHASES = frozenset({JobPhase.SUCCEEDED, JobPhase.FAILED})
"""The phases in which a Job has ended: the runners return (or raise) on them."""


# --- errors ---------------------------------------------------------------------------------
class ClientError(Exception):
    """Base of every error the client raises on purpose (etcd's own failures are
    `controller.store.StoreError`s)."""


class NotFound(ClientError):
    """The object asked for does not exist."""


class ApplyConflict(ClientError):
    """`apply` lost a compare-and-swap: someone changed or created the object since it was
    read. Nothing was overwritten; read it again and decide."""


class JobFailed(ClientError):
    """A Job the runner waited for ended in phase Failed. `result` holds its final status and
    executions (`status` and `executions` are shortcuts)."""

    def __init__(self, result: JobResult) -> None:
        self.result = result
        self.status = result.status
        self.executions = result.executions
        failed = result.status.condition("Failed")
        why = f": {failed.reason} {failed.message}".rstrip() if failed else ""
        codes = sorted({r.exit_code for r in result.executions if r.exit_code})
        super().__init__(
            f"job {result.namespace}/{result.name} failed{why} "
            f"({result.status.failed} task failure(s), exit codes {codes or '-'})")


class JobDeleted(ClientError):
    """The Job a runner waited for was deleted before it ended."""


# --- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobResult:
    """How a Job ended: its final status and every execution record (ordered by index, then
    attempt), as read once the status said so."""

    job: Job
    status: JobStatus
    executions: list[ExecutionRecord]

    @property
    def namespace(self) -> str:
        return self.job.namespace

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def succeeded(self) -> bool:
        return self.status.phase == JobPhase.SUCCEEDED


@dataclass(eq=False)
class _Waiter:
    job: Job
    uid: int
    revision: int
    future: Future[JobResult]


@dataclass(eq=False)
class Handler:
    """An event handler registered with `Client.on`; `remove()` unregisters it."""

    predicate: Callable[[Event], bool]
    callback: Callable[[Event], object]
    loop: asyncio.AbstractEventLoop | None
    _client: Client = field(repr=False)

    def remove(self) -> None:
        """Stop calling this handler (a call already handed to the loop still runs)."""
        self._client._remove_handler(self)


def _what(kind: Kind, namespace: str, name: str) -> str:
    return f"{kind.singular} {namespace}/{name}"


# --- the client -----------------------------------------------------------------------------
class Client:
    """Docket's objects in etcd, typed, and the runners that submit work and wait for it.

    `Client(endpoints="127.0.0.1:2379", prefix="/docket")`; `endpoints` is "host:port" or a
    list of them (comma-separated in a string). `store` passes an existing `Store` instead
    (its prefix wins; the client then does not close it). Use as a context manager, or call
    `close()`: it stops the watcher thread and fails every runner still waiting.

    Thread-safe. The runners share one watch of the key prefix (started on first use) and a
    small thread pool, whatever the number of Jobs waited for.
    """

    def __init__(self, endpoints: str | Sequence[str] = "127.0.0.1:2379", *,
                 prefix: str = "/docket", timeout: float = 5.0, retry_seconds: float = 30.0,
                 store: Store | None = None, workers: int = 4, ca_cert: str | None = None,
                 cert: str | None = None, key: str | None = None, user: str | None = None,
                 password: str | None = None) -> None:
        if store is None:
            if isinstance(endpoints, str):
                endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
            # TLS and authentication as etcdctl's --cacert, --cert, --key, --user: `user` may
            # be "name:password".
            name, password = (None, password) if user is None else split_user(user, password)
            security = EtcdSecurity(ca_cert=ca_cert, cert=cert, key=key, user=name,
                                    password=password)
            self.store = Store(list(endpoints), prefix=prefix, timeout=timeout,
                               retry_seconds=retry_seconds, security=security)
            self._owns_store = True
        else:
            self.store, self._owns_store = store, False
        self._lock = threading.Lock()
        self._waiters: dict[tuple[str, str], list[_Waiter]] = {}
        self._handlers: list[Handler] = []
        self._subscription: Subscription | None = None
        self._dispatcher: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docket-client")
        self._closed = False
        self._item_ids = ItemIds()

    @property
    def prefix(self) -> str:
        """The etcd key prefix of this Docket deployment."""
        return self.store.keys.prefix

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the watcher, fail every pending runner future with ClientError, close etcd
        connections the client opened. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscription, self._subscription = self._subscription, None
            waiters = [w for ws in self._waiters.values() for w in ws]
            self._waiters.clear()
            self._handlers.clear()
        if subscription is not None:
            subscription.close()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5)
        for w in waiters:
            self._fail(w, ClientError(f"client closed while waiting for job "
                                      f"{w.job.namespace}/{w.job.name}"))
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._owns_store:
            self.store.close()

    # --- objects ------------------------------------------------------------------------------
    def apply(self, obj: AnyObject) -> int:
        """Create `obj` or update the stored object of its kind, namespace and name; the etcd
        revision of the write (the stored revision when nothing changed, as nothing is
        written then). Compare-and-swap on what was read: raises ApplyConflict when someone
        else wrote the object in between, never overwriting their change."""
        return self._apply(obj)[0]

    def _apply(self, obj: AnyObject) -> tuple[int, int]:
        """(mod_revision, create_revision) of the object as applied."""
        kind = kind_for_model(obj)
        if not obj.metadata.name:
            raise ValueError(f"a {kind.name} to apply needs metadata.name")
        what = _what(kind, obj.namespace, obj.name)
        existing = self.store.get(kind.plural, obj.namespace, obj.name)
        if existing is not None and existing.object == obj:
            return existing.mod_revision, existing.create_revision
        expected = 0 if existing is None else existing.mod_revision
        try:
            revision = self.store.put_object(obj, expected_mod_revision=expected)
        except Conflict:
            raise ApplyConflict(
                f"{what} was {'created' if existing is None else 'changed'} by someone else "
                "while it was applied; nothing was overwritten") from None
        return revision, revision if existing is None else existing.create_revision

    def get(self, kind: KindRef, namespace: str, name: str) -> AnyObject | None:
        """The object, or None if there is none. Raises ClientError when the stored document
        is invalid (its message names every problem)."""
        k = resolve_kind(kind)
        stored = self.store.get(k.plural, namespace, name)
        return None if stored is None else self._valid(k, stored)

    @staticmethod
    def _valid(kind: Kind, stored: StoredObject) -> AnyObject:
        if isinstance(stored.object, InvalidObject):
            raise ClientError(f"{_what(kind, stored.namespace, stored.name)} is stored but "
                              f"invalid: {stored.object.message}")
        return stored.object

    def list(self, kind: KindRef, namespace: str | None = None) -> builtins.list[AnyObject]:
        """Every object of a kind (in one namespace, or all), by namespace then name. Objects
        whose stored document is invalid are left out (`docket get` shows them)."""
        k = resolve_kind(kind)
        items, _ = self.store.list(k.plural)
        return [s.object for s in items if not isinstance(s.object, InvalidObject)
                and (namespace is None or s.namespace == namespace)]

    def delete(self, kind: KindRef, namespace: str, name: str) -> bool:
        """Delete the object; True if it existed. The controller then kills its tasks and
        removes its status and executions (a CronJob's Jobs go with it)."""
        k = resolve_kind(kind)
        return self.store.delete_object(k.plural, namespace, name)

    def status(self, kind: KindRef, namespace: str, name: str) -> StatusBase | None:
        """The status the controller wrote (JobStatus, CronJobStatus, QueueStatus or
        ServiceStatus), or None before the controller has seen the object."""
        k = resolve_kind(kind)
        found = self.store.get_status(k.plural, namespace, name)
        return None if found is None else found.status

    def executions(self, kind: KindRef, namespace: str, name: str
                   ) -> builtins.list[ExecutionRecord]:
        """Every execution record of the object, one per task attempt, by index then
        attempt. (A Queue's records of finished batches are removed once counted.)"""
        k = resolve_kind(kind)
        found = self.store.list_executions(k.plural, namespace, name)
        return sorted((e.record for e in found), key=lambda r: (r.index, r.attempt))

    # Task output: `docket logs` reads it through the agents' /files API; the client has no
    # `logs` method (it would need Mesos, and the client stays etcd-only).

    def push(self, namespace: str, queue: str, messages: Iterable[bytes | str]) -> int:
        """Add messages (str as UTF-8) to a Queue's source, in order; how many were pushed.

        etcd-backed Queues: each message becomes a key
        `<prefix>/queue-items/<namespace>/<queue>/<id>`, ids sortable (UTC time to the
        microsecond, then random hex) and unique, written only if absent, up to
        100 per transaction. Redis-backed: one RPUSH of every message (all or
        none). Raises NotFound if there is no such Queue."""
        stored = self.get(Queue, namespace, queue)
        if not isinstance(stored, Queue):
            raise NotFound(f"queue {namespace}/{queue} not found")
        values = [m.encode("utf-8") if isinstance(m, str) else bytes(m) for m in messages]
        source = stored.spec.source
        if isinstance(source, EtcdSource):
            return self._push_etcd(namespace, queue, values)
        from controller.queues.redis_source import RedisQueue

        RedisQueue(source.url, source.key).push(values)
        return len(values)

    def _push_etcd(self, namespace: str, queue: str, values: Sequence[bytes]) -> int:
        try:
            return push_items(self.store, namespace, queue, values, self._item_ids)
        except PushIncomplete as exc:
            raise ClientError(f"queue {namespace}/{queue}: {exc.pushed} of {len(values)} "
                              f"message(s) pushed, then: {exc}") from None

    # --- subscription runner ------------------------------------------------------------------
    def subscribe(self, selector: Selector | None = None, from_revision: int | None = None
                  ) -> Subscription:
        """Status writes and execution records matching `selector` (default: everything), as
        they are written, in revision order: from `from_revision` (inclusive) or from now.
        No event is lost or repeated across an etcd restart (see `controller.client.events`
        for compaction). Close it (or use `with`) when done."""
        return Subscription(self.store, selector, from_revision)

    # --- sync and promise runners -------------------------------------------------------------
    def run(self, job: Job, timeout: float | None = None) -> JobResult:
        """Sync runner: apply `job`, block until it ends, return its final status and
        executions. Raises JobFailed (carrying them) if it Failed, TimeoutError naming the
        Job and its progress if it has not ended after `timeout` seconds (the Job keeps
        running: delete it to stop it), JobDeleted if it is deleted meanwhile.

        The name identifies the Job: a Job that already ended under this name with the same
        spec is not run again; its result is returned."""
        future = self.submit(job)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(self._timeout_message(job, timeout)) from None

    def _timeout_message(self, job: Job, timeout: float | None) -> str:
        progress = ""
        with contextlib.suppress(Exception):
            st = self.status(Job, job.namespace, job.name)
            if isinstance(st, JobStatus):
                completions = job.spec.completions
                progress = (f" (phase {st.phase.value}, {st.succeeded}/{completions} "
                            f"succeeded, {st.active} active, {st.failed} failed)")
        return f"job {job.namespace}/{job.name} did not end within {timeout}s{progress}"

    def submit(self, job: Job) -> Future[JobResult]:
        """Promise runner: apply `job` (in the calling thread, so an ApplyConflict raises
        here) and return a Future of its JobResult; the Future raises JobFailed, JobDeleted,
        or ClientError if the client closes first. Cancelling the Future stops waiting (the
        Job goes on)."""
        self._ensure_dispatcher()
        revision, uid = self._apply(job)
        future: Future[JobResult] = Future()
        waiter = _Waiter(job, uid, revision, future)
        key = (job.namespace, job.name)
        with self._lock:
            if self._closed:
                raise ClientError("client is closed")
            self._waiters.setdefault(key, []).append(waiter)
        future.add_done_callback(lambda _f: self._forget(waiter))
        # The watch began before the write; its status may already be terminal.
        self._pool.submit(self._check_now, waiter)
        return future

    def _forget(self, waiter: _Waiter) -> None:
        key = (waiter.job.namespace, waiter.job.name)
        with self._lock:
            waiters = self._waiters.get(key, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(key, None)

    def _check_now(self, waiter: _Waiter) -> None:
        try:
            found = self.store.get_status("jobs", waiter.job.namespace, waiter.job.name)
            if found is not None and self._ended(waiter, found.status):
                self._finish(waiter, found.status)
        except Exception as exc:
            self._fail(waiter, exc)

    @staticmethod
    def _ended(waiter: _Waiter, status: StatusBase) -> bool:
        return (isinstance(status, JobStatus) and status.uid == waiter.uid
                and (status.observed_revision or 0) >= waiter.revision
                and status.phase in TERMINAL_PHASES)

    def _finish(self, waiter: _Waiter, status: StatusBase) -> None:
        assert isinstance(status, JobStatus)
        if waiter.future.done():
            return
        try:
            records = self.executions(Job, waiter.job.namespace, waiter.job.name)
        except Exception as exc:
            self._fail(waiter, exc)
            return
        result = JobResult(waiter.job, status, records)
        outcome: JobResult | ClientError = (
            result if result.succeeded else JobFailed(result))
        with contextlib.suppress(Exception):  # InvalidStateError: cancelled or done already
            if isinstance(outcome, JobResult):
                waiter.future.set_result(outcome)
            else:
                waiter.future.set_exception(outcome)

    @staticmethod
    def _fail(waiter: _Waiter, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            waiter.future.set_exception(exc)

    def _check_deleted(self, waiter: _Waiter) -> None:
        try:
            stored = self.store.get("jobs", waiter.job.namespace, waiter.job.name)
        except Exception as exc:
            self._fail(waiter, exc)
            return
        if stored is None or stored.create_revision != waiter.uid:
            self._fail(waiter, JobDeleted(f"job {waiter.job.namespace}/{waiter.job.name} was "
                                          "deleted before it ended"))

    # --- async runner -------------------------------------------------------------------------
    async def run_async(self, job: Job, timeout: float | None = None) -> JobResult:
        """Async runner: `run` for asyncio. Applies `job` in a worker thread and awaits its
        end without blocking the loop; raises as `run` does."""
        future = await asyncio.to_thread(self.submit, job)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            future.cancel()
            message = await asyncio.to_thread(self._timeout_message, job, timeout)
            raise TimeoutError(message) from None

    def on(self, predicate: Callable[[Event], bool],
           callback: Callable[[Event], object | Awaitable[object]],
           selector: Selector | None = None) -> Handler:
        """Call `callback(event)` for every StatusEvent and ExecutionEvent written from now on
        for which `predicate(event)` (and `selector`, if given) holds.

        Registered inside a running asyncio loop, both are called in that loop (handed over
        with call_soon_threadsafe, never blocking it); a coroutine function's coroutine is
        scheduled as a task. Registered outside a loop, they are called in the client's
        watcher thread (keep them short). An exception in a handler is logged, never
        propagated. Returns a Handler; `handler.remove()` unregisters it."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if selector is not None:
            inner = predicate

            def predicate(event: Event) -> bool:
                return selector.matches(event) and inner(event)

        handler = Handler(predicate, callback, loop, self)
        self._ensure_dispatcher()
        with self._lock:
            self._handlers.append(handler)
        return handler

    def _remove_handler(self, handler: Handler) -> None:
        with self._lock:
            if handler in self._handlers:
                self._handlers.remove(handler)

    @staticmethod
    def _call(handler: Handler, event: Event) -> None:
        try:
            if not handler.predicate(event):
                return
            outcome = handler.callback(event)
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome)
                task.add_done_callback(_log_task_error)
        except Exception:
            log.exception("event handler failed", event=repr(event))

    # --- the watcher --------------------------------------------------------------------------
    def _ensure_dispatcher(self) -> None:
        with self._lock:
            if self._closed:
                raise ClientError("client is closed")
            if self._subscription is not None:
                return
        subscription = Subscription(self.store)  # from now: positioned before we return
        with self._lock:
            if self._subscription is None and not self._closed:
                self._subscription = subscription
                self._dispatcher = threading.Thread(
                    target=self._dispatch, args=(subscription,), name="docket-client-watch",
                    daemon=True)
                self._dispatcher.start()
                return
        subscription.close()

    def _dispatch(self, subscription: Subscription) -> None:
        for event in subscription:
            with self._lock:
                waiters = (list(self._waiters.get((event.namespace, event.name), []))
                           if event.kind == "Job" else [])
                handlers = list(self._handlers)
            for waiter in waiters:
                if isinstance(event, StatusEvent):
                    if event.status is None:
                        self._submit(self._check_deleted, waiter)
                    elif self._ended(waiter, event.status):
                        self._submit(self._finish, waiter, event.status)
            for handler in handlers:
                if handler.loop is None:
                    self._call(handler, event)
                    continue
                try:
                    handler.loop.call_soon_threadsafe(self._call, handler, event)
                except RuntimeError:  # its loop is closed
                    self._remove_handler(handler)

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the pool is shut down: closing
            self._pool.submit(fn, *args)


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("async event handler failed", error=repr(task.exception()))


__all__ = ["ApplyConflict", "Client", "ClientError", "Handler", "JobDeleted",
           "JobFailed", "JobResult", "NotFound"]
