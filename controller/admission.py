"""Admission: whether an object may have new tasks launched, decided before it is planned.

Two things outside an object's own spec can hold its launches back: the operator's policy
(`/docket/policy`, controller/policy.py) and the secrets its environment refers to
(`/docket/secrets/...`, controller/secrets.py). Each is a check `(kind, namespace, name,
spec) -> Denial | None` over a cache the controller keeps; the gate asks them in order and
gives the first denial to the kind's planner (`PlanRequest.denial`).

A denial never kills: a planner given one launches nothing new and keeps what runs, and says
why in the object's status (Invalid with the denial's reason when nothing of it runs, else a
condition). When the policy or the secret changes, the checks wake the objects they judged,
so a denial lifts as soon as its cause does, level-triggered like everything else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from controller.reconcile.denial import POLICY_DENIED, SECRET_NOT_FOUND, Denial

if TYPE_CHECKING:
    from controller.mesos.backend import LaunchRequest

__all__ = ["ADMIT_ALL", "POLICY_DENIED", "SECRET_NOT_FOUND", "AdmissionGate", "AdmissionSource",
           "Check", "Denial"]


Check = Callable[[str, str, str, Any], "Denial | None"]
"""(kind, namespace, name, spec) -> the denial, or None when the check lets it launch."""


class AdmissionSource(Protocol):
    """A cache the controller keeps for admission (the policy, the secrets): started with the
    controllers, synced before any object is planned, stopped with them."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wait_for_sync(self, timeout: float) -> bool: ...

    def check(self, kind: str, namespace: str, name: str, spec: Any) -> Denial | None: ...

    def prepare(self, request: LaunchRequest) -> LaunchRequest:
        """The launch, completed on its way to Mesos (the role, secret values)."""
        ...


class AdmissionGate:
    """The checks, asked in order; the first denial wins. Checks may be added while the
    controller runs (each owner adds its own at start-up)."""

    def __init__(self, checks: Sequence[Check] = ()) -> None:
        self._checks: list[Check] = list(checks)
        self._lock = threading.Lock()

    def add(self, check: Check) -> None:
        with self._lock:
            self._checks.append(check)

    def check(self, kind: str, namespace: str, name: str, spec: Any) -> Denial | None:
        with self._lock:
            checks = list(self._checks)
        for check in checks:
            denial = check(kind, namespace, name, spec)
            if denial is not None:
                return denial
        return None


ADMIT_ALL = AdmissionGate()
