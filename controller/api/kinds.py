"""The four kinds users write into etcd — Job, CronJob, Queue, Service — and their specs.

Every default is stated in the field's description, because `crds/` and `docket validate`
are how users discover them.
"""

from __future__ import annotations

import zoneinfo
from enum import StrEnum
from typing import Annotated, Literal

from croniter import croniter
from pydantic import AwareDatetime, Field, field_validator, model_validator

from controller.api.base import (
    MAX_COUNT,
    MAX_SECONDS,
    DocketModel,
    FieldError,
    Flag,
    Int,
    Number,
    ObjectMeta,
)
from controller.api.service import ServiceSpec
from controller.api.template import TaskTemplate

ApiVersion = Literal["docket.dev/v1"]


class CompletionMode(StrEnum):
    NON_INDEXED = "NonIndexed"
    INDEXED = "Indexed"


class Backoff(DocketModel):
    """Exponential delay before a retry: initial * factor^(failures-1), capped at max."""

    initial_seconds: Number = Field(
        default=10, gt=0, le=MAX_SECONDS, description="Delay before the first retry. Default: 10."
    )
    max_seconds: Number = Field(
        default=360, gt=0, le=MAX_SECONDS, description="Longest delay. Default: 360."
    )
    factor: Number = Field(
        default=2, ge=1, le=100, description="Growth of the delay per failure. Default: 2."
    )


class RetryPolicy(DocketModel):
    """Retry budgets and timing shared by Job and Queue."""

    backoff_limit: Int = Field(
        default=6, ge=0, le=MAX_COUNT,
        description="Failures of the task itself before giving up. Default: 6."
    )
    system_retry_limit: Int = Field(
        default=10,
        ge=0,
        le=MAX_COUNT,
        description="Infrastructure failures (lost or unreachable agent, dropped launch, "
        "rescinded offer) before giving up. Default: 10.",
    )
    backoff: Backoff = Field(
        default_factory=Backoff,
        description="Exponential delay between retries. Default: 10 s initial, 360 s max, "
        "factor 2.",
    )
    task_timeout_seconds: Number | None = Field(
        default=None, gt=0, le=MAX_SECONDS,
        description="Hard timeout of one execution. Default: none."
    )


class JobSpec(RetryPolicy):
    completions: Int = Field(
        default=1, ge=1, le=MAX_COUNT,
        description="Successful tasks needed to complete. Default: 1."
    )
    parallelism: Int = Field(
        default=1, ge=1, le=MAX_COUNT,
        description="Tasks running at the same time at most. Default: 1."
    )
    completion_mode: CompletionMode = Field(
        default=CompletionMode.NON_INDEXED,
        description="NonIndexed or Indexed (each task gets DOCKET_JOB_INDEX). "
        "Default: NonIndexed.",
    )
    active_deadline_seconds: Number | None = Field(
        default=None, gt=0, le=MAX_SECONDS,
        description="Deadline of the whole job from its start. Default: none."
    )
    start_at: AwareDatetime | None = Field(
        default=None, description="Do not start before this time (RFC 3339). Default: now."
    )
    ttl_seconds_after_finished: Int | None = Field(
        default=None,
        ge=0,
        le=MAX_SECONDS,
        description="Delete the job and its records this long after it finished. "
        "Default: keep forever.",
    )
    suspend: Flag = Field(
        default=False, description="Kill running tasks and launch nothing. Default: false."
    )
    template: TaskTemplate = Field(description="The task to run. Required.")


class JobTemplateMeta(DocketModel):
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels of each created Job. Default: none."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of each created Job. Default: none."
    )


class JobTemplate(DocketModel):
    metadata: JobTemplateMeta = Field(default_factory=JobTemplateMeta)
    spec: JobSpec


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


