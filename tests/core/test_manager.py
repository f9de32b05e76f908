"""The whole controller core — Manager, kind controllers, task-event pump, executor — on its
in-memory twins: the etcd twin (controller/store/memory.py, held to etcd by
tests/store/conformance), FakeMesos (held to the adapter on localmesos by
tests/mesos/test_conformance.py) and a clock the test sets. No server, no subprocess: these
run in well under a second each, so the core's behaviour is tested where it is cheap, and the
e2e tests keep the real etcd and the embedded Mesos for what only they can show."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.api import CronJobStatus, JobStatus
from controller.clock import FakeClock
from controller.manager import Manager
from controller.mesos.backend import TaskUpdate
from controller.reconcile.schedule import slot_id
from controller.store import MemoryEtcd, Store
from tests.e2e.harness import template, wait_for
from tests.mesos.fake import FakeMesos

T0 = datetime(2026, 11, 2, 10, 0, 30, tzinfo=UTC)


class Core:
    def __init__(self) -> None:
        self.etcd = MemoryEtcd()
        self.store: Store = self.etcd.store()
        self.clock = FakeClock(wall=T0)
        self.mesos = FakeMesos()
        self.manager = Manager(self.store, lambda _known: self.mesos, workers=2,
                               resync_seconds=0.2, clock=self.clock)

    def put(self, plural: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        doc = {"apiVersion": "docket.dev/v1", "kind": kind, "spec": spec}
        self.store.put_raw(self.store.keys.object(plural, "default", name),
                           json.dumps(doc).encode())

    def status(self, plural: str, name: str) -> Any:
        found = self.store.get_status(plural, "default", name)
        return found.status if found is not None else None

    def finish_running(self) -> list[str]:
        """Finish every task the fake runs (a task that ran to completion)."""
        running = [t for t, state in list(self.mesos.tasks.items()) if state == "TASK_RUNNING"]
        for task_id in running:
            self.mesos.finish(task_id)
        return running


@pytest.fixture
def core() -> Iterator[Core]:
    c = Core()
    c.manager.start()
    yield c
    c.manager.stop()
    c.store.close()


def test_a_job_runs_to_completion_and_every_update_is_acknowledged(core: Core) -> None:
    core.put("jobs", "Job", "hello", {"completions": 3, "parallelism": 3,
                                      "template": template("echo hello")})
    wait_for(lambda: len(core.mesos.launched) == 3, 10,
             lambda: f"launched {core.mesos.launched}")
    core.finish_running()
    status: JobStatus = wait_for(
        lambda: (s := core.status("jobs", "hello")) and s.phase == "Succeeded" and s, 10,
        lambda: f"status {core.status('jobs', 'hello')}")
    assert (status.succeeded, status.failed, status.active) == (3, 0, 0)
    records = core.store.list_executions("jobs", "default", "hello")
    assert sorted(r.record.task_id for r in records) == sorted(core.mesos.launched)
    assert all(r.record.state == "TASK_FINISHED" for r in records)
    wait_for(lambda: not core.mesos.unacknowledged, 10,
             lambda: f"never acknowledged: {list(core.mesos.unacknowledged.values())}")


@pytest.mark.parametrize("task_id", [
    "job.default.ghost.7.0.0",        # a Job that is gone
    "service.default.ghost.7.0.0",    # a kind this process runs no controller for
])
def test_an_orphan_of_any_kind_is_killed(core: Core, task_id: str) -> None:
    wait_for(lambda: core.manager.ready()["mesos"], 10, lambda: "never subscribed")
    core.mesos.events.put(TaskUpdate.from_status({
        "task_id": {"value": task_id}, "state": "TASK_RUNNING",
        "agent_id": {"value": "agent-0"}, "source": "SOURCE_MASTER",
        "reason": "REASON_RECONCILIATION"}, "fake-host"))
    wait_for(lambda: task_id in core.mesos.killed, 10,
             lambda: f"not killed: {core.mesos.killed}")


def test_an_update_of_a_foreign_task_is_left_alone(core: Core) -> None:
    """Ids of another shape are someone else's: acknowledged, never killed."""
    wait_for(lambda: core.manager.ready()["mesos"], 10, lambda: "never subscribed")
    core.mesos.tasks["nginx-1"] = "TASK_RUNNING"
    core.mesos.update("nginx-1", "TASK_RUNNING")
    wait_for(lambda: not core.mesos.unacknowledged, 10, lambda: "not acknowledged")
    assert "nginx-1" not in core.mesos.killed


