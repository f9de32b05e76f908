"""Many kinds on one core (docs/architecture.md §6): a second kind, declared here as a test
does and not by the registry, runs its task beside a Job of the same namespace and name; the
Job's controller never touches it, its updates are recorded under its own kind, and one
subscription serves both."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from controller.api import LAUNCHING, ServiceStatus
from controller.localmesos import LocalMesos
from controller.reconcile import Launch, ObjectKey, Plan, WriteStatus, task_id
from controller.registry import JOB, KindDef, PlanRequest
from controller.store import Store
from tests.e2e.harness import Docket, template, wait_for

pytestmark = pytest.mark.integration

_ACTIVE = {LAUNCHING, "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"}


def _plan_keep_one_running(req: PlanRequest) -> Plan:
    """A minimal long-running kind: one task while the spec exists, nothing else."""
    if req.cached is None:
        return Plan()
    records = [rec for rec, _ in req.records.executions.values()]
    if any(rec.state in _ACTIVE for rec in records):
        return Plan()
    owner = ObjectKey("Service", req.namespace, req.name)
    attempt = max((rec.attempt for rec in records), default=-1) + 1
    spec = req.cached.object.spec
    status = ServiceStatus(uid=req.cached.uid, observed_revision=req.cached.mod_revision,
                           instances=1)
    return Plan(actions=(
        Launch(task_id(owner, req.cached.uid, 0, attempt), owner, 0, attempt, spec.template),
        WriteStatus(status)))


SECOND = KindDef("Service", "services", ServiceStatus, _plan_keep_one_running)


def test_a_second_kind_lives_beside_a_job_of_the_same_name(
        store: Store, local_mesos: Callable[..., LocalMesos]) -> None:
    lm = local_mesos()
    subscribed: list[str] = []
    lm.master.event_observers.append(
        lambda fid, event: subscribed.append(fid) if event.get("type") == "SUBSCRIBED" else None)
    d = Docket(store, lm, kinds=(JOB, SECOND)).start()
    try:
        service: dict[str, Any] = {
            "apiVersion": "docket.dev/v1", "kind": "Service",
            "spec": {"instances": 1, "template": template("sleep 60")}}
        store.put_raw(store.keys.object("services", "default", "web"),
                      json.dumps(service).encode())
        running = wait_for(lambda: [t for t in lm.tasks() if t.task_id.startswith("service.")
                                    and t.state == "TASK_RUNNING"], 30,
                           lambda: f"the service's task never ran: {lm.tasks()}")
        (service_task,) = running
        d.put_job("web", {"completions": 1, "template": template("true")})
        d.wait_phase("web", "Succeeded", "Failed")
        # The Service's RUNNING update was recorded under its own kind, not as a Job's.
        records = store.list_executions("services", "default", "web")
        assert [r.record.task_id for r in records] == [service_task.task_id]
        wait_for(lambda: store.list_executions("services", "default", "web")[0].record.state
                 == "TASK_RUNNING", 10, lambda: "the service's RUNNING update was not recorded")
        assert [r.record.task_id.split(".")[0] for r in store.list_executions(
            "jobs", "default", "web")] == ["job"]

        # Deleting the Job kills and wipes the Job's tasks and records only.
        d.delete_job("web")
        wait_for(lambda: store.get_status("jobs", "default", "web") is None, 30,
                 lambda: "the deleted Job's status was never removed")
        assert store.list_executions("jobs", "default", "web") == []
        assert [r.record.task_id for r in store.list_executions("services", "default", "web")
                ] == [service_task.task_id]
        (still,) = [t for t in lm.tasks() if t.task_id == service_task.task_id]
        assert still.state == "TASK_RUNNING"
        # One framework, subscribed once, served both kinds.
        assert len(lm.frameworks()) == 1
        assert len(subscribed) == 1, subscribed
    finally:
        d.stop()
