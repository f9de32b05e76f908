"""Status written by the controller under its own key, and the execution record of one task
attempt. Users never write these; they read them with etcdctl or `docket get/describe`."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from controller.api.base import DocketModel


class Condition(DocketModel):
    type: str = Field(description="Complete, Failed, Suspended, Invalid, ...")
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: AwareDatetime | None = None


class StatusBase(DocketModel):
    observed_revision: int | None = Field(
        default=None, description="mod_revision of the spec key last acted on."
    )
    phase: str = "Pending"
    conditions: list[Condition] = Field(default_factory=list)
    uid: int | None = Field(
        default=None, description="create_revision of the spec key this status belongs to."
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class JobPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    INVALID = "Invalid"


class JobStatus(StatusBase):
    phase: JobPhase = JobPhase.PENDING
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    system_failures: int = 0
    start_time: AwareDatetime | None = None
    completion_time: AwareDatetime | None = None
    completed_indexes: list[int] = Field(default_factory=list)


class CronJobStatus(StatusBase):
    phase: Literal["Pending", "Active", "Suspended", "Invalid"] = "Pending"
    last_schedule_time: AwareDatetime | None = Field(
        default=None, description="Scheduled time of the last Job created on schedule.")
    last_successful_time: AwareDatetime | None = Field(
        default=None, description="When a Job of this CronJob last completed successfully.")
    next_schedule_time: AwareDatetime | None = Field(
        default=None, description="The next slot, as the schedule stood when last planned.")
    scheduled_through: AwareDatetime | None = Field(
        default=None,
        description="Every slot at or before this instant was run or counted as missed; "
        "slots after it are owed. Never moves backwards, so a clock that jumps back repeats "
        "no slot.",
    )
    active: list[str] = Field(default_factory=list, description="Names of running Jobs.")
    missed: dict[str, int] = Field(
        default_factory=dict,
        description="Slots that created no Job, by reason: MissedDuringDowntime, TooLate, "
        "ConcurrencyForbid, Suspended.",
    )


class QueueTotals(DocketModel):
    """Counts of batches whose execution records were deleted once they were done (acked or
    dead-lettered): added in the same transaction as the deletion, so nothing is counted twice
    or lost."""

    succeeded: int = 0
    dead_lettered: int = 0
    failed_attempts: int = 0


class BatchSummary(DocketModel):
    """A finished batch, kept in status after its records were deleted (`docket describe`)."""

    batch: int
    task_id: str = Field(description="Its last execution.")
    messages: int
    result: Literal["Succeeded", "DeadLettered", "Vanished"]
    reason: str = ""
    attempts: int = 1
    exit_code: int | None = None
    finished_at: AwareDatetime | None = None


class QueueStatus(StatusBase):
    """Exact counts: at any instant of a quiet queue, succeeded + deadLettered + pending +
    inFlight equals the messages ever produced."""

    phase: Literal["Pending", "Active", "Idle", "Suspended", "Invalid"] = "Pending"
    pending: int = Field(default=0, description="Messages in the source, not claimed.")
    in_flight: int = Field(default=0, description="Messages claimed by open batches.")
    succeeded: int = Field(default=0, description="Messages acked, since creation.")
    dead_lettered: int = Field(default=0, description="Messages dead-lettered, since creation.")
    failed_attempts: int = Field(default=0, description="Failed tasks, since creation.")
    active: int = Field(default=0, description="Tasks that may be running.")
    oldest_pending_seconds: int | None = Field(
        default=None, description="Age of the oldest pending message since Docket first saw it "
        "(refreshed every few seconds).")
    oldest_pending_since: AwareDatetime | None = None
    next_batch: int = Field(default=0, description="The number the next batch takes.")
    claiming: dict[int, str] = Field(
        default_factory=dict,
        description="Redis batches reserved before their messages are moved (batch -> Claiming "
        "or TooLarge): the first step of the two-step Redis claim.")
    source: dict[str, str] | None = Field(
        default=None, description="The source the open batches were claimed from.")
    archived: QueueTotals = Field(default_factory=QueueTotals)
    recent_batches: list[BatchSummary] = Field(default_factory=list)
    last_poll_time: AwareDatetime | None = None


class Endpoint(DocketModel):
    """Where one instance of a Service can be reached."""

    index: int
    task_id: str
    host: str | None = None
    ports: dict[str, int] = Field(
        default_factory=dict, description="Port name (or PORT<n>) -> host port.")
    healthy: bool | None = None
    version: str | None = None


class ServiceStatus(StatusBase):
    phase: Literal["Pending", "Running", "Deploying", "Degraded", "Invalid"] = "Pending"
    instances: int = Field(default=0, description="Instances wanted.")
    running: int = Field(default=0, description="Instances reported TASK_RUNNING.")
    healthy: int = Field(default=0, description="Running and passing the health check (all "
                         "running ones when there is none).")
    updated: int = Field(default=0, description="Instances of the current version.")
    unavailable: int = Field(default=0, description="Instances wanted but not healthy.")
    version: str | None = Field(default=None, description="The current version: a digest of "
                                "the template and the health check.")
    rollout_started_at: AwareDatetime | None = None
    last_progress_at: AwareDatetime | None = Field(
        default=None, description="When the rollout last made progress.")
    endpoints: list[Endpoint] = Field(default_factory=list)
    consecutive_failures: int = 0
    backoff_delay_seconds: float = Field(
        default=0, description="The delay before the next launch after failures.")
    next_launch_at: AwareDatetime | None = Field(
        default=None, description="No launch before this (crash-loop backoff).")


LAUNCHING = "LAUNCHING"
"""Execution state meaning: Docket recorded its intent to launch; no Mesos update seen yet."""


class ExecutionRecord(DocketModel):
    """One task attempt, from the intent to launch to its terminal state."""

    task_id: str
    index: int = Field(ge=0)
    attempt: int = Field(ge=0)
    state: str = Field(description="A Mesos TaskState name, or LAUNCHING.")
    agent_id: str | None = None
    hostname: str | None = None
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    failure_class: Literal["task", "system"] | None = None
    kill_reason: str | None = Field(
        default=None, description="Why Docket asked Mesos to kill it (TaskTimeout, ...), or "
        "NeverLaunched: an intent Mesos never saw, written off and launched again."
    )
    submitted_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    duration_seconds: float | None = None
    sandbox_path: str | None = None
    message_ids: list[str] | None = Field(
        default=None, description="A Queue batch's etcd item ids (etcd sources).")
    message_count: int | None = Field(
        default=None, description="How many messages a Queue batch carries.")
    version: str | None = Field(
        default=None, description="A Service instance's version (its template's digest).")
    host_ports: list[int] | None = Field(
        default=None, description="Host ports the task was given (PORT0..), in order.")
    healthy: bool | None = Field(
        default=None, description="The last health check result Mesos reported.")
    health_changed_at: AwareDatetime | None = Field(
        default=None, description="When `healthy` last changed.")
    unreachable_at: AwareDatetime | None = Field(
        default=None, description="When Mesos reported it TASK_UNREACHABLE.")
