"""The Service planner: `plan_service(ServiceInput) -> Plan`, pure (docs/architecture.md §9;
Marathon's semantics, with its names, where the docs are silent).

Model. A Service keeps `instances` instances alive. Each instance has a stable **index** (its
slot): attempt 0, 1, 2, ... of slot i are tasks `service.<ns>.<name>.<uid>.<i>.<attempt>`, and a
replacement (after a failure, a loss or for a new version) is the slot's next attempt, written
as an intent before it is launched, like every task of Docket. A slot belongs to the Service
until Docket retires it (scaling down: its instance is killed with kill reason ScaledDown);
scaling up adds the lowest free indexes. `killSelection` says which slots go first when there
are too many (instances not running go before running ones).

Versions. The **version** is a digest of the template and the health check; every instance
records the version it was launched with. A new version starts a rollout: each slot gets an
instance of the new version, then its old instance is killed (with the template's kill grace
period), such that
- healthy instances never fall below `ceil(minimumHealthCapacity x instances)` (the floor), and
- live instances never exceed `floor(instances x (1 + maximumOverCapacity))` (the ceiling);
when floor and ceiling leave no room at all (minimumHealthCapacity 1 with maximumOverCapacity
0), one old instance is killed to make room, as Marathon does. Healthy means RUNNING and, with
a health check, reported healthy by the agent. A rollout that makes no progress (more updated
or healthy instances) for `progressDeadlineSeconds` gets Progressing=False,
ProgressDeadlineExceeded; it goes on trying.

Failures. A task that ends (failed, finished, killed by the agent's health check) is replaced
by its slot's next attempt after the crash-loop backoff: `backoffSeconds x backoffFactor^(n-1)`,
at most `maxLaunchDelaySeconds`, after the latest of n consecutive task failures of the current
version; the count starts again once an instance of the current version stayed healthy for
`HEALTHY_RESETS_BACKOFF` seconds. System failures (lost agents, dropped launches) are replaced
at once. An unreachable instance keeps its slot for `unreachableStrategy.inactiveAfterSeconds`;
then its slot is launched again. It is written off (kill reason Unreachable: killed if it ever
returns) once `expungeAfterSeconds` have passed, or as soon as it returns while its
replacement exists; returning earlier, with no replacement, it simply goes on.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.api import (
    ExecutionRecord,
    InvalidObject,
    KillSelection,
    Service,
    ServiceSpec,
    ServiceStatus,
)
from controller.reconcile.actions import Action, Launch, ObjectKey, Plan, UpdateExecution
from controller.reconcile.denial import Denial
from controller.reconcile.service_model import (
    DELETED_PLURAL,
    HEALTHY_RESETS_BACKOFF,
    REPLACED,
    SCALED_DOWN,
    VERSION_REPLACED,
    Slot,
    healthy,
    live,
)
from controller.reconcile.service_status import service_status
from controller.reconcile.taskid import is_dns_label, task_id
from controller.reconcile.tasks import (
    UNREACHABLE,
    Outcome,
    came_back,
    current_incarnation,
    kill_actions,
    kill_superseded,
    next_attempts,
    outcome,
    plan_deleted_owner,
)

__all__ = ["ServiceInput", "plan_service", "service_version"]


def service_version(spec: ServiceSpec) -> str:
    """The digest of what an instance runs: the template and the health check (a change of
    `instances` or of the rollout strategy is not a new version)."""
    doc = spec.template.model_dump_json(by_alias=True) + "|" + (
        spec.health_check.model_dump_json(by_alias=True) if spec.health_check else "")
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ServiceInput:
    """`service` is None when the spec key was deleted, an InvalidObject when it does not
    decode; `uid` and `spec_revision` as for a Job."""

    namespace: str
    name: str
    service: Service | InvalidObject | None
    spec_revision: int
    uid: int | None
    status: ServiceStatus | None
    executions: Sequence[ExecutionRecord]
    now: datetime
    denial: Denial | None = None
    """Why nothing new may be launched (the policy, a missing secret), or None."""
    throttled: str | None = None
    """The throttle holding back some of its launches at offer time, or None."""


def plan_service(inp: ServiceInput) -> Plan:
    """Decide what to do for one Service. Pure: same input, same plan."""
    if inp.now.tzinfo is None:
        raise ValueError("ServiceInput.now must be timezone-aware")
    if inp.service is None:
        return plan_deleted_owner(DELETED_PLURAL, inp.namespace, inp.name, inp.status,
                                  inp.executions)
    if inp.uid is None:
        raise ValueError("ServiceInput.uid is required for an existing object")
    return _Planner(inp).plan()


class _Planner:
    def __init__(self, inp: ServiceInput) -> None:
        self.inp = inp
        self.now = inp.now
        self.owner = ObjectKey("Service", inp.namespace, inp.name)
        self.actions: list[Action] = []
        self.launches: list[Action] = []
        self.written_off: set[str] = set()
        self.wakeups: list[datetime] = []
        self.current = current_incarnation(inp.executions, self.owner, inp.uid)
        self.actions += kill_superseded(inp.executions, self.owner, inp.uid)
        prev = inp.status
        self.prev = prev if prev is not None and prev.uid == inp.uid else None

    def plan(self) -> Plan:
        service = self.inp.service
        problems = [f"metadata.{what}: {value!r} is not a DNS-1123 label"
                    for what, value in (("namespace", self.inp.namespace),
                                        ("name", self.inp.name)) if not is_dns_label(value)]
        if isinstance(service, InvalidObject) or problems:
            # InvalidObject.message: "path: problem; ..." as every kind reports it.
            message = "; ".join(problems) if problems else (
                service.message if isinstance(service, InvalidObject) else "")
            status = service_status(self.inp, self.prev, None, [], None, self.now,
                                    invalid=message)
            return self._finish(status)
        assert isinstance(service, Service)
        spec = service.spec
        version = service_version(spec)
        slots = self._slots()
        self._upkeep(spec, slots)
        members = self._members(spec, slots)
        backoff_until, failures, delay = self._backoff(spec, version)
        if self.inp.denial is None:
            self._rollout(spec, version, members, backoff_until)
        # Denied: no launch, and no old instance killed to make room for a new one that could
        # not be launched; what runs goes on (scale-down and upkeep still apply).
        status = service_status(self.inp, self.prev, spec, members, version, self.now,
                                failures=failures, delay=delay, next_launch=backoff_until,
                                launched=[a for a in self.launches if isinstance(a, Launch)],
                                denial=self.inp.denial, throttled=self.inp.throttled)
        if status.last_progress_at is not None and status.phase == "Deploying":
            self.wakeups.append(status.last_progress_at
                                + timedelta(seconds=spec.progress_deadline_seconds))
        return self._finish(status)

    def _finish(self, status: ServiceStatus) -> Plan:
        actions = [*self.actions, *self.launches]
        from controller.reconcile.actions import WriteStatus

        write = status if status != self.inp.status else None
        if write is not None:
            actions.append(WriteStatus(write))
        future = [(at - self.now).total_seconds() for at in self.wakeups if at > self.now]
        return Plan(tuple(actions), write, min(future) if future else None)

    # --- slots ---------------------------------------------------------------------------------
    def _slots(self) -> dict[int, Slot]:
        slots: dict[int, Slot] = {}
        for rec in sorted(self.current, key=lambda r: (r.index, r.attempt)):
            slots.setdefault(rec.index, Slot(rec.index)).records.append(rec)
        for slot in slots.values():
            slot.__post_init__()
        return slots

    def _upkeep(self, spec: ServiceSpec, slots: dict[int, Slot]) -> None:
        """Partitions and returns, per record: Marathon's unreachable strategy."""
        strategy = spec.unreachable_strategy
        for slot in slots.values():
            newest = slot.records[-1].attempt
            for rec in slot.records:
                if came_back(rec):
                    self.actions += kill_actions(rec, rec.kill_reason or UNREACHABLE, None)
                    continue
                if live(rec) and rec.kill_reason is not None:
                    # A kill under way is sent again until the task ends (a lost kill).
                    self.actions += kill_actions(rec, rec.kill_reason,
                                                 spec.template.kill_grace_period_seconds)
                    continue
                if rec.state != "TASK_UNREACHABLE" or rec.kill_reason is not None:
                    continue
                since = rec.unreachable_at or rec.finished_at or self.now
                expunge = since + timedelta(seconds=strategy.expunge_after_seconds)
                if expunge <= self.now:
                    self.actions.append(UpdateExecution(rec.task_id,
                                                        {"kill_reason": UNREACHABLE}))
                    self.written_off.add(rec.task_id)  # its slot is free this very pass
                else:
                    self.wakeups.append(expunge)
            # A returned original whose replacement started goes (the replacement stays).
            for rec in slot.records:
                if (rec.attempt < newest and rec.unreachable_at is not None
                        and live(rec) and rec.kill_reason is None):
                    self.actions += kill_actions(rec, REPLACED, None)

    def _members(self, spec: ServiceSpec, slots: dict[int, Slot]) -> list[Slot]:
        """The slots the Service keeps, exactly `instances` of them: retiring the extras
        (killSelection), adding the lowest free indexes."""
        members = [s for s in slots.values() if not s.retired]
        extra = len(members) - spec.instances
        if extra > 0:
            youngest = spec.kill_selection is KillSelection.YOUNGEST_FIRST
            far = datetime.max.replace(tzinfo=self.now.tzinfo)

            def order(s: Slot) -> tuple[int, float, int]:
                started = s.started_at()
                # Not running first; then by age as asked; the index breaks ties.
                age = (started or far).timestamp()
                return (1 if s.running() else 0, -age if youngest else age,
                        -s.index if youngest else s.index)
            for slot in sorted(members, key=order)[:extra]:
                for rec in slot.records:
                    if live(rec):
                        self.actions += kill_actions(rec, SCALED_DOWN, None)
                slot.retire()
            members = [s for s in members if not s.retired]
        # A retired slot whose instance is gone is free again: the lowest free indexes first.
        used = {s.index for s in members} | {s.index for s in slots.values() if s.has_live()}
        free = (i for i in range(len(slots) + spec.instances + 1) if i not in used)
        while len(members) < spec.instances:
            index = next(free)
            slot = slots.setdefault(index, Slot(index))
            slot.retired = False
            members.append(slot)
        return sorted(members, key=lambda s: s.index)

    # --- backoff -------------------------------------------------------------------------------
    def _backoff(self, spec: ServiceSpec, version: str
                 ) -> tuple[datetime | None, int, float]:
        """(no launch before, consecutive task failures, the delay) for the current version."""
        reset: datetime | None = None
        for rec in self.current:
            if rec.version != version or not rec.healthy or rec.health_changed_at is None:
                continue
            stayed_until = rec.finished_at or self.now
            if (stayed_until - rec.health_changed_at).total_seconds() >= HEALTHY_RESETS_BACKOFF:
                at = rec.health_changed_at + timedelta(seconds=HEALTHY_RESETS_BACKOFF)
                reset = at if reset is None or at > reset else reset
        failures = [rec for rec in self.current if rec.version == version
                    and outcome(rec) == Outcome.TASK_FAILURE
                    and (reset is None or (rec.finished_at or self.now) > reset)]
        if not failures:
            return None, 0, 0.0
        n = len(failures)
        try:
            delay = min(spec.max_launch_delay_seconds,
                        spec.backoff_seconds * spec.backoff_factor ** (n - 1))
        except OverflowError:
            delay = spec.max_launch_delay_seconds
        last = max((r.finished_at or self.now) for r in failures)
        until = last + timedelta(seconds=delay)
        return (until if until > self.now else None), n, delay

    # --- launches and the rollout --------------------------------------------------------------
    def _launch(self, spec: ServiceSpec, slot: Slot, version: str) -> None:
        assert self.inp.uid is not None
        attempt = next_attempts(slot.records).get(slot.index, 0)
        tid = task_id(self.owner, self.inp.uid, slot.index, attempt)
        env = {"DOCKET_TASK_ID": tid, "DOCKET_SERVICE": f"{self.inp.namespace}/{self.inp.name}",
               "DOCKET_INSTANCE_INDEX": str(slot.index), "DOCKET_SERVICE_VERSION": version}
        self.launches.append(Launch(tid, self.owner, slot.index, attempt, spec.template, env,
                                    record={"version": version},
                                    health_check=spec.health_check))
        slot.launching = True

    def _rollout(self, spec: ServiceSpec, version: str, members: list[Slot],
                 backoff_until: datetime | None) -> None:
        has_check = spec.health_check is not None
        instances = spec.instances
        floor_h = math.ceil(instances * spec.upgrade_strategy.minimum_health_capacity - 1e-9)
        ceiling = math.floor(instances * (1 + spec.upgrade_strategy.maximum_over_capacity)
                             + 1e-9)
        alive = [r for r in self.current if live(r)]
        live_total = len(alive)
        healthy_total = sum(1 for r in alive if healthy(r, has_check))
        grace = spec.template.kill_grace_period_seconds
        # 1. Old instances whose slot has a healthy instance of the new version go, as far as
        #    the floor allows (killing one that is not healthy costs nothing).
        for slot in members:
            if not slot.has_healthy(version, has_check):
                continue
            for rec in slot.old_live(version):
                is_healthy = healthy(rec, has_check)
                if is_healthy and healthy_total - 1 < floor_h:
                    continue
                self.actions += kill_actions(rec, VERSION_REPLACED, grace)
                healthy_total -= int(is_healthy)
        # 2. Launches: empty slots first (lost instances), then slots still on an old version.
        #    Never above the ceiling, never during the crash-loop backoff.
        if backoff_until is not None:
            self.wakeups.append(backoff_until)
        wanting = [s for s in members if s.needs_launch(version, self.now, spec, self.wakeups,
                                                        self.written_off)]
        wanting.sort(key=lambda s: (s.has_live(), s.index))
        room = ceiling - live_total
        if backoff_until is None:
            for slot in wanting[:max(0, room)]:
                self._launch(spec, slot, version)
                live_total += 1
        # 3. Slots still on an old version and no room to start their new instances: kill old
        #    instances down to the floor (those not healthy first: they cost nothing). When
        #    floor and ceiling leave no room at all, one goes anyway once no new instance is
        #    still starting (Marathon's rule, so a rollout can progress).
        waiting = [s for s in members if s.old_live(version) and not s.has_new(version)]
        if not waiting or room > 0 or backoff_until is not None:
            return
        olds = sorted((rec for s in waiting for rec in s.old_live(version)),
                      key=lambda r: (healthy(r, has_check), -r.index))
        spare = healthy_total - floor_h
        starting = any(s.has_new(version) and not s.has_healthy(version, has_check)
                       for s in members)
        for rec in olds:
            is_healthy = healthy(rec, has_check)
            if is_healthy and spare <= 0:
                if floor_h >= ceiling and not starting and not any(
                        r.kill_reason == VERSION_REPLACED and live(r) for r in self.current):
                    self.actions += kill_actions(rec, VERSION_REPLACED, grace)
                break
            self.actions += kill_actions(rec, VERSION_REPLACED, grace)
            spare -= int(is_healthy)
