"""Every kind's planner under a Denial (the admission policy, a missing secret): nothing new is
launched or created, nothing running is killed, and the status says why — Invalid with the
denial's reason once nothing of the object runs, else a condition on the running object.
When the denial lifts, the object carries on where it was."""

from __future__ import annotations

from datetime import timedelta

from controller.api import JobPhase
from controller.reconcile import Kill, Launch, UpdateExecution, plan_job
from controller.reconcile.cronjob import CreateJob
from controller.reconcile.denial import POLICY_DENIED, SECRET_NOT_FOUND, Denial
from tests.reconcile import helpers as h
from tests.reconcile import test_cronjob as cj
from tests.reconcile.queue_sim import World as QueueWorld
from tests.reconcile.queue_sim import make_queue
from tests.reconcile.service_sim import World as ServiceWorld
from tests.reconcile.service_sim import make_service

IMAGE = Denial(POLICY_DENIED, "spec.template.container.image",
               'image "evil/x:1" is not allowed in namespace default')
SECRET = Denial(SECRET_NOT_FOUND, "spec.template.env.DB_PASSWORD.valueFrom.secretKeyRef",
                "secret default/db does not exist")


def _invalid_condition(status):  # type: ignore[no-untyped-def]
    return next(c for c in status.conditions if c.type == "Invalid")


def _of(plan, *kinds):  # type: ignore[no-untyped-def]
    return [a for a in plan.actions if isinstance(a, kinds)]


# --- Job ----------------------------------------------------------------------------------------
def test_a_denied_job_launches_nothing_and_is_invalid_naming_field_and_rule() -> None:
    inp = h.inp(h.job(completions=3, parallelism=2))
    plan = plan_job(type(inp)(**{**inp.__dict__, "denial": IMAGE}))
    assert _of(plan, Launch) == []
    assert plan.status is not None and plan.status.phase == JobPhase.INVALID
    cond = _invalid_condition(plan.status)
    assert (cond.status, cond.reason) == ("True", POLICY_DENIED)
    assert cond.message.startswith('spec.template.container.image: image "evil/x:1" is not')
    assert plan.status.start_time is None  # its deadline has not started either


def test_a_job_denied_while_running_keeps_its_tasks_and_launches_no_more() -> None:
    spec = h.job(completions=5, parallelism=3)
    running = [h.rec(0, submitted_at=h.at(0), started_at=h.at(1)),
               h.rec(1, submitted_at=h.at(0), started_at=h.at(1))]
    allowed = plan_job(h.inp(spec, running, now=h.at(5)))
    assert len(_of(allowed, Launch)) == 1  # the control: one slot of parallelism is free
    inp = h.inp(spec, running, now=h.at(5))
    denied = plan_job(type(inp)(**{**inp.__dict__, "denial": SECRET}))
    assert _of(denied, Launch, Kill, UpdateExecution) == []
    assert denied.status is not None and denied.status.phase == JobPhase.RUNNING
    cond = _invalid_condition(denied.status)
    assert cond.reason == SECRET_NOT_FOUND and "running tasks go on" in cond.message

    # Once its tasks are done, nothing of it runs: Invalid, the two successes kept.
    done = [h.rec(i, state="TASK_FINISHED", submitted_at=h.at(0), started_at=h.at(1),
                  finished_at=h.at(6)) for i in (0, 1)]
    inp = h.inp(spec, done, status=denied.status, now=h.at(7))
    after = plan_job(type(inp)(**{**inp.__dict__, "denial": SECRET}))
    assert _of(after, Launch) == []
    assert after.status is not None and after.status.phase == JobPhase.INVALID
    assert after.status.succeeded == 2

    # Lifted: the Job carries on with the three completions left, and says it is valid.
    lifted = plan_job(h.inp(spec, done, status=after.status, now=h.at(8)))
    assert sorted(a.index for a in _of(lifted, Launch)) == [2, 3, 4]
    assert lifted.status is not None and lifted.status.phase == JobPhase.RUNNING
    assert _invalid_condition(lifted.status).status == "False"


def test_a_finished_job_stays_finished_under_a_denial() -> None:
    spec = h.job(completions=1)
    done = [h.rec(0, state="TASK_FINISHED", started_at=h.at(1), finished_at=h.at(2))]
    inp = h.inp(spec, done, now=h.at(3))
    plan = plan_job(type(inp)(**{**inp.__dict__, "denial": IMAGE}))
    assert plan.status is not None and plan.status.phase == JobPhase.SUCCEEDED
    assert all(c.type != "Invalid" for c in plan.status.conditions)


# --- CronJob ------------------------------------------------------------------------------------
def _cron(spec, now, status=None, jobs=(), denial=None):  # type: ignore[no-untyped-def]
    return cj.plan_cronjob(cj.CronJobInput(cj.NS, cj.NAME, spec, cj.REV, cj.UID, status,
                                           jobs, now, denial))


def test_a_denied_cronjob_creates_no_job_and_runs_the_latest_slot_once_lifted() -> None:
    status = cj.seen(cj.at(0))
    for minute in (15, 31, 47, 64):
        p = _cron(cj.cronjob(), cj.at(minute), status, denial=IMAGE)
        assert [a for a in p.actions if isinstance(a, CreateJob)] == []
        assert p.status is not None and p.status.phase == "Invalid"
        assert _invalid_condition(p.status).reason == POLICY_DENIED
        status = p.status
    assert status.missed == {POLICY_DENIED: 3}  # 15, 30, 45; 60 stays owed
    lifted = _cron(cj.cronjob(), cj.at(70), status)
    assert [c.scheduled_time for c in lifted.actions if isinstance(c, CreateJob)] == [cj.at(60)]
    assert lifted.status is not None and lifted.status.phase == "Active"


