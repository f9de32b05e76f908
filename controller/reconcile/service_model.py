"""The Service planner's vocabulary, pure: an instance slot and the records it holds, which
record is live or healthy, and the kill reasons a Service writes (`controller/reconcile/
service.py` has the rules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.api import ExecutionRecord, ServiceSpec
from controller.reconcile.tasks import Outcome, outcome

DELETED_PLURAL = "services"
HEALTHY_RESETS_BACKOFF = 60.0
"""Seconds an instance of the current version must stay healthy for the crash-loop backoff to
start counting again from zero."""

# Kill reasons of a Service (all count as neither success nor failure).
SCALED_DOWN = "ScaledDown"  # its slot was retired (instances lowered)
VERSION_REPLACED = "VersionReplaced"  # an old version's instance, replaced in a rollout
REPLACED = "Replaced"  # an unreachable instance that came back after its replacement started


def live(rec: ExecutionRecord) -> bool:
    """May be running now and counts as an instance (even while being killed)."""
    return outcome(rec) == Outcome.ACTIVE


def healthy(rec: ExecutionRecord, has_check: bool) -> bool:
    """RUNNING, not being killed, and passing its health check (when there is one)."""
    if rec.state != "TASK_RUNNING" or rec.kill_reason is not None or not live(rec):
        return False
    return rec.healthy is True if has_check else True


@dataclass
class Slot:
    """One instance index and every attempt recorded for it (oldest first)."""

    index: int
    records: list[ExecutionRecord] = field(default_factory=list)
    retired: bool = False
    launching: bool = False

    def __post_init__(self) -> None:
        latest = self.records[-1] if self.records else None
        if latest is not None and latest.kill_reason == SCALED_DOWN:
            self.retired = True

    def retire(self) -> None:
        self.retired = True

    def live_records(self) -> list[ExecutionRecord]:
        return [r for r in self.records if live(r)]

    def has_live(self) -> bool:
        return any(live(r) for r in self.records)

    def running(self) -> bool:
        return any(live(r) and r.state == "TASK_RUNNING" for r in self.records)

    def started_at(self) -> datetime | None:
        times = [r.started_at for r in self.records if live(r) and r.started_at is not None]
        return max(times) if times else None

    def has_new(self, version: str) -> bool:
        return self.launching or any(live(r) and r.version == version for r in self.records)

    def has_healthy(self, version: str, has_check: bool) -> bool:
        return any(r.version == version and healthy(r, has_check) for r in self.records)

    def old_live(self, version: str) -> list[ExecutionRecord]:
        return [r for r in self.records if live(r) and r.version != version
                and r.kill_reason is None]

    def needs_launch(self, version: str, now: datetime, spec: ServiceSpec,
                     wakeups: list[datetime], written_off: set[str]) -> bool:
        """No live instance of `version`, and not waiting for an unreachable one to return
        (unless it was just written off)."""
        if self.has_new(version):
            return False
        wait = spec.unreachable_strategy.inactive_after_seconds
        for rec in self.records:
            if (rec.state == "TASK_UNREACHABLE" and rec.kill_reason is None
                    and rec.task_id not in written_off):
                since = rec.unreachable_at or rec.finished_at or now
                until = since + timedelta(seconds=wait)
                if until > now:
                    wakeups.append(until)
                    return False
        return True
