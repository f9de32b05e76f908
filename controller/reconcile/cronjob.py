"""The CronJob planner: `plan_cronjob(CronJobInput) -> CronJobPlan`, pure (no I/O, no clock).

A CronJob creates one Job per slot of its schedule (`controller/reconcile/schedule.py`: the
slots, their DST rule and how missed ones are counted). The Job of a slot is named
`<cronjob>-<slot in minutes since the epoch>`, so a slot can only ever have one Job.

Owed slots. `status.scheduledThrough` is the accounting frontier: every slot at or before it
was run or counted as missed, the slots after it (up to `now`) are owed. On the first look at
a CronJob the frontier is `now` (nothing before the controller saw it is owed). A pass with
slots owed takes the most recent one and decides it, and counts the others in `status.missed`
as MissedDuringDowntime: after any outage at most one Job is created, never a burst of
catch-up runs, and a CronJob is never wedged by "too many missed start times". The frontier
never moves backwards, so a clock jumping back repeats no slot; a clock jumping forward is an
outage. The most recent owed slot is
- counted TooLate when `startingDeadlineSeconds` is set and `now` is later than slot + deadline;
- counted ConcurrencyForbid under Forbid while a Job of this CronJob is active;
- kept owed while suspended (the ones before it are counted Suspended), so that resuming runs
  at most that one slot, if still within the deadline;
- otherwise run: CreateJob, under Replace after DeleteJob of every active Job.

Exactly once. The executor applies the plan's CreateJob and WriteStatus in ONE etcd
transaction that succeeds only if the Job key does not exist, the status key still has the
mod_revision the plan was made from, and the leader key is ours; if it fails, nothing of it is
written and the CronJob is planned again from what etcd then holds. The status carries the
frontier, so a committed creation is never owed again, and a crash before the commit leaves the
slot owed. The planner is also idempotent on its own: a slot whose Job already exists is
accounted without creating or counting it again. DeleteJob actions (Replace, history, deleted
owner, older incarnations) are separate writes, applied before the transaction; they are
level-triggered, so a crash between them and the creation is resumed: under Replace every
active Job scheduled before `lastScheduleTime` is deleted on every pass.

History: finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit are deleted,
oldest scheduled first (the Job controller then removes their status and executions). Deleting
the CronJob deletes every Job it owns, then its status. An invalid spec (a bad expression or
zone, a name too long for the Job names) creates and deletes nothing but older incarnations'
Jobs, and says which field is wrong, like a Job.

The action types below are CronJob's for now; they move to `reconcile/actions.py` when the
core is reshaped for every kind (issue 10, part A).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.api import (
    ConcurrencyPolicy,
    Condition,
    CronJob,
    CronJobStatus,
    InvalidObject,
    Job,
    JobPhase,
    ObjectMeta,
    OwnerReference,
    Problem,
)
from controller.api.kinds import MAX_CRONJOB_NAME
from controller.reconcile.actions import DeleteOwnerData, WriteStatus
from controller.reconcile.conditions import Wanted, has_condition, update_conditions
from controller.reconcile.denial import Denial, denial_message
from controller.reconcile.schedule import Schedule, ScheduleError, slot_id
from controller.reconcile.taskid import is_dns_label

PLURAL = "cronjobs"
SCHEDULED_TIME = "docket.dev/scheduled-time"
"""Annotation of each created Job: its slot, RFC 3339 in the CronJob's zone."""
CRONJOB_LABEL = "docket.dev/cronjob"
"""Label of each created Job: the name of the CronJob that owns it."""

# Reasons a slot created no Job (keys of status.missed and of the metric's label).
MISSED_DURING_DOWNTIME = "MissedDuringDowntime"
TOO_LATE = "TooLate"
CONCURRENCY_FORBID = "ConcurrencyForbid"
SUSPENDED = "Suspended"

# Reasons a Job is deleted.
REPLACED = "Replaced"
HISTORY_LIMIT = "HistoryLimit"
OWNER_DELETED = "OwnerDeleted"
SUPERSEDED = "Superseded"  # owned by an older incarnation (uid) of the CronJob

