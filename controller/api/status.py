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


class QueueStatus(StatusBase):
    in_flight: int = 0
    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    last_poll_time: AwareDatetime | None = None


class ServiceStatus(StatusBase):
    desired: int = 0
    running: int = 0
    staged: int = 0
    updated: int = 0


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
