"""One thread that runs everything the embedded Mesos schedules for later: allocation
rounds, heartbeats, offer timeouts, status update retries, failover timeouts, simulated task
completions and kill escalations. A heap, not a thread per timer, so 10,000 simulated tasks
cost 10,000 heap entries rather than 10,000 threads."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("docket.localmesos.timers")


class Timer:
    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    def __init__(self, name: str = "localmesos-timers") -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), fn)
        with self._cond:
            heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
            if self._heap[0][2] is timer:
                self._cond.notify()
        return timer

    def call_soon(self, fn: Callable[[], None]) -> Timer:
        return self.call_later(0, fn)

    def every(self, interval: float, fn: Callable[[], None]) -> Timer:
        """Run `fn` every `interval` seconds until the returned timer is cancelled."""
        handle = Timer(0, fn)

        def tick() -> None:
            if handle.cancelled:
                return
            try:
                fn()
            finally:
                if not handle.cancelled:
                    self.call_later(interval, tick)

        self.call_later(interval, tick)
        return handle

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception:
                log.exception("timer callback failed")
