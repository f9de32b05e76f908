"""The kinds the controller acts on, each declared once (docs/architecture.md §6).

A kind is its pure planner (`controller/reconcile/<kind>.py`) plus a `KindDef`: its name and
plural (which fix its keys, `<plural>/<ns>/<name>`, `status/<plural>/...`,
`executions/<plural>/...`, and the first field of its task ids), its status type, and how to
build the planner's input from what the controller holds (the cached spec, the status and
execution records, now). Adding a kind adds a `KindDef` to `KINDS`; the manager, the task-event
pump and the executor are shared and never name a kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.api import Job, JobStatus, StatusBase
from controller.reconcile import JobInput, Plan, plan_job
from controller.records import OwnerRecords
from controller.store import StoreError


@dataclass(frozen=True)
class PlanRequest:
    """Everything a planner may be given about one object, read by the kind controller."""

    kind: str
    namespace: str
    name: str
    cached: Any
    """The informer's StoredObject (spec, revisions, uid), or None when the spec is gone."""
    records: OwnerRecords
    """The object's status and execution records, with their revisions."""
    now: datetime


@dataclass(frozen=True)
class KindDef:
    kind: str
    """As in the API and in task ids (lowercased): "Job"."""
    plural: str
    """As in keys: "jobs"."""
    status_type: type[StatusBase]
    plan: Callable[[PlanRequest], Plan]


def _status(req: PlanRequest, status_type: type[StatusBase]) -> Any:
    status = req.records.status
    if status is not None and not isinstance(status, status_type):
        raise StoreError(f"status of {req.kind} {req.namespace}/{req.name} is not a "
                         f"{status_type.__name__}")
    return status


def plan_job_request(req: PlanRequest) -> Plan:
    status = _status(req, JobStatus)
    job: Any = None
    uid = status.uid if status is not None else None
    spec_revision = 0
    if req.cached is not None:
        job = getattr(req.cached, "object", None)
        uid = getattr(req.cached, "uid", None)
        spec_revision = req.cached.mod_revision
        if not isinstance(job, Job) and req.cached.valid:
            job = None
    return plan_job(JobInput(req.namespace, req.name, job, spec_revision, uid, status,
                             [rec for rec, _ in req.records.executions.values()], req.now))


JOB = KindDef("Job", "jobs", JobStatus, plan_job_request)

KINDS: tuple[KindDef, ...] = (JOB,)


def by_name(kinds: tuple[KindDef, ...]) -> Mapping[str, KindDef]:
    return {k.kind: k for k in kinds}
