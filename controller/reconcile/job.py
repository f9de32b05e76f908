"""The Job planner: `plan_job(JobInput) -> Plan`, pure (Kubernetes Job semantics where
docs/architecture.md is silent).

Model. A Job has `completions` slots, indexes 0..completions-1, in both completion modes (only
Indexed tells the task its index). A slot succeeds once and is never run again; each run of a
slot is an attempt 0, 1, 2, ... and a new attempt takes the highest recorded attempt of that
slot + 1, so task ids are never reused. Everything is derived from the execution records of the
current incarnation (uid) each time: the plan depends on state, never on which event arrived.

How each recorded execution counts — active, success, task failure (budget backoffLimit),
system failure (budget systemRetryLimit) or neither — is the rule every kind shares, in
`controller/reconcile/tasks.py` (`outcome`), with never-launched intents, partitions and how
kills are sent. For a Job: a task it killed because of suspend, deletion, deadline, completion
or failure of the job counts as neither; an intent Mesos never saw is launched again under the
next attempt of its slot, no failure and no backoff, and a slot is retried at once when its
task becomes unreachable (a job does not wait for a partition to heal).

Backoff. The job-wide delay before launching again (`controller/reconcile/backoff.py`),
initial * factor^(n-1) after the latest failure, counts only task failures (n = task
failures, from the latest task failure): it exists for tasks that fail by themselves. System
failures (lost agents, dropped launches, partitions) count against systemRetryLimit but do not
delay launches — as Kubernetes' pod failure policy ignores disruptions — since waiting longer
would not make a lost agent come back.

Kills. A slot with an attempt still active (even being killed) is not launched again, and tasks
being killed still count against parallelism; they are no longer counted in `status.active`.
A slot that succeeded needs no other attempt: one still active there is killed (NotNeeded). It
happens when an attempt written off (unreachable, or an intent Mesos never saw) comes back
finished while its replacement runs: the slot counts once, and the replacement would otherwise
hold a place of parallelism, and be written off in its turn by the next partition, for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from controller.api import (
    CompletionMode,
    Condition,
    ExecutionRecord,
    InvalidObject,
    Job,
    JobPhase,
    JobSpec,
    JobStatus,
    Problem,
)
from controller.reconcile.actions import (
    Action,
    DeleteObject,
    Kill,
    Launch,
    ObjectKey,
    Plan,
    UpdateExecution,
    WriteStatus,
)
from controller.reconcile.backoff import failure_time, retry_at
from controller.reconcile.conditions import Wanted, has_condition, update_conditions
from controller.reconcile.denial import (
    THROTTLED,
    Denial,
    denial_message,
    throttled_condition,
)
from controller.reconcile.taskid import is_dns_label, task_id

# The task rules every kind shares. Their constants lived here before tasks.py and are
# re-exported (`__all__`) for code that imports them from this module.
from controller.reconcile.tasks import (
    ACTIVE_STATES,
    DELETED,
    NEVER_LAUNCHED,
    SUPERSEDED,
    SUSPENDED,
    SYSTEM_FAILURE_STATES,
    SYSTEM_REASONS,
    TASK_FAILURE_STATES,
    TASK_TIMEOUT,
    TERMINAL_STATES,
    UNREACHABLE,
    Outcome,
    came_back,
    current_incarnation,
    kill_actions,
    kill_superseded,
    needs_unreachable_mark,
    next_attempts,
    outcome,
    plan_deleted_owner,
    timeout_at,
)

PLURAL = "jobs"

__all__ = [
    "ACTIVE_STATES", "BACKOFF_LIMIT_EXCEEDED", "COMPLETE", "COMPLETIONS_REACHED",
    "DEADLINE_EXCEEDED", "DELETED", "FAILED", "INVALID", "INVALID_SPEC", "JOB_FINISHED",
    "JOB_RESUMED", "JOB_SUSPENDED", "NEVER_LAUNCHED", "NOT_NEEDED", "PLURAL", "SPEC_VALID",
    "SUPERSEDED", "SUSPENDED", "SYSTEM_FAILURE_STATES", "SYSTEM_REASONS",
    "SYSTEM_RETRY_LIMIT_EXCEEDED", "TASK_FAILURE_STATES", "TASK_TIMEOUT", "TERMINAL_STATES",
    "UNREACHABLE", "JobInput", "plan_job",
]

# Kill reasons of a Job's own, besides the shared ones of tasks.py (all count as neither
# success nor failure).
NOT_NEEDED = "NotNeeded"  # a slot beyond completions (lowered), or one that already succeeded
JOB_FINISHED = "JobFinished"  # a leftover of a Succeeded job
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
SYSTEM_RETRY_LIMIT_EXCEEDED = "SystemRetryLimitExceeded"
DEADLINE_EXCEEDED = "DeadlineExceeded"

# Condition types and reasons of JobStatus.
COMPLETE = "Complete"
FAILED = "Failed"
INVALID = "Invalid"
COMPLETIONS_REACHED = "CompletionsReached"
INVALID_SPEC = "InvalidSpec"
SPEC_VALID = "SpecValid"
JOB_SUSPENDED = "JobSuspended"
JOB_RESUMED = "JobResumed"

# The condition types of a JobStatus, in the order they are written.
_CONDITION_ORDER = (COMPLETE, FAILED, SUSPENDED, INVALID, THROTTLED)


@dataclass(frozen=True)
class JobInput:
    """Everything the planner may look at, read by the runtime just before planning.

    `job` is None when the spec key was deleted, an InvalidObject when it does not decode.
    `spec_revision` is the spec key's mod_revision (0 when deleted); `uid` its create_revision
    (for a deleted object, the uid recorded in its status, or None when unknown).
    `executions` are all records under the object's executions prefix, of every incarnation.
    `now` must be timezone-aware."""

    namespace: str
    name: str
    job: Job | InvalidObject | None
    spec_revision: int
    uid: int | None
    status: JobStatus | None
    executions: Sequence[ExecutionRecord]
    now: datetime
    denial: Denial | None = None
    """Why nothing new may be launched (the policy, a missing secret), or None."""
    throttled: str | None = None
    """The throttle holding back some of its launches at offer time, or None."""


def plan_job(inp: JobInput) -> Plan:
    """Decide what to do for one Job. Pure: same input, same plan."""
    if inp.now.tzinfo is None:
        raise ValueError("JobInput.now must be timezone-aware")
    if inp.job is None:
        return _plan_deleted(inp)
    if inp.uid is None:
        raise ValueError("JobInput.uid is required for an existing object")
    if isinstance(inp.job, Job):
        # Task ids embed the key's namespace and name: one Mesos would refuse is never built.
        problems = [Problem(f"metadata.{what}", f"{value!r} is not a DNS-1123 label")
                    for what, value in (("namespace", inp.namespace), ("name", inp.name))
                    if not is_dns_label(value)]
        if problems:
            inp = replace(inp, job=InvalidObject("Job", inp.namespace, inp.name, problems, b""))
    return _Planner(inp).plan()


def _owner(inp: JobInput) -> ObjectKey:
    return ObjectKey("Job", inp.namespace, inp.name)


def _plan_deleted(inp: JobInput) -> Plan:
    """The spec key is gone: kill every active task of any incarnation, then, once nothing is
    active, delete status and records. The status is not rewritten."""
    return plan_deleted_owner(PLURAL, inp.namespace, inp.name, inp.status, inp.executions)


class _Planner:
    """One planning pass over a present (valid or invalid) Job."""

    def __init__(self, inp: JobInput) -> None:
        self.inp = inp
        self.now = inp.now
        self.owner = _owner(inp)
        self.kills: list[Action] = []
        self.launches: list[Action] = []
        self.wakeups: list[datetime] = []
        prev = inp.status
        self.prev = prev if prev is not None and prev.uid == inp.uid else None
        # Records of this incarnation count; tasks of older ones are killed.
        self.current = current_incarnation(inp.executions, self.owner, inp.uid)
        self.kills += kill_superseded(inp.executions, self.owner, inp.uid)

    # -- the pass ------------------------------------------------------------------------

    def plan(self) -> Plan:
        job = self.inp.job
        if isinstance(job, InvalidObject):
            status = self._invalid_status(job)
        else:
            assert job is not None
            status = self._valid(job)
        actions: list[Action] = [*self.kills, *self.launches]
        write = status if status != self.inp.status else None
        if write is not None:
            actions.append(WriteStatus(write))
        if isinstance(job, Job) and status.completion_time is not None:
            ttl = job.spec.ttl_seconds_after_finished
            if ttl is not None:
                expiry = status.completion_time + timedelta(seconds=ttl)
                if expiry <= self.now:
                    actions.append(DeleteObject(PLURAL, self.inp.namespace, self.inp.name,
                                                self.inp.spec_revision))
                else:
                    self.wakeups.append(expiry)
        future = [t for t in self.wakeups if t > self.now]
        requeue = (min(future) - self.now).total_seconds() if future else None
        return Plan(tuple(actions), write, requeue)

    def _invalid_status(self, job: InvalidObject) -> JobStatus:
        """Nothing is launched or killed on a typo: tasks of the last valid revision go on."""
        tally = _Tally(self.current, completions=None, timeout=None)
        conditions = self._conditions(
            {INVALID: ("True", INVALID_SPEC, job.message)}, keep=(COMPLETE, FAILED)
        )
        prev = self.prev
        return JobStatus(
            observed_revision=self.inp.spec_revision,
            phase=JobPhase.INVALID,
            conditions=conditions,
            uid=self.inp.uid,
            active=sum(1 for r in self.current
                       if outcome(r) == Outcome.ACTIVE and not r.kill_reason),
            succeeded=prev.succeeded if prev else len(tally.succeeded_indexes),
            failed=tally.task_failures,
            system_failures=tally.system_failures,
            start_time=prev.start_time if prev else tally.first_submitted,
            completion_time=prev.completion_time if prev else None,
            completed_indexes=prev.completed_indexes if prev else [],
        )

    def _valid(self, job: Job) -> JobStatus:
        spec = job.spec
        now = self.now
        grace = spec.template.kill_grace_period_seconds
        tally = _Tally(self.current, spec.completions, spec.task_timeout_seconds)
        prev = self.prev

        start_time = prev.start_time if prev else tally.first_submitted
        completion_time = prev.completion_time if prev else None
        finished = self._recorded_finish()
        if finished is None:
            finished = self._finish(spec, tally, start_time)
        suspended = finished is None and spec.suspend
        denial = self.inp.denial if finished is None and not suspended else None

        # Kills: leftovers of a finished job, suspend, slots beyond completions, duplicates
        # of slots that succeeded, timeouts, unreachable tasks that came back.
        for rec in tally.active:
            if finished is not None:
                reason = JOB_FINISHED if finished[0] == COMPLETE else finished[1]
                self.kills += kill_actions(rec, reason, grace)
            elif suspended:
                self.kills += kill_actions(rec, SUSPENDED, grace)
            elif rec.index >= spec.completions or rec.index in tally.succeeded_indexes:
                self.kills += kill_actions(rec, NOT_NEEDED, grace)
            elif rec.kill_reason is not None:
                self.kills += kill_actions(rec, rec.kill_reason, grace)
            else:
                expiry = timeout_at(rec, spec.task_timeout_seconds)
                if expiry is not None and expiry <= now:
                    self.kills += kill_actions(rec, TASK_TIMEOUT, grace)
                elif expiry is not None:
                    self.wakeups.append(expiry)
        for rec in tally.returned:
            self.kills += kill_actions(rec, rec.kill_reason or UNREACHABLE, grace)
        for rec in tally.unreachable_unmarked:
            self.kills.append(UpdateExecution(rec.task_id, {"kill_reason": UNREACHABLE}))

        killing = {a.task_id for a in self.kills if isinstance(a, Kill | UpdateExecution)}
        running = [r for r in tally.active if r.kill_reason is None and r.task_id not in killing]

        launched = 0
        if finished is None and not suspended and denial is None:
            launched = self._launch(job, tally)
            if launched and start_time is None:
                start_time = now
        if finished is not None and completion_time is None:
            completion_time = now
        if suspended:
            # As in Kubernetes, a suspended job's deadline stops: it restarts on resume.
            start_time = None
        deadline = spec.active_deadline_seconds
        if finished is None and not suspended and start_time is not None and deadline:
            self.wakeups.append(start_time + timedelta(seconds=deadline))

        if finished is not None:
            phase = JobPhase.SUCCEEDED if finished[0] == COMPLETE else JobPhase.FAILED
        elif suspended:
            phase = JobPhase.SUSPENDED
        elif denial is not None and not running:
            # Denied (never killed): Invalid once nothing of it runs any more.
            phase = JobPhase.INVALID
        elif start_time is None or (spec.start_at is not None and now < spec.start_at
                                    and not running and not launched):
            phase = JobPhase.PENDING
        else:
            phase = JobPhase.RUNNING

        wanted: dict[str, Wanted] = {}
        if finished is not None:
            wanted[finished[0]] = ("True", finished[1], finished[2])
        if suspended:
            wanted[SUSPENDED] = ("True", JOB_SUSPENDED, "Job suspended: tasks killed")
        elif self._had(SUSPENDED):
            wanted[SUSPENDED] = ("False", JOB_RESUMED, "Job resumed")
        if denial is not None:
            wanted[INVALID] = ("True", denial.reason, denial_message(denial, bool(running)))
        elif self._had(INVALID):
            wanted[INVALID] = ("False", SPEC_VALID, "")
        if self.inp.throttled is not None and finished is None and not suspended:
            wanted[THROTTLED] = throttled_condition(self.inp.throttled)
        conditions = self._conditions(wanted, keep=(COMPLETE, FAILED))

        indexed = spec.completion_mode == CompletionMode.INDEXED
        return JobStatus(
            observed_revision=self.inp.spec_revision,
            phase=phase,
            conditions=conditions,
            uid=self.inp.uid,
            active=len(running) + launched,
            succeeded=len(tally.succeeded_indexes),
            failed=tally.task_failures,
            system_failures=tally.system_failures,
            start_time=start_time,
            completion_time=completion_time,
            completed_indexes=sorted(tally.succeeded_indexes) if indexed else [],
        )

    # -- decisions -----------------------------------------------------------------------

    def _recorded_finish(self) -> tuple[str, str, str] | None:
        """A job once Succeeded or Failed stays so (edits of a finished job change nothing)."""
        for type_ in (COMPLETE, FAILED):
            cond = self.prev.condition(type_) if self.prev else None
            if cond is not None and cond.status == "True":
                return type_, cond.reason, cond.message
        return None

    def _finish(
        self, spec: JobSpec, tally: _Tally, start_time: datetime | None
    ) -> tuple[str, str, str] | None:
        if len(tally.succeeded_indexes) >= spec.completions:
            return COMPLETE, COMPLETIONS_REACHED, f"{spec.completions} completions succeeded"
        if tally.task_failures > spec.backoff_limit:
            return FAILED, BACKOFF_LIMIT_EXCEEDED, (
                f"{tally.task_failures} task failures, backoffLimit is {spec.backoff_limit}"
            )
        if tally.system_failures > spec.system_retry_limit:
            return FAILED, SYSTEM_RETRY_LIMIT_EXCEEDED, (
                f"{tally.system_failures} system failures, systemRetryLimit is "
                f"{spec.system_retry_limit}"
            )
        deadline = spec.active_deadline_seconds
        if (deadline is not None and not spec.suspend and start_time is not None
                and self.now >= start_time + timedelta(seconds=deadline)):
            return FAILED, DEADLINE_EXCEEDED, f"Job was active longer than {deadline:g}s"
        return None

    def _launch(self, job: Job, tally: _Tally) -> int:
        spec = job.spec
        now = self.now
        if spec.start_at is not None and now < spec.start_at:
            self.wakeups.append(spec.start_at)
            return 0
        busy = {r.index for r in (*tally.active, *tally.returned)}
        todo = [i for i in range(spec.completions)
                if i not in tally.succeeded_indexes and i not in busy]
        room = min(spec.parallelism - len(tally.active) - len(tally.returned), len(todo))
        if room <= 0:
            return 0
        # Only the task's own failures delay launches (see the module docstring).
        ready_at = retry_at(spec.backoff, tally.task_failures, tally.last_failure_at)
        if ready_at is not None and now < ready_at:
            self.wakeups.append(ready_at)
            return 0
        indexed = spec.completion_mode == CompletionMode.INDEXED
        uid = self.inp.uid
        assert uid is not None
        for index in todo[:room]:
            attempt = tally.next_attempt.get(index, 0)
            tid = task_id(self.owner, uid, index, attempt)
            env = {
                "DOCKET_JOB_NAME": self.inp.name,
                "DOCKET_JOB_NAMESPACE": self.inp.namespace,
                "DOCKET_TASK_ID": tid,
                "DOCKET_ATTEMPT": str(attempt),
            }
            if indexed:
                env["DOCKET_JOB_INDEX"] = str(index)
                env["JOB_COMPLETION_INDEX"] = str(index)
            self.launches.append(Launch(tid, self.owner, index, attempt, spec.template, env))
        if spec.task_timeout_seconds is not None:
            # The intents are recorded with submitted_at = now: their timeout starts now.
            self.wakeups.append(now + timedelta(seconds=spec.task_timeout_seconds))
        return room

    # -- conditions ----------------------------------------------------------------------

    def _had(self, type_: str) -> bool:
        return has_condition(self.prev, type_)

    def _conditions(self, wanted: dict[str, Wanted], keep: tuple[str, ...]) -> list[Condition]:
        """The recorded conditions updated to `wanted` (conditions.py: the shared rule)."""
        return update_conditions(self.prev.conditions if self.prev else (), wanted,
                                 order=_CONDITION_ORDER, keep=keep, now=self.now)


class _Tally:
    """The records of the current incarnation, counted."""

    def __init__(
        self,
        records: Sequence[ExecutionRecord],
        completions: int | None,
        timeout: float | None,
    ) -> None:
        self.active: list[ExecutionRecord] = []
        self.succeeded_indexes: set[int] = set()
        self.task_failures = 0
        self.system_failures = 0
        # When the latest task failure ended (system failures do not count): the backoff
        # runs from it.
        self.last_failure_at: datetime | None = None
        self.unreachable_unmarked: list[ExecutionRecord] = []
        # Written off as unreachable, yet reporting again: to be killed, still a failure.
        self.returned: list[ExecutionRecord] = []
        submitted = [r.submitted_at for r in records if r.submitted_at is not None]
        self.first_submitted = min(submitted) if submitted else None
        self.next_attempt = next_attempts(records)
        for rec in sorted(records, key=lambda r: (r.index, r.attempt)):
            counted = outcome(rec)
            if counted == Outcome.ACTIVE:
                self.active.append(rec)
            elif came_back(rec):
                self.returned.append(rec)
            if needs_unreachable_mark(rec):
                self.unreachable_unmarked.append(rec)
            if counted == Outcome.SUCCESS:
                if completions is None or rec.index < completions:
                    self.succeeded_indexes.add(rec.index)
            elif counted == Outcome.SYSTEM_FAILURE:
                self.system_failures += 1
            elif counted == Outcome.TASK_FAILURE:
                self.task_failures += 1
                at = failure_time(rec, timeout)
                if at is not None and (self.last_failure_at is None or at > self.last_failure_at):
                    self.last_failure_at = at

