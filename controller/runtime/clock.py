"""An injected clock, so time-dependent runtime code is tested without sleeping.

`RealClock` reads the monotonic clock; `FakeClock` only moves when a test calls `advance`, and
wakes threads waiting on it, so delayed work becomes due deterministically.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on `condition` (held by the caller) for at most `timeout` clock seconds."""
        ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(timeout)


class FakeClock:
    """Time stands still until `advance`. Waiters registered through `wait` are notified on
    every advance, so a queue waiting for a delayed key re-checks at once."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._conditions: set[threading.Condition] = set()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            conditions = list(self._conditions)
        for condition in conditions:
            with condition:
                condition.notify_all()

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        with self._lock:
            self._conditions.add(condition)
        # Real time bounds the wait too: a fake-clock timeout would otherwise never expire,
        # and a caller's real-time timeout (get(timeout=...)) must still end.
        condition.wait(0.05 if timeout is None else min(timeout, 0.05))
