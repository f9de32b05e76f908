"""A thread-safe, de-duplicating work queue of object keys, with delayed and rate-limited adds.

Semantics follow client-go's workqueue, because the reconcile loop relies on them:
- a key is queued at most once, however many times it is added before a worker takes it;
- a key is never handed to two workers at once: adding a key that is being processed marks it
  dirty, and it is queued again only when the worker calls `done`;
- `add_after` holds a key until its time comes (the earliest of several delays wins);
- `add_rate_limited` delays by the larger of a per-key exponential backoff and an overall token
  bucket, so one failing key backs off alone while a storm of failures is capped as a whole;
  `forget` resets a key's backoff once it succeeds.
Time comes from an injected `Clock`, so tests drive delays with a fake clock instead of sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Hashable

from controller import metrics
from controller.clock import Clock, RealClock


class RateLimiter:
    """max(per-key exponential backoff, overall token bucket), like client-go's default
    controller rate limiter. Not thread-safe on its own: the queue calls it under its lock."""

    def __init__(self, clock: Clock, *, base_delay: float = 0.005, max_delay: float = 1000.0,
                 qps: float = 10.0, burst: int = 100) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        if qps <= 0 or burst < 1:
            raise ValueError("need qps > 0 and burst >= 1")
        self._clock = clock
        self._base = base_delay
        self._max = max_delay
        self._qps = qps
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = clock.now()
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        """The delay before `key` may be retried; counts one more failure of it."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Compare exponents before computing the power: 2**failures overflows a float.
        backoff = self._max if failures >= 64 else min(self._base * 2.0 ** failures, self._max)
        return max(backoff, self._reserve())

    def _reserve(self) -> float:
        now = self._clock.now()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1.0
        # A negative balance is a reservation: the caller waits until it would be paid back.
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class WorkQueue:
    def __init__(self, name: str = "default", *, clock: Clock | None = None,
                 rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self._clock: Clock = clock or RealClock()
        self._limiter = rate_limiter or RateLimiter(self._clock)
        self._cond = threading.Condition()
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: dict[Hashable, float] = {}  # key -> when a worker took it
        self._queued_at: dict[Hashable, float] = {}
        self._delayed: list[tuple[float, int, Hashable]] = []  # heap of (due, seq, key)
        self._due: dict[Hashable, float] = {}  # key -> earliest pending due time
        self._seq = itertools.count()
        self._shutting_down = False
        self._depth = metrics.WORKQUEUE_DEPTH.labels(name)
        self._adds = metrics.WORKQUEUE_ADDS.labels(name)
        self._retries = metrics.WORKQUEUE_RETRIES.labels(name)
        self._latency = metrics.WORKQUEUE_LATENCY.labels(name)
        self._work = metrics.WORKQUEUE_WORK_SECONDS.labels(name)

    # --- adding -----------------------------------------------------------------------------
    def add(self, key: Hashable) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._adds.inc()
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done(): never two workers on one key
        self._queue.append(key)
        self._queued_at[key] = self._clock.now()
        self._depth.set(len(self._queue))
        self._cond.notify()

    def add_after(self, key: Hashable, seconds: float) -> None:
        with self._cond:
            if self._shutting_down:
                return
            if seconds <= 0:
                self._add_locked(key)
                return
            due = self._clock.now() + seconds
            if key in self._due and self._due[key] <= due:
                return  # an earlier wake-up is already planned
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._seq), key))
            self._cond.notify_all()

    def add_rate_limited(self, key: Hashable) -> None:
        with self._cond:
            delay = self._limiter.when(key)
        self._retries.inc()
        self.add_after(key, delay)

    def forget(self, key: Hashable) -> None:
        """Stop tracking the key's failures (its next failure starts at the base delay)."""
        with self._cond:
            self._limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        with self._cond:
            return self._limiter.failures(key)

    # --- taking -----------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next key, waiting at most `timeout` real seconds (None: until shutdown).
        Returns None on timeout or once the queue is shut down. The caller must call `done`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutting_down:
                    return None
                self._promote_due_locked()
                if self._queue:
                    return self._take_locked()
                wait: float | None = None
                if deadline is not None:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        return None
                if self._delayed:
                    until_due = max(0.0, self._delayed[0][0] - self._clock.now())
                    wait = until_due if wait is None else min(wait, until_due)
                self._clock.wait(self._cond, wait)

    def get_many(self, limit: int, timeout: float | None = None) -> list[Hashable]:
        """Up to `limit` keys: the first as `get` waits for it, then whichever others are
        ready at that moment. Empty on timeout or shutdown. The caller must call `done` for
        each."""
        first = self.get(timeout)
        if first is None:
            return []
        keys = [first]
        with self._cond:
            while self._queue and len(keys) < limit and not self._shutting_down:
                keys.append(self._take_locked())
        return keys

    def _take_locked(self) -> Hashable:
        key = self._queue.popleft()
        now = self._clock.now()
        self._latency.observe(max(0.0, now - self._queued_at.pop(key, now)))
        self._processing[key] = now
        self._dirty.discard(key)
        self._depth.set(len(self._queue))
        return key

    def _promote_due_locked(self) -> None:
        now = self._clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:  # stale heap entries were superseded by earlier ones
                del self._due[key]
                self._add_locked(key)

    def done(self, key: Hashable) -> None:
        with self._cond:
            started = self._processing.pop(key, None)
            if started is not None:
                self._work.observe(max(0.0, self._clock.now() - started))
            if key in self._dirty and not self._shutting_down:
                self._queue.append(key)
                self._queued_at[key] = self._clock.now()
                self._depth.set(len(self._queue))
                self._cond.notify()

    # --- lifecycle --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Wake every waiting worker; `get` returns None from now on and adds are ignored."""
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    def __len__(self) -> int:
        """Keys ready to be taken (delayed keys and keys being processed are not counted)."""
        with self._cond:
            return len(self._queue)

    def pending_delayed(self) -> int:
        with self._cond:
            return len(self._due)