def test_a_cronjob_creates_one_job_per_slot_and_sees_it_succeed(core: Core) -> None:
    core.put("cronjobs", "CronJob", "tick", {
        "schedule": "* * * * *", "jobTemplate": {"spec": {"template": template("true")}}})
    wait_for(lambda: core.status("cronjobs", "tick"), 10, lambda: "no status")
    slot = T0.replace(second=0) + timedelta(minutes=1)
    core.clock.jump_to(slot + timedelta(seconds=1))
    name = f"tick-{slot_id(slot)}"
    wait_for(lambda: core.store.get("jobs", "default", name) is not None, 10,
             lambda: f"no Job {name}")
    wait_for(lambda: core.finish_running(), 10, lambda: "the Job's task never ran")
    status: CronJobStatus = wait_for(
        lambda: (s := core.status("cronjobs", "tick")) and s.last_successful_time and s, 10,
        lambda: f"never saw the Job succeed: {core.status('cronjobs', 'tick')}")
    assert status.last_schedule_time == slot
    assert status.active == []
    # Time stands still: nothing more is due, whatever the resyncs.
    assert [o.name for o in core.store.list("jobs")[0]] == [name]


def test_no_object_is_planned_before_every_cache_is_filled() -> None:
    """Planned from a cache still being filled, an object not listed yet would look deleted
    (and a CronJob would delete its Jobs): workers wait for the caches."""
    from controller.executor import Executor
    from controller.kindcontroller import KindController
    from controller.reconcile import Plan
    from controller.records import RecordCache
    from controller.registry import KindDef, PlanRequest

    planned: list[str] = []

    def plan(req: PlanRequest) -> Plan:
        planned.append(req.name)
        return Plan()

    store = MemoryEtcd().store()
    kind = KindDef("Job", "jobs", JobStatus, plan)
    controller = KindController(kind, store, Executor(store, FakeMesos()),
                                RecordCache(store, "jobs"), clock=FakeClock(wall=T0).utcnow)
    asked = threading.Semaphore(0)
    filled = threading.Event()

    def caches_synced(timeout: float) -> bool:
        asked.release()
        return filled.wait(min(timeout, 0.01))

    controller.start(caches_synced)
    try:
        controller.wake("default", "early")
        for _ in range(3):  # the starter asked, was told no, and asked again: still waiting
            assert asked.acquire(timeout=10)
        assert planned == []
        filled.set()
        wait_for(lambda: planned == ["early"], 10, lambda: f"planned {planned}")
    finally:
        controller.stop()
        store.close()


def test_a_job_deleted_while_its_launch_waits_for_an_offer_is_cleaned_up() -> None:
    """Its pending launch is cancelled (no update will ever come for it), and the Job is
    planned again at once — not at the next resync, which is far away here."""
    c = Core()
    c.manager = Manager(c.store, lambda _known: c.mesos, workers=2, resync_seconds=300,
                        clock=c.clock)
    c.mesos.auto_run = False  # no offers: the launch stays pending
    c.manager.start()
    try:
        c.put("jobs", "Job", "waiting", {"template": template("echo hello")})
        wait_for(lambda: c.mesos.pending_count == 1, 10, lambda: "never launched")
        c.store.delete_object("jobs", "default", "waiting")
        wait_for(lambda: c.status("jobs", "waiting") is None
                 and not c.store.list_executions("jobs", "default", "waiting"), 10,
                 lambda: f"left: {c.status('jobs', 'waiting')}, "
                         f"{c.store.list_executions('jobs', 'default', 'waiting')}")
        assert c.mesos.pending_count == 0 and not c.mesos.tasks
    finally:
        c.manager.stop()
        c.store.close()