_MAX_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30,
             12: 31}
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class CronJobSpec(DocketModel):
    schedule: str = Field(
        description="5-field cron expression or @yearly, @monthly, @weekly, @daily, "
        "@midnight, @hourly. Required."
    )
    time_zone: str = Field(default="UTC", description="IANA time zone. Default: UTC.")
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.ALLOW, description="Allow, Forbid or Replace. Default: Allow."
    )
    starting_deadline_seconds: Int | None = Field(
        default=None, gt=0, le=MAX_SECONDS,
        description="Skip a run started later than this. Default: none."
    )
    suspend: Flag = Field(default=False, description="Create no new Jobs. Default: false.")
    successful_jobs_history_limit: Int = Field(
        default=3, ge=0, le=MAX_COUNT, description="Succeeded Jobs kept. Default: 3."
    )
    failed_jobs_history_limit: Int = Field(
        default=1, ge=0, le=MAX_COUNT, description="Failed Jobs kept. Default: 1."
    )
    job_template: JobTemplate = Field(description="The Job to create on each run. Required.")

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        text = value.strip()
        if text.startswith("@"):
            if text not in _CRON_MACROS:
                raise ValueError(f"unknown schedule macro {text!r}")
            return text
        if len(text.split()) != 5:
            raise ValueError("must have 5 fields: minute hour day-of-month month day-of-week")
        if not croniter.is_valid(text):
            raise ValueError(f"invalid cron expression {text!r}")
        # croniter's day-relative extensions (and its silent dropping of W) are not Docket's.
        if "#" in text or any(c.isalpha() for c in text.split()[2]):
            raise ValueError("L, W and # are not supported")
        (_, _, days, months, weekdays), _ = croniter.expand(text)
        if weekdays == ["*"] and days != ["*"] and not any(
                isinstance(d, int) and isinstance(m, int) and d <= _MAX_DAYS[m]
                for m in (range(1, 13) if months == ["*"] else months) for d in days):
            raise ValueError(f"{text!r} never matches a date")
        return text

    @field_validator("time_zone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class EtcdSource(DocketModel):
    """Messages are keys under `<prefix>/queue-items/<namespace>/<queue>/`, taken oldest first
    (by create revision); any producer writes them, e.g. with `etcdctl put`."""

    type: Literal["etcd"] = Field(description="etcd. Required.")


class RedisSource(DocketModel):
    """Messages are elements of a Redis list: producers RPUSH, Docket takes from the head."""

    type: Literal["redis"] = Field(description="redis. Required.")
    url: str = Field(pattern=r"^rediss?://", description="redis:// or rediss:// URL. Required.")
    key: str = Field(min_length=1, description="Name of the list. Required.")


QueueSource = Annotated[EtcdSource | RedisSource, Field(discriminator="type")]

ETCD_MAX_BATCH = 100
"""A batch is claimed in one etcd transaction with its launch intent, one claim key per
message; etcd refuses transactions of more than 128 operations by default (--max-txn-ops)."""

MAX_BATCH_BYTES = 1024 * 1024
"""A batch travels in the task's environment (DOCKET_BATCH and DOCKET_BATCH_B64); Linux
refuses an exec whose environment is larger than a few MiB."""


class DeadLetter(DocketModel):
    """Where a batch's messages go when its retries are exhausted."""

    key: str = Field(
        min_length=1,
        description="For an etcd source, a key prefix under <prefix>/queue-dead/<namespace>/ "
        "(each message becomes <key><itemId>); for a Redis source, a list in the same Redis. "
        "Required.",
    )


class QueueSpec(RetryPolicy):
    source: QueueSource = Field(description="Where messages come from. Required.")
    batch_size: Int = Field(
        default=1, ge=1, le=MAX_COUNT,
        description=f"Messages per task at most. Default: 1; at most {ETCD_MAX_BATCH} for an "
        "etcd source."
    )
    batch_separator: str = Field(
        default="\n", description="Joins a batch in DOCKET_BATCH. Default: newline."
    )
    max_batch_bytes: Int = Field(
        default=64 * 1024, ge=1, le=MAX_BATCH_BYTES,
        description="A batch is cut before it grows past this many bytes (separators "
        "included); a single larger message goes to the dead letter as MessageTooLarge. "
        "Default: 65536."
    )
    max_concurrent: Int = Field(
        default=1, ge=1, le=MAX_COUNT,
        description="Batches claimed at once at most (running, or waiting for a retry). "
        "Default: 1."
    )
    poll_interval_seconds: Number = Field(
        default=5, gt=0, le=MAX_SECONDS, description="Seconds between polls of a Redis source "
        "(an etcd source is watched). Default: 5."
    )
    suspend: Flag = Field(
        default=False,
        description="Claim nothing and launch nothing; running tasks finish. Default: false."
    )
    dead_letter: DeadLetter | None = Field(
        default=None,
        description="Where exhausted batches go. Default: <prefix>/queue-dead/<namespace>/"
        "<queue>/ for etcd, the list <key>:dead for Redis."
    )
    template: TaskTemplate = Field(description="The task run for each batch. Required.")

    @model_validator(mode="after")
    def _check_source_limits(self) -> QueueSpec:
        if isinstance(self.source, EtcdSource):
            if self.batch_size > ETCD_MAX_BATCH:
                raise FieldError("batchSize", f"must be at most {ETCD_MAX_BATCH} for an "
                                 "etcd source (a batch is claimed in one etcd transaction, "
                                 "and etcd allows 128 operations in one)")
            if self.dead_letter is not None and not self.dead_letter.key.startswith("/"):
                raise FieldError("deadLetter.key",
                                 "must be a key prefix starting with '/' for an etcd source")
        return self


class _Object(DocketModel):
    api_version: ApiVersion = Field(description="Always docket.dev/v1.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


class Job(_Object):
    """Run a task to completion `completions` times."""

    kind: Literal["Job"]
    spec: JobSpec


MAX_CRONJOB_NAME = 52
"""A CronJob's Jobs are named `<name>-<minutes since the epoch>` and must stay DNS-1123
labels (63 characters): the name leaves room for the suffix."""


class CronJob(_Object):
    """Create Jobs on a cron schedule."""

    kind: Literal["CronJob"]
    spec: CronJobSpec

    @model_validator(mode="after")
    def _check_name_length(self) -> CronJob:
        if self.metadata.name is not None and len(self.metadata.name) > MAX_CRONJOB_NAME:
            raise FieldError("metadata.name", f"must be no more than {MAX_CRONJOB_NAME} "
                             "characters: Jobs are named <name>-<minutes since the epoch>")
        return self


class Queue(_Object):
    """Consume messages in batches, one task per batch."""

    kind: Literal["Queue"]
    spec: QueueSpec


class Service(_Object):
    """Keep `instances` copies of a long-running task alive."""

    kind: Literal["Service"]
    spec: ServiceSpec


AnyObject = Job | CronJob | Queue | Service

