"""The reconcile loop: worker threads take keys from the workqueue, call the caller's
`reconcile(key)`, and sort the outcome the way controller-runtime does:

- returns normally (or `Result()`): success, the key's backoff is forgotten;
- `Result(requeue_after=s)`: success, looked at again in `s` seconds;
- `Result(requeue=True)`: retried with rate limiting (the plan is waiting on something);
- raises `TerminalError`: logged and counted, not retried (only a new event brings it back);
- raises anything else: a transient error, retried with rate limiting.
The key is always marked done, so a key re-added while it was processed runs again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import structlog

from controller import metrics
from controller.runtime.workqueue import WorkQueue

log = structlog.get_logger("docket.runtime")


@dataclass(frozen=True)
class Result:
    requeue: bool = False
    requeue_after: float | None = None


class TerminalError(Exception):
    """A failure that retrying cannot fix (the object itself is wrong)."""


Reconcile = Callable[[Hashable], "Result | None"]
ReconcileMany = Callable[[Sequence[Hashable]], "Sequence[Result | Exception | None]"]
"""Reconciles several keys at once (sharing round trips); an outcome per key, in order:
what `Reconcile` would have returned, or the exception it would have raised."""


class Controller:
    def __init__(self, kind: str, queue: WorkQueue, reconcile: Reconcile, *,
                 workers: int = 2, reconcile_many: ReconcileMany | None = None,
                 batch: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.kind = kind
        self.queue = queue
        self._reconcile = reconcile
        self._reconcile_many = reconcile_many
        self._batch = batch if reconcile_many is not None else 1
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._duration = metrics.RECONCILE_SECONDS.labels(kind)
        for result in metrics.RECONCILE_RESULTS:
            metrics.RECONCILE_TOTAL.labels(kind, result)

    def start(self) -> None:
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"{self.kind}-worker-{i}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the queue down and wait for workers to finish their current key."""
        self.queue.shutdown()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    def _work(self) -> None:
        while True:
            keys = self.queue.get_many(self._batch)
            if not keys:
                return
            try:
                if len(keys) == 1:
                    self.process(keys[0])
                else:
                    self.process_many(keys)
            finally:
                for key in keys:
                    self.queue.done(key)

    def process(self, key: Hashable) -> str:
        """Reconcile one key and requeue it as its outcome says; returns the outcome label.
        The caller marks the key done (workers do it; tests may call this directly)."""
        started = time.perf_counter()
        try:
            outcome: Result | Exception | None = self._reconcile(key)
        except Exception as exc:
            outcome = exc
        return self._settle(key, outcome, started)

    def process_many(self, keys: Sequence[Hashable]) -> list[str]:
        """`process` for several keys in one `reconcile_many` call."""
        assert self._reconcile_many is not None
        started = time.perf_counter()
        try:
            outcomes = list(self._reconcile_many(keys))
        except Exception as exc:
            outcomes = [exc for _ in keys]
        if len(outcomes) != len(keys):
            raise RuntimeError(f"reconcile_many gave {len(outcomes)} outcomes for "
                               f"{len(keys)} keys")
        return [self._settle(key, outcome, started)
                for key, outcome in zip(keys, outcomes, strict=True)]

    def _settle(self, key: Hashable, outcome: Result | Exception | None, started: float
                ) -> str:
        if isinstance(outcome, TerminalError):
            self.queue.forget(key)
            label = "terminal_error"
            log.error("reconcile failed, not retrying", kind=self.kind, key=str(key),
                      error=str(outcome))
        elif isinstance(outcome, Exception):
            self.queue.add_rate_limited(key)
            label = "error"
            log.warning("reconcile failed, will retry", kind=self.kind, key=str(key),
                        error=repr(outcome), retries=self.queue.num_requeues(key))
        else:
            result = outcome or Result()
            if result.requeue_after is not None and result.requeue_after >= 0:
                # 0: at once, after this pass (a plan that left work for the next one).
                self.queue.forget(key)
                self.queue.add_after(key, result.requeue_after)
                label = "requeue_after"
            elif result.requeue:
                self.queue.add_rate_limited(key)
                label = "requeue"
            else:
                self.queue.forget(key)
                label = "success"
        # A key reconciled in a batch took as long as its batch.
        self._duration.observe(time.perf_counter() - started)
        metrics.RECONCILE_TOTAL.labels(self.kind, label).inc()
        return label