class _Gate:
    """An admission source for the test: denies the names it holds, marks every launch it
    prepares, and is synced only once told to."""

    def __init__(self) -> None:
        self.denied: set[str] = set()
        self.synced = threading.Event()
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        pass

    def wait_for_sync(self, timeout: float) -> bool:
        return self.synced.wait(min(timeout, 0.01))

    def check(self, kind: str, namespace: str, name: str, spec: Any) -> Any:
        from controller.admission import POLICY_DENIED, Denial

        if name in self.denied:
            return Denial(POLICY_DENIED, "spec.template.container.image", "not allowed")
        return None

    def prepare(self, request: Any) -> Any:
        import dataclasses

        return dataclasses.replace(request, role="team-a", secret_env={"TOKEN": "t"})


def test_admission_denies_before_planning_and_prepares_every_launch() -> None:
    c = Core()
    gate = _Gate()
    gate.denied.add("denied")
    c.manager.add_admission(gate)
    c.manager.start()
    try:
        assert gate.started
        c.put("jobs", "Job", "denied", {"template": template("echo no")})
        c.put("jobs", "Job", "allowed", {"template": template("echo yes")})
        wait_for(lambda: c.manager.controllers["Job"].informer.has_synced(), 10,
                 lambda: "informer never synced")
        # Nothing is planned (so nothing launches unchecked) before the source has synced.
        assert c.status("jobs", "allowed") is None and not c.mesos.launched
        gate.synced.set()
        wait_for(lambda: len(c.mesos.launched) == 1, 10, lambda: f"{c.mesos.launched}")
        assert c.mesos.launched[0].startswith("job.default.allowed.")
        request = c.mesos.requests[c.mesos.launched[0]]
        assert (request.role, dict(request.secret_env)) == ("team-a", {"TOKEN": "t"})
        status = wait_for(lambda: (s := c.status("jobs", "denied")) and s.phase == "Invalid"
                          and s, 10, lambda: f"{c.status('jobs', 'denied')}")
        assert status.conditions[-1].reason == "PolicyDenied"
        # Lifted: woken by the source's owner, the Job launches.
        gate.denied.clear()
        c.manager.wake_all()
        wait_for(lambda: any(t.startswith("job.default.denied.") for t in c.mesos.launched),
                 10, lambda: f"{c.mesos.launched}")
    finally:
        c.manager.stop()
        c.store.close()


def _live(core: Core, prefix: str) -> list[str]:
    return [t for t, state in list(core.mesos.tasks.items())
            if t.startswith(prefix) and state in ("TASK_STAGING", "TASK_RUNNING")]


def test_a_throttle_across_jobs_holds_counts_from_records_and_says_so(core: Core) -> None:
    """Issue 16 on the core: a throttle of 2 over mail-* Jobs, counted from the records of
    every Job (the manager's ThrottleSource), held launches reported back as the condition
    Throttled on their Jobs; other Jobs run beside them; all complete as room appears."""
    policy = {"apiVersion": "docket.dev/v1", "kind": "Policy", "spec": {"throttles": [
        {"name": "mail", "match": {"kinds": ["Job"], "name": "mail-.*"}, "maxRunning": 2}]}}
    core.store.put_raw(f"{core.store.keys.prefix}/policy", json.dumps(policy).encode())
    wait_for(lambda: core.manager.policy.throttle_limits() == {"mail": 2}, 10,
             lambda: "policy never read")
    for name in ("mail-a", "mail-b", "other"):
        core.put("jobs", "Job", name, {"completions": 2, "parallelism": 2,
                                       "template": template("true")})
    wait_for(lambda: len(_live(core, "job.default.other.")) == 2, 10,
             lambda: f"{core.mesos.tasks}")
    wait_for(lambda: len(_live(core, "job.default.mail-")) == 2, 10,
             lambda: f"{core.mesos.tasks} {core.mesos.pending} {core.mesos.held} "
                     f"{core.manager.throttles.usage()}")
    held = wait_for(lambda: [n for n in ("mail-a", "mail-b")
                             if (s := core.status("jobs", n)) is not None and any(
                                 c.type == "Throttled" for c in s.conditions)], 10,
                    lambda: f"{core.status('jobs', 'mail-b')}")
    assert core.manager.throttles.usage() == {"mail": 4}  # 2 live + 2 intents waiting
    from prometheus_client import REGISTRY

    gauges = wait_for(lambda: (g := tuple(REGISTRY.get_sample_value(
        f"docket_throttle_{n}", {"throttle": "mail"}) for n in ("running", "waiting", "limit"))
        ) == (2, 2, 2) and g, 10, lambda: "gauges never showed 2 running, 2 waiting")
    assert gauges == (2, 2, 2)
    cond = next(c for c in core.status("jobs", held[0]).conditions if c.type == "Throttled")
    assert cond.reason == "ThrottleLimit" and "mail" in cond.message
    first = _live(core, "job.default.mail-")
    for task_id in first:  # two end: the two held ones start, never more than two
        core.mesos.finish(task_id)
    wait_for(lambda: len(set(_live(core, "job.default.mail-")) - set(first)) == 2, 10,
             lambda: f"{core.mesos.tasks}")
    for task_id in _live(core, "job.default.mail-"):
        core.mesos.finish(task_id)
    for name in ("mail-a", "mail-b"):
        status = wait_for(lambda name=name: (s := core.status("jobs", name))
                          and s.phase == "Succeeded" and s, 10,
                          lambda name=name: f"{core.status('jobs', name)}")
        assert all(c.type != "Throttled" for c in status.conditions)
    assert len([t for t in core.mesos.launched if t.startswith("job.default.mail-")]) == 4


