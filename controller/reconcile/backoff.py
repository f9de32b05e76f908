"""Retry backoff for task-launching kinds, pure: when a kind may launch again after failures.

A `Backoff` spec (`controller.api.Backoff`, in every kind's retry policy) asks for a delay of
initial * factor^(n-1) seconds, capped at max, after the latest of n failures. This module owns
that arithmetic and when a failed attempt is taken to have ended (`failure_time`); which
failures count, and over which attempts (job-wide, per queue item, per instance), is the
kind's decision. A Job counts only its tasks' own failures: system failures do not delay
launches, since waiting longer would not make a lost agent come back.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.api import Backoff, ExecutionRecord
from controller.reconcile.tasks import TASK_TIMEOUT, timeout_at


def backoff_delay(backoff: Backoff, failures: int) -> float:
    """Seconds to wait after the latest of `failures` (>= 1) failures."""
    try:
        return min(backoff.max_seconds, backoff.initial_seconds * backoff.factor ** (failures - 1))
    except OverflowError:  # factor^n beyond floats: long past the cap
        return backoff.max_seconds


def retry_at(backoff: Backoff, failures: int, last_failure_at: datetime | None) -> datetime | None:
    """When a launch may follow `failures` failures, the latest at `last_failure_at`; None when
    nothing holds launches back (no failure, or no known time of it)."""
    if not failures or last_failure_at is None:
        return None
    return last_failure_at + timedelta(seconds=backoff_delay(backoff, failures))


def failure_time(rec: ExecutionRecord, timeout: float | None) -> datetime | None:
    """When a failed attempt ended, for the backoff: as recorded, or else the instant it timed
    out (killed for TaskTimeout under `timeout`), or else when it started or was submitted."""
    if rec.finished_at is not None:
        return rec.finished_at
    if rec.kill_reason == TASK_TIMEOUT:
        at = timeout_at(rec, timeout)
        if at is not None:
            return at
    return rec.started_at or rec.submitted_at
