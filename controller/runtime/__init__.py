"""The controller runtime: a de-duplicating, rate-limited workqueue, an informer cache fed by
the store's list-then-watch, and the reconcile loop that joins them (client-go and
controller-runtime habits). Level-triggered: handlers only enqueue keys; reconcilers read the
current state from the cache, never from the event that woke them.
"""

from controller.runtime.clock import Clock, FakeClock, RealClock
from controller.runtime.informer import Informer
from controller.runtime.loop import Controller, Result, TerminalError
from controller.runtime.workqueue import RateLimiter, WorkQueue

__all__ = ["Clock", "Controller", "FakeClock", "Informer", "RateLimiter", "RealClock", "Result",
           "TerminalError", "WorkQueue"]
