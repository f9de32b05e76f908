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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from controller import metrics, service_metrics
from controller.api import (
    CronJobStatus,
    ExecutionRecord,
    Job,
    JobPhase,
    JobStatus,
    QueueStatus,
    ServiceStatus,
    StatusBase,
)
from controller.queuekind import (
    observe_queue,
    plan_queue_request,
    queue_record_ops,
    queue_status_written,
)
from controller.reconcile import (
    Action,
    CreateObject,
    DeleteObject,
    JobInput,
    Observation,
    Plan,
    plan_job,
)
from controller.reconcile.cronjob import (
    SCHEDULED_TIME,
    CreateJob,
    CronJobInput,
    DeleteJob,
    OwnedJob,
    plan_cronjob,
)
from controller.reconcile.denial import Denial
from controller.reconcile.service import ServiceInput, plan_service
from controller.records import OwnerRecords
from controller.store import Delete, Keys, Put, StoreError


class Related(Protocol):
    """What a planner may read of other objects than its own: the objects of a kind owned by
    one owner, with their status (a CronJob's Jobs)."""

    def owned(self, plural: str, namespace: str, owner_kind: str, owner_name: str
              ) -> list[tuple[Any, StatusBase | None]]: ...


class _Nothing:
    def owned(self, plural: str, namespace: str, owner_kind: str, owner_name: str
              ) -> list[tuple[Any, StatusBase | None]]:
        return []


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
    related: Related = field(default_factory=_Nothing)
    sources: Any = None
    """Reads Queue sources (`controller.queues.sources.QueueSources`), where Queues run."""
    denial: Denial | None = None
    """Why the object may launch nothing new (controller/admission.py), or None."""
    throttled: str | None = None
    """The throttle holding back some of the object's launches at offer time, or None."""
    keys: Keys = field(default_factory=Keys)
    """The controller's key layout (its prefix), for rules about keys a spec names."""


@dataclass(frozen=True)
class KindDef:
    kind: str
    """As in the API and in task ids (lowercased): "Job"."""
    plural: str
    """As in keys: "jobs"."""
    status_type: type[StatusBase]
    plan: Callable[[PlanRequest], Plan]
    observe: Callable[[Observation], None] | None = None
    """Feeds the kind's metrics from a committed plan's observations."""
    owner_cares: Callable[[StatusBase], bool] = lambda _status: True
    """Whether a status written for an object of this kind wakes its owner (if it has one):
    a CronJob needs to hear that its Job ended, not of every count along the way."""
    record_ops: Callable[[Keys, str, str, ExecutionRecord, ExecutionRecord],
                         list[Put | Delete]] | None = None
    """etcd writes to make in the transaction that records a task's update (old record, new
    record): a Queue acks a batch's messages with the record of its success."""
    status_written: Callable[[str, str, StatusBase | None, StatusBase | None], None] | None = None
    record_changed: Callable[[ExecutionRecord, ExecutionRecord], None] | None = None
    """Told of every task update recorded (old record, new record): a kind's counters."""
    wake_on_running: bool = False
    """Whether a task reaching TASK_RUNNING wakes its object (a Service's instance is then
    available; a Job's task running changes nothing of its plan)."""
    """Told of every status written (namespace, name, old, new): a kind's gauges."""


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
                             [rec for rec, _ in req.records.executions.values()], req.now,
                             req.denial, req.throttled))


def _job_ended(status: StatusBase) -> bool:
    return getattr(status, "phase", None) in (JobPhase.SUCCEEDED, JobPhase.FAILED)


JOB = KindDef("Job", "jobs", JobStatus, plan_job_request, owner_cares=_job_ended)


