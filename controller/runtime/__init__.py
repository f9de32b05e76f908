"""The controller runtime: a de-duplicating, rate-limited workqueue, an informer cache fed by
the store's list-then-watch, the reconcile loop that joins them (client-go and
controller-runtime habits), and leader election on an etcd lease with fencing.
Level-triggered: handlers only enqueue keys; reconcilers read the current state from the cache,
never from the event that woke them.
"""

from controller.clock import Clock, FakeClock, RealClock
from controller.runtime.informer import Handlers, Informer, ObjectKey
from controller.runtime.leader import Fence, LeaderElector, LeaseStore
from controller.runtime.loop import Controller, Result, TerminalError
from controller.runtime.workqueue import RateLimiter, WorkQueue

__all__ = ["Clock", "Controller", "FakeClock", "Fence", "Handlers", "Informer", "LeaderElector",
           "LeaseStore", "ObjectKey", "RateLimiter", "RealClock", "Result", "TerminalError",
           "WorkQueue"]