def test_a_policy_change_takes_back_launches_still_waiting_for_an_offer() -> None:
    """Launches waiting for an offer were prepared under the old policy: when it changes
    they are cancelled and written off as never launched (no failure), and their objects are
    planned under the new one — a now-denied Job launches nothing, nothing is lost."""
    c = Core()
    c.mesos.auto_run = False  # launches wait, as for an offer
    c.manager.start()
    try:
        c.put("jobs", "Job", "waits", {"completions": 2, "parallelism": 2,
                                       "template": template("true")})
        wait_for(lambda: len(c.mesos.pending) == 2, 10, lambda: f"{c.mesos.pending}")
        policy = {"apiVersion": "docket.dev/v1", "kind": "Policy", "spec": {"default": {
            "maxTaskResources": {"cpus": 0.01}}}}
        c.store.put_raw(f"{c.store.keys.prefix}/policy", json.dumps(policy).encode())
        status = wait_for(lambda: (s := c.status("jobs", "waits")) and s.phase == "Invalid"
                          and s, 10, lambda: f"{c.status('jobs', 'waits')} {c.mesos.pending}")
        assert c.mesos.pending == {} and c.mesos.launched == []
        assert status.conditions[-1].reason == "PolicyDenied"
        assert (status.failed, status.system_failures) == (0, 0)  # written off, not failed
        records = c.store.list_executions("jobs", "default", "waits")
        assert sorted(r.record.state for r in records) == ["TASK_UNKNOWN", "TASK_UNKNOWN"]
        assert {r.record.kill_reason for r in records} == {"NeverLaunched"}
    finally:
        c.manager.stop()
        c.store.close()


def test_a_launch_that_cannot_be_prepared_is_written_off_and_the_rest_go() -> None:
    """A preparer that raises (an admission source's bug) costs that one launch a write-off
    as never launched; the other launches of the batch still go."""

    class Broken(_Gate):
        def prepare(self, request: Any) -> Any:
            if request.task_id.endswith(".0.0"):
                raise RuntimeError("boom")
            return request

    c = Core()
    gate = Broken()
    gate.synced.set()
    c.manager.add_admission(gate)
    c.manager.start()
    try:
        c.put("jobs", "Job", "two", {"completions": 2, "parallelism": 2,
                                     "template": template("true")})
        wait_for(lambda: any(t.endswith(".1.0") for t in c.mesos.launched), 10,
                 lambda: f"{c.mesos.launched}")
        unknown = wait_for(lambda: [r for r in c.store.list_executions("jobs", "default", "two")
                                    if r.record.kill_reason == "NeverLaunched"], 10,
                           lambda: f"{c.store.list_executions('jobs', 'default', 'two')}")
        assert [r.record.task_id.rsplit(".", 2)[-2:] for r in unknown] == [["0", "0"]]
    finally:
        c.manager.stop()
        c.store.close()