# --- CronJob ---------------------------------------------------------------------------------
def _owned_job(cached: Any, status: StatusBase | None) -> OwnedJob | None:
    job = getattr(cached, "object", None)
    if not isinstance(job, Job) or not job.metadata.owner_references:
        return None  # edited into something Docket did not create: not counted as a slot's
    stamp = job.metadata.annotations.get(SCHEDULED_TIME)
    try:
        scheduled = datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        scheduled = None
    if scheduled is None or scheduled.tzinfo is None:
        return None
    phase = status.phase if isinstance(status, JobStatus) else None
    finished = phase in (JobPhase.SUCCEEDED, JobPhase.FAILED)
    return OwnedJob(cached.name, job.metadata.owner_references[0].uid, cached.mod_revision,
                    scheduled, phase if phase not in (None, JobPhase.INVALID) else None,
                    status.completion_time if finished and isinstance(status, JobStatus)
                    else None)


def plan_cronjob_request(req: PlanRequest) -> Plan:
    status = _status(req, CronJobStatus)
    cronjob: Any = None
    uid = status.uid if status is not None else None
    spec_revision = 0
    if req.cached is not None:
        cronjob = req.cached.object
        uid = req.cached.uid
        spec_revision = req.cached.mod_revision
    jobs = [owned for cached, job_status in req.related.owned("jobs", req.namespace,
                                                             "CronJob", req.name)
            if (owned := _owned_job(cached, job_status)) is not None]
    decided = plan_cronjob(CronJobInput(req.namespace, req.name, cronjob, spec_revision, uid,
                                        status, jobs, req.now, req.denial))
    actions: list[Action] = []
    observations: list[Observation] = []
    for action in decided.actions:
        if isinstance(action, CreateJob):
            actions.append(CreateObject("jobs", action.namespace, action.name, action.job))
            observations.append(Observation(
                "lateness", value=max(0.0, (req.now - action.scheduled_time).total_seconds())))
        elif isinstance(action, DeleteJob):
            actions.append(DeleteObject("jobs", action.namespace, action.name,
                                        action.expected_mod_revision, action.reason))
        else:
            actions.append(action)
    observations += [Observation("missed", reason, n) for reason, n in decided.missed.items()]
    return Plan(tuple(actions), decided.status, decided.requeue_after, tuple(observations))


def observe_cronjob(observation: Observation) -> None:
    if observation.name == "lateness":
        metrics.CRONJOB_LATENESS.observe(observation.value)
        metrics.CRONJOB_JOBS_CREATED.inc()
    elif observation.name == "missed":
        metrics.CRONJOB_MISSED.labels(observation.label).inc(observation.value)


CRONJOB = KindDef("CronJob", "cronjobs", CronJobStatus, plan_cronjob_request, observe_cronjob)

# --- Queue (controller/queuekind.py) ---------------------------------------------------------
QUEUE = KindDef("Queue", "queues", QueueStatus, plan_queue_request, observe_queue,
                record_ops=queue_record_ops, status_written=queue_status_written)

# --- Service ---------------------------------------------------------------------------------
def plan_service_request(req: PlanRequest) -> Plan:
    status = _status(req, ServiceStatus)
    service: Any = None
    uid = status.uid if status is not None else None
    spec_revision = 0
    if req.cached is not None:
        service = req.cached.object
        uid = req.cached.uid
        spec_revision = req.cached.mod_revision
    records = [rec for rec, _ in req.records.executions.values()]
    # The instance gauges follow the records the plan reads, whoever changed them.
    service_metrics.observe_records(req.namespace, req.name, records)
    return plan_service(ServiceInput(req.namespace, req.name, service, spec_revision, uid,
                                     status, records, req.now, req.denial, req.throttled))


def _service_status_written(namespace: str, name: str, old: StatusBase | None,
                            new: StatusBase | None) -> None:
    if new is None:
        service_metrics.forget(namespace, name)
    elif isinstance(new, ServiceStatus):
        service_metrics.observe_status(namespace, name,
                                       old if isinstance(old, ServiceStatus) else None, new)


SERVICE = KindDef("Service", "services", ServiceStatus, plan_service_request,
                  status_written=_service_status_written,
                  record_changed=service_metrics.observe_record, wake_on_running=True)

KINDS: tuple[KindDef, ...] = (JOB, CRONJOB, QUEUE, SERVICE)


def by_name(kinds: tuple[KindDef, ...]) -> Mapping[str, KindDef]:
    return {k.kind: k for k in kinds}
