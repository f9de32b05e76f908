"""A Service's status, pure: counts, endpoints, the rollout's progress and its conditions
(Available, Progressing), and the phase (`controller/reconcile/service.py` decides; this
module describes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from controller.api import Endpoint, ServiceSpec, ServiceStatus
from controller.reconcile.actions import Launch
from controller.reconcile.conditions import Wanted, update_conditions
from controller.reconcile.denial import THROTTLED, Denial, denial_message, throttled_condition
from controller.reconcile.service_model import Slot, healthy, live

if TYPE_CHECKING:
    from controller.reconcile.service import ServiceInput

AVAILABLE = "Available"
PROGRESSING = "Progressing"
INVALID = "Invalid"
CONDITION_ORDER = (AVAILABLE, PROGRESSING, INVALID, THROTTLED)
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"

Phase = Literal["Pending", "Running", "Deploying", "Degraded", "Invalid"]


def _endpoints(spec: ServiceSpec, members: Sequence[Slot], has_check: bool
               ) -> list[Endpoint]:
    names = [p.name for p in spec.template.ports]
    out = []
    for slot in members:
        for rec in slot.records:
            if not live(rec) or rec.state != "TASK_RUNNING":
                continue
            ports = {}
            for i, port in enumerate(rec.host_ports or ()):
                ports[names[i] if i < len(names) else f"PORT{i}"] = port
            out.append(Endpoint(index=slot.index, task_id=rec.task_id, host=rec.hostname,
                                ports=ports,
                                healthy=healthy(rec, has_check) if has_check else None,
                                version=rec.version))
    return out


def service_status(inp: ServiceInput, prev: ServiceStatus | None, spec: ServiceSpec | None,
                   members: Sequence[Slot], version: str | None, now: datetime, *,
                   failures: int = 0, delay: float = 0.0, next_launch: datetime | None = None,
                   launched: Sequence[Launch] = (), invalid: str = "",
                   denial: Denial | None = None, throttled: str | None = None
                   ) -> ServiceStatus:
    recorded = prev.conditions if prev is not None else []
    if spec is None or version is None:
        return ServiceStatus(
            observed_revision=inp.spec_revision, uid=inp.uid, phase="Invalid",
            conditions=update_conditions(recorded, {INVALID: ("True", "InvalidSpec", invalid)},
                                         order=CONDITION_ORDER, keep=(), now=now),
            version=prev.version if prev else None)
    has_check = spec.health_check is not None
    alive = [r for s in members for r in s.records if live(r)]
    running = sum(1 for r in alive if r.state == "TASK_RUNNING" and r.kill_reason is None)
    healthy_now = sum(1 for r in alive if healthy(r, has_check))
    updated = sum(1 for r in alive if r.version == version and r.kill_reason is None) + len(
        launched)
    old = sum(1 for r in alive if r.version != version)
    instances = spec.instances
    floor_h = math.ceil(instances * spec.upgrade_strategy.minimum_health_capacity - 1e-9)
    healthy_new = sum(1 for r in alive if r.version == version and healthy(r, has_check))
    # A rollout runs from a new version (the first one included) until every instance is of
    # it and healthy, and no old one is left.
    new_version = prev is None or prev.version != version
    complete = old == 0 and healthy_new >= instances
    rolling = (new_version or (prev is not None and prev.rollout_started_at is not None)) \
        and not complete
    started: datetime | None = None
    progress: datetime | None = None
    if rolling:
        started = now if new_version or prev is None else prev.rollout_started_at
        progress = now if new_version or prev is None else prev.last_progress_at
        if prev is not None and not new_version and (
                updated > prev.updated or healthy_now > prev.healthy):
            progress = now
    wanted: dict[str, Wanted] = {
        AVAILABLE: ("True", "MinimumHealthy", f"{healthy_now} healthy, at least {floor_h} "
                    "wanted") if healthy_now >= floor_h else
        ("False", "MinimumHealthNotMet", f"{healthy_now} healthy, at least {floor_h} wanted"),
    }
    if rolling:
        stuck = (progress is not None and now - progress
                 >= timedelta(seconds=spec.progress_deadline_seconds))
        wanted[PROGRESSING] = (
            ("False", PROGRESS_DEADLINE_EXCEEDED,
             f"no progress for {spec.progress_deadline_seconds:g}s: {healthy_new} of "
             f"{instances} instances of version {version} healthy")
            if stuck else
            ("True", "RollingOut", f"{healthy_new} of {instances} instances of version "
             f"{version} healthy"))
    else:
        wanted[PROGRESSING] = ("True", "RolloutComplete", f"version {version}")
    phase: Phase = ("Deploying" if rolling else
                    "Running" if healthy_now >= instances else "Degraded")
    if throttled is not None:
        wanted[THROTTLED] = throttled_condition(throttled)
    if denial is not None:
        # Denied (never killed): Invalid once nothing of it is alive any more.
        wanted[INVALID] = ("True", denial.reason, denial_message(denial, bool(alive)))
        if not alive:
            phase = "Invalid"
    return ServiceStatus(
        observed_revision=inp.spec_revision, uid=inp.uid, phase=phase,
        conditions=update_conditions(recorded, wanted, order=CONDITION_ORDER, keep=(),
                                     now=now),
        instances=instances, running=running, healthy=healthy_now, updated=updated,
        unavailable=max(0, instances - healthy_now), version=version,
        rollout_started_at=started, last_progress_at=progress,
        endpoints=_endpoints(spec, members, has_check), consecutive_failures=failures,
        backoff_delay_seconds=round(delay, 3) if failures else 0.0,
        next_launch_at=next_launch)
