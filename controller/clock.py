"""The one clock seam of the controller (docs/architecture.md §2): every part that reads time —
the workqueue's delays, leader election, the Mesos adapter's timers, and every caller of a
planner — takes a `Clock`, so tests drive time instead of sleeping.

Two readings, because they answer different questions: `now()` is monotonic seconds, for
intervals and timeouts (never jumps); `utcnow()` is the wall clock, for what is written in
status and compared with schedules (may jump, as real wall clocks do). `RealClock` reads the
machine's; `FakeClock` moves only when a test calls `advance` (both readings) or `jump_to`
(the wall clock alone, as an NTP step or a DST-confused operator would), and wakes threads
waiting on it, so delayed work becomes due deterministically.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def utcnow(self) -> datetime:
        """The wall clock, timezone-aware (UTC)."""
        ...

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on `condition` (held by the caller) for at most `timeout` clock seconds."""
        ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def utcnow(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(timeout)


class FakeClock:
    """Time stands still until `advance` or `jump_to`. Waiters registered through `wait` are
    notified on every move, so a queue waiting for a delayed key re-checks at once."""

    def __init__(self, start: float = 1000.0,
                 wall: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        if wall.tzinfo is None:
            raise ValueError("the wall clock must be timezone-aware")
        self._now = start
        self._wall = wall
        self._lock = threading.Lock()
        self._conditions: set[threading.Condition] = set()

    def now(self) -> float:
        with self._lock:
            return self._now

    def utcnow(self) -> datetime:
        with self._lock:
            return self._wall

    def __call__(self) -> datetime:
        """The wall clock, for code that takes a plain `() -> datetime`."""
        return self.utcnow()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self._wall += timedelta(seconds=seconds)
        self._notify()

    def jump_to(self, wall: datetime) -> None:
        """Set the wall clock (forward or back); monotonic time does not move."""
        if wall.tzinfo is None:
            raise ValueError("the wall clock must be timezone-aware")
        with self._lock:
            self._wall = wall
        self._notify()

    def _notify(self) -> None:
        with self._lock:
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