# Condition types and reasons.
INVALID = "Invalid"
INVALID_SPEC = "InvalidSpec"
SPEC_VALID = "SpecValid"
CRONJOB_SUSPENDED = "CronJobSuspended"
CRONJOB_RESUMED = "CronJobResumed"
_CONDITION_ORDER = (SUSPENDED, INVALID)

_FINISHED = (JobPhase.SUCCEEDED, JobPhase.FAILED)


@dataclass(frozen=True)
class OwnedJob:
    """A Job carrying this CronJob's owner reference, as the runtime read it.

    `owner_uid` is the uid of the CronJob incarnation that created it; `scheduled_time` its
    `docket.dev/scheduled-time` (for a manual run, when it was requested); `phase` None when
    it has no status yet; `mod_revision` its spec key's (deletions are guarded on it)."""

    name: str
    owner_uid: int
    mod_revision: int
    scheduled_time: datetime
    phase: JobPhase | None = None
    completion_time: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.phase in _FINISHED


@dataclass(frozen=True)
class OwnerRef:
    kind: str
    namespace: str
    name: str
    uid: int


@dataclass(frozen=True)
class CreateJob:
    """Create the Job `job` (spec key `jobs/<namespace>/<name>`) owned by `owner`, only if its
    key does not exist, in one transaction with the plan's WriteStatus (module docstring)."""

    namespace: str
    name: str
    job: Job
    owner: OwnerRef
    scheduled_time: datetime


@dataclass(frozen=True)
class DeleteJob:
    """Delete a Job's spec key if its mod_revision is still `expected_mod_revision`; the Job
    controller then kills its tasks and removes its status and executions."""

    namespace: str
    name: str
    expected_mod_revision: int
    reason: str


CronJobAction = DeleteJob | CreateJob | WriteStatus | DeleteOwnerData


@dataclass(frozen=True)
class CronJobPlan:
    """What one pass decided. `actions` in the order to apply them: deletions, then the
    creation with the status. `missed` holds the slots this plan counts as missed, by reason
    (for `docket_cronjob_missed_schedules_total`, once its status is committed).
    `requeue_after`: seconds until the next slot, or None."""

    actions: tuple[CronJobAction, ...] = ()
    status: CronJobStatus | None = None
    requeue_after: float | None = None
    missed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CronJobInput:
    """Everything the planner may look at. `cronjob` None when the spec key was deleted, an
    InvalidObject when it does not decode; `uid` the spec key's create_revision; `jobs` every
    Job labelled as this CronJob's, of any incarnation; `now` timezone-aware."""

    namespace: str
    name: str
    cronjob: CronJob | InvalidObject | None
    spec_revision: int
    uid: int | None
    status: CronJobStatus | None
    jobs: Sequence[OwnedJob]
    now: datetime
    denial: Denial | None = None
    """Why no Job may be created (the policy, a missing secret), or None."""


def job_name(cronjob: str, slot: datetime) -> str:
    return f"{cronjob}-{slot_id(slot)}"


def plan_cronjob(inp: CronJobInput) -> CronJobPlan:
    """Decide what to do for one CronJob. Pure: same input, same plan."""
    if inp.now.tzinfo is None:
        raise ValueError("CronJobInput.now must be timezone-aware")
    if inp.cronjob is None:
        return _plan_deleted(inp)
    if inp.uid is None:
        raise ValueError("CronJobInput.uid is required for an existing object")
    return _Planner(inp, inp.uid).plan()


def _plan_deleted(inp: CronJobInput) -> CronJobPlan:
    if inp.jobs:
        return CronJobPlan(tuple(DeleteJob(inp.namespace, j.name, j.mod_revision, OWNER_DELETED)
                                 for j in _oldest_first(inp.jobs)))
    if inp.status is None:
        return CronJobPlan()
    return CronJobPlan((DeleteOwnerData(PLURAL, inp.namespace, inp.name),))


def _oldest_first(jobs: Sequence[OwnedJob]) -> list[OwnedJob]:
    return sorted(jobs, key=lambda j: (j.scheduled_time, j.name))


