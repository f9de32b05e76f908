"""The throttles' view of the cluster, for the offer matcher (issue 16; docs/architecture.md
§10): how many live tasks count against each throttle, from the recorded executions of every
kind, and which objects have launches held back by one.

Why from the records and not from the adapter's memory: a throttle must hold across a
controller restart, and the records are the one account that survives it. A task counts from
its intent (LAUNCHING, written before the launch) until its record ends; the adapter subtracts
the launches still waiting in its own pending set, which are LAUNCHING too. Objects whose
spec is gone count by kind, namespace and name only (their labels are unknown): their tasks
are being killed and still take room until they end. An owner whose cached records were just
invalidated (a stale plan) is missing until it is read again, at its next plan, moments
later; the matcher's floor — the tasks this process launched and has not seen end — covers
its tasks meanwhile.

`held` is told after each round of offers which waiting tasks each throttle holds back; an
object whose held state changes is planned again, and its planner writes (or clears) the
condition `Throttled` naming the throttle (`PlanRequest.throttled`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from controller import metrics
from controller.mesos.backend import TERMINAL_STATES
from controller.reconcile.taskid import parse_task_id

if TYPE_CHECKING:
    from controller.kindcontroller import KindController

Owner = tuple[str, str, str]
"""(kind, namespace, name) of an object."""


def holds_room(state: str) -> bool:
    """Whether a record in this state counts against its throttles: from its intent until it
    ends. TASK_UNKNOWN is an intent Mesos never saw (written off as NeverLaunched) or a task it
    has forgotten: it runs nowhere. An unreachable task may still run, so it counts."""
    return state not in TERMINAL_STATES and state != "TASK_UNKNOWN"


class ThrottlePolicy(Protocol):
    def throttle_limits(self) -> dict[str, int]: ...

    def throttles_of(self, kind: str, namespace: str, name: str, obj: Any
                     ) -> tuple[str, ...]: ...


class Throttles:
    """The Manager's `ThrottleSource` (controller/mesos/backend.py)."""

    def __init__(self, policy: ThrottlePolicy, controllers: Mapping[str, KindController],
                 wake: Callable[[Owner], None]) -> None:
        self._policy = policy
        self._controllers = controllers
        self._wake = wake
        self._lock = threading.Lock()
        self._held: dict[Owner, str] = {}
        self._last_usage: dict[str, int] = {}

    # --- ThrottleSource ----------------------------------------------------------------------
    def limits(self) -> Mapping[str, int]:
        return self._policy.throttle_limits()

    def usage(self) -> Mapping[str, int]:
        if not self._policy.throttle_limits():
            return {}
        counts: dict[str, int] = {}
        for owner, obj, live in self._live_by_owner():
            if not live:
                continue
            for throttle in self._policy.throttles_of(*owner, obj):
                counts[throttle] = counts.get(throttle, 0) + live
        with self._lock:
            self._last_usage = counts
        return counts

    def held(self, waiting: Mapping[str, tuple[str, ...]]) -> None:
        now: dict[Owner, str] = {}
        for throttle in sorted(waiting):
            for task_id in waiting[throttle]:
                parts = parse_task_id(task_id)
                if parts is not None:
                    o = parts.owner
                    now.setdefault((o.kind, o.namespace, o.name), throttle)
        with self._lock:
            before, self._held = self._held, now
            usage = dict(self._last_usage)
        self._publish(usage, waiting)
        for owner in set(before) | set(now):
            if before.get(owner) != now.get(owner):
                self._wake(owner)

    def _publish(self, usage: Mapping[str, int], waiting: Mapping[str, tuple[str, ...]]
                 ) -> None:
        """The gauges, for the throttles in force only (a removed one's series stay gone):
        waiting = held back this round; running = counted from the records less those."""
        for throttle in self._policy.throttle_limits():
            held = len(waiting.get(throttle, ()))
            metrics.THROTTLE_WAITING.labels(throttle).set(held)
            metrics.THROTTLE_RUNNING.labels(throttle).set(max(0, usage.get(throttle, 0) - held))

    # --- for the planners --------------------------------------------------------------------
    def throttled(self, kind: str, namespace: str, name: str) -> str | None:
        """The throttle holding back some of the object's launches, or None."""
        with self._lock:
            return self._held.get((kind, namespace, name))

    # --- the records -------------------------------------------------------------------------
    def _live_by_owner(self) -> Iterator[tuple[Owner, Any, int]]:
        """Owners with records that hold room, each with its object (None when its spec is
        gone) and how many. From the record caches in one pass each: this runs at every
        round of offers while launches wait on a throttle."""
        for kind, controller in self._controllers.items():
            live = controller.records.count_by_owner(lambda rec: holds_room(rec.state))
            for (namespace, name), n in live.items():
                cached = controller.informer.get(namespace, name)
                yield (kind, namespace, name), getattr(cached, "object", None), n