def test_a_cronjob_denied_with_a_job_running_stays_active_and_says_so() -> None:
    running = cj.owned(cj.at(0), JobPhase.RUNNING)
    p = _cron(cj.cronjob(), cj.at(16), cj.seen(cj.at(0), last_schedule_time=cj.at(0),
                                                 active=[running.name]),
              jobs=(running,), denial=IMAGE)
    assert [a for a in p.actions if isinstance(a, CreateJob)] == []
    assert p.status is not None and p.status.phase == "Active"
    assert p.status.active == [running.name]
    assert "running tasks go on" in _invalid_condition(p.status).message


# --- Queue --------------------------------------------------------------------------------------
def test_a_denied_queue_claims_nothing_and_keeps_its_messages() -> None:
    world = QueueWorld(make_queue(batchSize=2, maxConcurrent=2), denial=SECRET)
    for i in range(5):
        world.produce(f"m{i}".encode())
    plan = world.step(cj.T0)
    assert _of(plan, Launch) == [] and world.claims == {}
    assert world.status is not None and world.status.phase == "Invalid"
    assert _invalid_condition(world.status).reason == SECRET_NOT_FOUND
    assert len(world.items) == 5

    world.denial = None
    plan = world.step(cj.T0 + timedelta(seconds=1))
    assert len(_of(plan, Launch)) == 2 and len(world.claims) == 4


def test_a_queue_denied_mid_batch_lets_the_batch_finish_and_claims_no_more() -> None:
    world = QueueWorld(make_queue(batchSize=1, maxConcurrent=1))
    for i in range(3):
        world.produce(f"m{i}".encode())
    (first,) = [a.task_id for a in _of(world.step(cj.T0), Launch)]
    world.report(first, "TASK_RUNNING", cj.T0)
    world.denial = IMAGE
    plan = world.step(cj.T0 + timedelta(seconds=1))
    assert _of(plan, Launch, Kill) == []
    assert world.status is not None and world.status.phase == "Active"
    world.report(first, "TASK_FINISHED", cj.T0 + timedelta(seconds=2))
    plan = world.step(cj.T0 + timedelta(seconds=3))
    assert _of(plan, Launch) == []
    assert world.status is not None and world.status.phase == "Invalid"
    assert len(world.acked) == 1 and len(world.items) == 2  # the batch's message acked only


# --- Service ------------------------------------------------------------------------------------
def test_a_denied_service_launches_nothing_and_is_invalid() -> None:
    world = ServiceWorld(make_service(instances=3), denial=IMAGE)
    plan = world.step(cj.T0)
    assert _of(plan, Launch) == []
    assert world.status is not None and world.status.phase == "Invalid"
    assert _invalid_condition(world.status).reason == POLICY_DENIED


def test_a_rollout_denied_midway_kills_no_old_instance_and_launches_nothing() -> None:
    world = ServiceWorld(make_service(instances=3))
    world.step(cj.T0)
    world.start_all(cj.T0)
    world.step(cj.T0)
    old = {r.task_id for r in world.alive()}
    assert len(old) == 3
    # A new version the policy refuses: without the denial it would launch and kill.
    world.service = make_service(instances=3, template={"command": "serve v2",
                                                        "ports": [{"name": "http"}]})
    world.denial = IMAGE
    for second in range(1, 5):
        plan = world.step(cj.T0 + timedelta(seconds=second))
        assert _of(plan, Launch, Kill) == []
    assert {r.task_id for r in world.alive()} == old
    assert world.status is not None and world.status.phase != "Invalid"
    assert "running tasks go on" in _invalid_condition(world.status).message
    # Lifted: the rollout proceeds.
    world.denial = None
    plan = world.step(cj.T0 + timedelta(seconds=10))
    assert _of(plan, Launch)


# --- Throttled (issue 16): a condition, never a change of plan -----------------------------------
def test_a_throttled_job_says_which_throttle_and_plans_as_before() -> None:
    spec = h.job(completions=4, parallelism=2)
    inp = h.inp(spec, [h.rec(0, state="LAUNCHING")], now=h.at(1))
    plain = plan_job(inp)
    held = plan_job(type(inp)(**{**inp.__dict__, "throttled": "mail"}))
    assert held.actions[:-1] == plain.actions[:-1]  # the same launches and kills
    cond = next(c for c in held.status.conditions if c.type == "Throttled")
    assert (cond.status, cond.reason) == ("True", "ThrottleLimit") and "mail" in cond.message
    released = plan_job(h.inp(spec, [h.rec(0)], status=held.status, now=h.at(2)))
    assert released.status is not None
    assert all(c.type != "Throttled" for c in released.status.conditions)


def test_a_throttled_queue_and_service_say_so() -> None:
    queue = QueueWorld(make_queue(batchSize=1, maxConcurrent=1))
    queue.produce(b"m")
    queue.step(cj.T0)
    assert all(c.type != "Throttled" for c in queue.status.conditions)
    from controller.reconcile.queue import QueueInput, plan_queue

    plan = plan_queue(QueueInput("default", "q", queue.queue, 11, 9, queue.status,
                                 list(queue.records.values()), queue.view(cj.T0), cj.T0,
                                 queue.source(), None, "batch"))
    assert plan.status is not None
    assert [c.reason for c in plan.status.conditions if c.type == "Throttled"] == \
        ["ThrottleLimit"]

    from controller.reconcile.service import ServiceInput, plan_service

    service = make_service(instances=2)
    plan = plan_service(ServiceInput("default", "web", service, 5, 9, None, [], cj.T0, None,
                                     "web-pool"))
    assert plan.status is not None
    assert "web-pool" in next(c.message for c in plan.status.conditions
                              if c.type == "Throttled")
    assert len(_of(plan, Launch)) == 2