class _Planner:
    def __init__(self, inp: CronJobInput, uid: int) -> None:
        self.inp = inp
        self.uid = uid
        self.now = inp.now
        prev = inp.status
        self.prev = prev if prev is not None and prev.uid == uid else None
        self.owned = [j for j in inp.jobs if j.owner_uid == uid]
        self.deletes = [DeleteJob(inp.namespace, j.name, j.mod_revision, SUPERSEDED)
                        for j in _oldest_first([j for j in inp.jobs if j.owner_uid != uid])]

    def plan(self) -> CronJobPlan:
        problems = self._problems()
        if problems:
            status = self._invalid(InvalidObject("CronJob", self.inp.namespace, self.inp.name,
                                                 problems, b""))
            return self._finish(status, None, Counter(), None)
        cronjob = self.inp.cronjob
        assert isinstance(cronjob, CronJob)
        return self._valid(cronjob, Schedule.parse(cronjob.spec.schedule,
                                                   cronjob.spec.time_zone))

    def _problems(self) -> list[Problem]:
        cronjob = self.inp.cronjob
        if isinstance(cronjob, InvalidObject):
            return cronjob.problems
        assert cronjob is not None
        name = self.inp.name
        if not is_dns_label(self.inp.namespace):
            return [Problem("metadata.namespace", f"{self.inp.namespace!r} is not a DNS-1123 "
                                                  "label")]
        if not is_dns_label(name) or len(name) > MAX_CRONJOB_NAME:
            return [Problem("metadata.name", f"{name!r} is not a DNS-1123 label of at most "
                                             f"{MAX_CRONJOB_NAME} characters")]
        try:
            Schedule.parse(cronjob.spec.schedule, cronjob.spec.time_zone)
        except ScheduleError as exc:
            return [Problem(exc.field, str(exc))]
        return []

    def _finish(self, status: CronJobStatus, create: CreateJob | None, missed: Counter[str],
                next_slot: datetime | None) -> CronJobPlan:
        actions: list[CronJobAction] = list(self.deletes)
        if create is not None:
            actions.append(create)
        write = status if status != self.inp.status else None
        if write is not None:
            actions.append(WriteStatus(write))
        requeue = (next_slot - self.now).total_seconds() if next_slot is not None else None
        return CronJobPlan(tuple(actions), write, requeue, dict(missed))

    def _invalid(self, problem: InvalidObject) -> CronJobStatus:
        prev = self.prev or CronJobStatus()
        return prev.model_copy(update={
            "observed_revision": self.inp.spec_revision,
            "uid": self.uid,
            "phase": "Invalid",
            "conditions": self._conditions({INVALID: ("True", INVALID_SPEC, problem.message)},
                                           keep=(SUSPENDED,)),
            "next_schedule_time": None,
            "active": [j.name for j in _oldest_first(self.owned) if not j.finished],
            "last_successful_time": self._last_success(),
        })

    def _valid(self, cronjob: CronJob, schedule: Schedule) -> CronJobPlan:
        spec = cronjob.spec
        now = self.now
        prev = self.prev
        missed: Counter[str] = Counter()
        through = prev.scheduled_through if prev else None
        last_schedule = prev.last_schedule_time if prev else None
        create: CreateJob | None = None
        active = [j for j in self.owned if not j.finished]
        existing = {j.name: j for j in self.inp.jobs}

        if through is None:
            through = last_schedule or now
        else:
            slot, owed = schedule.most_recent_slot(through, now)
            name = job_name(self.inp.name, slot) if slot is not None else ""
            there = existing.get(name)
            if slot is None:
                pass
            elif there is not None and there.owner_uid != self.uid:
                pass  # an older incarnation's Job holds the name: owed until it is deleted
            elif there is not None:
                # Created by a pass whose status we have not seen: account it, once.
                missed[MISSED_DURING_DOWNTIME] += owed - 1
                through = slot
                last_schedule = max(last_schedule or slot, slot)
            elif spec.suspend:
                if owed > 1:
                    missed[SUSPENDED] += owed - 1
                    through = slot - timedelta(microseconds=1)
            elif self.inp.denial is not None:
                # As while suspended, the newest slot stays owed: it runs once the denial
                # lifts (within startingDeadlineSeconds); the ones before it are missed.
                if owed > 1:
                    missed[self.inp.denial.reason] += owed - 1
                    through = slot - timedelta(microseconds=1)
            else:
                missed[MISSED_DURING_DOWNTIME] += owed - 1
                through = slot
                deadline = spec.starting_deadline_seconds
                if deadline is not None and now > slot + timedelta(seconds=deadline):
                    missed[TOO_LATE] += 1
                elif spec.concurrency_policy == ConcurrencyPolicy.FORBID and active:
                    missed[CONCURRENCY_FORBID] += 1
                else:
                    create = self._create(cronjob, schedule, name, slot)
                    last_schedule = slot

        if spec.concurrency_policy == ConcurrencyPolicy.REPLACE and last_schedule is not None:
            for job in _oldest_first(active):
                if job.scheduled_time < last_schedule:
                    self.deletes.append(DeleteJob(self.inp.namespace, job.name,
                                                  job.mod_revision, REPLACED))
        self._prune(spec.successful_jobs_history_limit, JobPhase.SUCCEEDED)
        self._prune(spec.failed_jobs_history_limit, JobPhase.FAILED)

        deleted = {d.name for d in self.deletes}
        running = [j for j in _oldest_first(active) if j.name not in deleted]
        names = [j.name for j in running] + ([create.name] if create is not None else [])
        total = Counter(prev.missed if prev else {})
        total.update(missed)
        next_slot = schedule.next_slot(max(through, now))

        wanted: dict[str, Wanted] = {}
        if spec.suspend:
            wanted[SUSPENDED] = ("True", CRONJOB_SUSPENDED, "No new Jobs are created")
        elif self._had(SUSPENDED):
            wanted[SUSPENDED] = ("False", CRONJOB_RESUMED, "")
        denial = self.inp.denial if not spec.suspend else None
        if denial is not None:
            wanted[INVALID] = ("True", denial.reason, denial_message(denial, bool(running)))
        elif self._had(INVALID):
            wanted[INVALID] = ("False", SPEC_VALID, "")
        status = CronJobStatus(
            observed_revision=self.inp.spec_revision,
            uid=self.uid,
            phase="Suspended" if spec.suspend else "Invalid" if denial is not None
            and not running else "Active",
            conditions=self._conditions(wanted, keep=()),
            last_schedule_time=last_schedule,
            last_successful_time=self._last_success(),
            next_schedule_time=next_slot,
            scheduled_through=through,
            active=names,
            missed={k: v for k, v in sorted(total.items()) if v},
        )
        return self._finish(status, create, +missed, next_slot)

    def _create(self, cronjob: CronJob, schedule: Schedule, name: str,
                slot: datetime) -> CreateJob:
        template = cronjob.spec.job_template
        labels = {**template.metadata.labels, CRONJOB_LABEL: self.inp.name}
        annotations = {**template.metadata.annotations,
                       SCHEDULED_TIME: schedule.local(slot).isoformat()}
        job = Job(api_version="docket.dev/v1", kind="Job",
                  metadata=ObjectMeta(name=name, namespace=self.inp.namespace, labels=labels,
                                      annotations=annotations,
                                      owner_references=[OwnerReference(
                                          kind="CronJob", name=self.inp.name, uid=self.uid)]),
                  spec=template.spec)
        owner = OwnerRef("CronJob", self.inp.namespace, self.inp.name, self.uid)
        return CreateJob(self.inp.namespace, name, job, owner, slot)

    def _prune(self, limit: int, phase: JobPhase) -> None:
        done = _oldest_first([j for j in self.owned if j.phase == phase])
        excess = len(done) - limit
        for job in done[:max(excess, 0)]:
            self.deletes.append(DeleteJob(self.inp.namespace, job.name, job.mod_revision,
                                          HISTORY_LIMIT))

    def _last_success(self) -> datetime | None:
        times = [j.completion_time or j.scheduled_time for j in self.owned
                 if j.phase == JobPhase.SUCCEEDED]
        if self.prev is not None and self.prev.last_successful_time is not None:
            times.append(self.prev.last_successful_time)
        return max(times) if times else None

    def _had(self, type_: str) -> bool:
        return has_condition(self.prev, type_)

    def _conditions(self, wanted: dict[str, Wanted], keep: tuple[str, ...]) -> list[Condition]:
        """The recorded conditions updated to `wanted` (conditions.py: the shared rule)."""
        return update_conditions(self.prev.conditions if self.prev else (), wanted,
                                 order=_CONDITION_ORDER, keep=keep, now=self.now)
