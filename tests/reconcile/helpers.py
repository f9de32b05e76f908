"""Builders for planner inputs with a fixed clock, shared by the reconcile tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.api import ExecutionRecord, InvalidObject, Job, JobStatus, Problem
from controller.reconcile import JobInput, ObjectKey, task_id

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS = "default"
NAME = "hello"
UID = 100
REV = 105
OWNER = ObjectKey("Job", NS, NAME)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(**spec: Any) -> Job:
    body: dict[str, Any] = {"template": {"command": "echo hello"}}
    body.update(spec)
    return Job.model_validate(
        {"apiVersion": "docket.dev/v1", "kind": "Job",
         "metadata": {"name": NAME, "namespace": NS}, "spec": body}
    )


def invalid() -> InvalidObject:
    return InvalidObject("Job", NS, NAME, [Problem("spec.completions", "must be >= 1")], b"{}")


def tid(index: int, attempt: int = 0, uid: int = UID) -> str:
    return task_id(OWNER, uid, index, attempt)


def rec(index: int, attempt: int = 0, state: str = "TASK_RUNNING", *, uid: int = UID,
        **fields: Any) -> ExecutionRecord:
    fields.setdefault("submitted_at", T0)
    return ExecutionRecord(task_id=tid(index, attempt, uid), index=index, attempt=attempt,
                           state=state, **fields)


def inp(
    spec: Job | InvalidObject | None,
    executions: Sequence[ExecutionRecord] = (),
    status: JobStatus | None = None,
    now: datetime = T0,
    uid: int | None = UID,
    rev: int = REV,
) -> JobInput:
    return JobInput(namespace=NS, name=NAME, job=spec, spec_revision=rev, uid=uid,
                    status=status, executions=tuple(executions), now=now)
