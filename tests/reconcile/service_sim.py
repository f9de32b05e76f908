"""A pure simulation of one Service's world for planner tests: its execution records and
status, and Mesos reduced to "this instance started, turned healthy or unhealthy, failed, was
lost or became unreachable, its kill completed". `World.step(now)` plans and applies the plan
as the executor would (intents, record updates, kills: TASK_KILLING, then TASK_KILLED when
`complete_kills` runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.api import ExecutionRecord, Service, ServiceStatus, decode_object
from controller.reconcile import Kill, Launch, Plan, UpdateExecution, WriteStatus
from controller.reconcile.denial import Denial
from controller.reconcile.service import ServiceInput, plan_service, service_version
from controller.reconcile.service_model import healthy, live

UID = 9


def make_service(**spec: Any) -> Service:
    template = spec.pop("template", {"command": "serve", "ports": [{"name": "http"}]})
    doc = {"apiVersion": "docket.dev/v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"template": template, **spec}}
    obj = decode_object(doc)
    assert isinstance(obj, Service)
    return obj


@dataclass
class World:
    service: Service | None
    records: dict[str, ExecutionRecord] = field(default_factory=dict)
    status: ServiceStatus | None = None
    launched: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    last_plan: Plan | None = None
    denial: Denial | None = None

    def step(self, now: datetime) -> Plan:
        plan = plan_service(ServiceInput("default", "web", self.service, 5, UID, self.status,
                                         list(self.records.values()), now, self.denial))
        self.last_plan = plan
        for a in plan.actions:
            if isinstance(a, Launch):
                assert a.task_id not in self.records, f"{a.task_id} launched twice"
                self.records[a.task_id] = ExecutionRecord(
                    task_id=a.task_id, index=a.index, attempt=a.attempt, state="LAUNCHING",
                    submitted_at=now, **a.record)
                self.launched.append(a.task_id)
            elif isinstance(a, UpdateExecution):
                self.records[a.task_id] = self.records[a.task_id].model_copy(update=a.changes)
            elif isinstance(a, Kill):
                rec = self.records[a.task_id]
                if rec.state != "TASK_KILLING" and live(rec):
                    self.records[a.task_id] = rec.model_copy(update={"state": "TASK_KILLING"})
                    self.killed.append(a.task_id)
            elif isinstance(a, WriteStatus):
                assert isinstance(a.status, ServiceStatus)
                self.status = a.status
        return plan

    # --- Mesos ---------------------------------------------------------------------------------
    def set(self, task_id: str, now: datetime, **changes: Any) -> None:
        rec = self.records[task_id]
        if "state" in changes and changes["state"] not in ("TASK_RUNNING", "TASK_STARTING",
                                                           "TASK_KILLING"):
            changes.setdefault("finished_at", now)
        if changes.get("state") == "TASK_RUNNING" and rec.started_at is None:
            changes.setdefault("started_at", now)
            changes.setdefault("host_ports", [31000 + rec.index])
            changes.setdefault("hostname", "agent1")
        if "healthy" in changes and changes["healthy"] != rec.healthy:
            changes.setdefault("health_changed_at", now)
        if changes.get("state") == "TASK_UNREACHABLE":
            changes.setdefault("unreachable_at", now)
        self.records[task_id] = rec.model_copy(update=changes)

    def complete_kills(self, now: datetime) -> None:
        for tid, rec in list(self.records.items()):
            if rec.state == "TASK_KILLING":
                self.set(tid, now, state="TASK_KILLED")

    def start_all(self, now: datetime, *, health: bool | None = True) -> None:
        """Every launched instance runs (and reports its health, when asked)."""
        for tid, rec in list(self.records.items()):
            if rec.state in ("LAUNCHING", "TASK_STAGING", "TASK_STARTING"):
                self.set(tid, now, state="TASK_RUNNING")
            if health is not None and self.records[tid].state == "TASK_RUNNING" \
                    and self.records[tid].healthy is None:
                self.set(tid, now, healthy=health)

    # --- views ----------------------------------------------------------------------------------
    def alive(self) -> list[ExecutionRecord]:
        return [r for r in self.records.values() if live(r)]

    def healthy_count(self) -> int:
        has_check = self.service is not None and self.service.spec.health_check is not None
        return sum(1 for r in self.records.values() if healthy(r, has_check))

    def version(self) -> str:
        assert self.service is not None
        return service_version(self.service.spec)
