"""The Service planner, as tables over the simulated world of `service_sim`, and as
hypothesis properties of the rollout invariants over whole runs with failures, health flips
and template changes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.reconcile import Kill, Launch
from controller.reconcile.service_model import VERSION_REPLACED, healthy, live
from tests.reconcile.service_sim import World, make_service

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CHECK = {"type": "HTTP", "portName": "http", "path": "/health"}


def of(plan, kind):  # type: ignore[no-untyped-def]
    return [a for a in plan.actions if isinstance(a, kind)]


def test_launches_each_instance_in_its_own_slot_with_version_and_health_check() -> None:
    world = World(make_service(instances=3, healthCheck=CHECK))
    plan = world.step(T0)
    launches = of(plan, Launch)
    assert [a.task_id for a in launches] == [f"service.default.web.9.{i}.0" for i in range(3)]
    assert all(a.record == {"version": world.version()} for a in launches)
    assert launches[0].health_check is not None and launches[0].health_check.path == "/health"
    assert launches[0].env["DOCKET_INSTANCE_INDEX"] == "0"
    status = world.status
    assert status is not None and status.phase == "Deploying" and status.updated == 3
    world.start_all(T0)
    world.step(T0)
    status = world.status
    assert (status.phase, status.running, status.healthy, status.unavailable) == \
        ("Running", 3, 3, 0)
    assert [e.ports for e in status.endpoints] == [{"http": 31000}, {"http": 31001},
                                                    {"http": 31002}]
    cond = status.condition("Progressing")
    assert cond is not None and cond.reason == "RolloutComplete"
    assert not of(world.step(T0), Launch)


def test_running_is_healthy_without_a_health_check() -> None:
    world = World(make_service(instances=2))
    world.step(T0)
    world.start_all(T0, health=None)
    world.step(T0)
    assert world.status is not None and world.status.healthy == 2
    assert world.status.phase == "Running"


def test_a_failed_instance_is_replaced_in_its_slot_after_a_growing_backoff() -> None:
    world = World(make_service(instances=2, backoffSeconds=2, backoffFactor=2))
    world.step(T0)
    world.start_all(T0, health=None)
    world.step(T0)
    now = T0
    delays = []
    for attempt in range(3):
        world.set(f"service.default.web.9.1.{attempt}", now, state="TASK_FAILED")
        plan = world.step(now)
        assert not of(plan, Launch)
        assert world.status is not None and world.status.phase == "Degraded"
        delays.append(plan.requeue_after)
        now += timedelta(seconds=plan.requeue_after or 0)
        (launch,) = of(world.step(now), Launch)
        assert launch.task_id == f"service.default.web.9.1.{attempt + 1}"
        world.start_all(now, health=None)
    assert delays == [2.0, 4.0, 8.0]
    assert world.status is not None and world.status.consecutive_failures == 3


def test_backoff_resets_once_an_instance_stayed_healthy() -> None:
    world = World(make_service(instances=1, backoffSeconds=10, healthCheck=CHECK))
    world.step(T0)
    world.set("service.default.web.9.0.0", T0, state="TASK_FAILED")
    world.step(T0)
    now = T0 + timedelta(seconds=10)
    world.step(now)
    world.start_all(now)
    now += timedelta(seconds=61)
    world.step(now)
    assert world.status is not None and world.status.consecutive_failures == 0
    world.set("service.default.web.9.0.1", now, state="TASK_FAILED")
    plan = world.step(now)
    assert plan.requeue_after == 10.0, "the count started again: the first delay"


def test_system_failures_are_replaced_at_once() -> None:
    world = World(make_service(instances=1, backoffSeconds=30))
    world.step(T0)
    world.start_all(T0, health=None)
    world.set("service.default.web.9.0.0", T0, state="TASK_LOST",
              reason="REASON_AGENT_REMOVED")
    (launch,) = of(world.step(T0), Launch)
    assert launch.task_id == "service.default.web.9.0.1"


def test_scaling_down_kills_the_youngest_and_scaling_up_reuses_free_slots() -> None:
    world = World(make_service(instances=3))
    world.step(T0)
    for i in range(3):
        world.set(f"service.default.web.9.{i}.0", T0 + timedelta(seconds=i),
                  state="TASK_RUNNING")
    world.step(T0)
    world.service = make_service(instances=1)
    plan = world.step(T0)
    assert sorted(k.task_id for k in of(plan, Kill)) == ["service.default.web.9.1.0",
                                                         "service.default.web.9.2.0"]
    world.complete_kills(T0)
    world.step(T0)
    world.service = make_service(instances=2)
    (launch,) = of(world.step(T0), Launch)
    assert launch.index == 1 and launch.attempt == 1
    world.service = make_service(instances=1, killSelection="OldestFirst")
    plan = world.step(T0)
    assert [k.task_id for k in of(plan, Kill)] == ["service.default.web.9.1.1"], \
        "not running yet: killed first"


def test_rollout_keeps_the_floor_and_the_ceiling() -> None:
    strategy = {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.34}
    world = World(make_service(instances=3, healthCheck=CHECK, upgradeStrategy=strategy))
    world.step(T0)
    world.start_all(T0)
    world.step(T0)
    world.service = make_service(instances=3, healthCheck=CHECK, upgradeStrategy=strategy,
                                 template={"command": "serve --v2",
                                           "ports": [{"name": "http"}]})
    now = T0
    for _ in range(40):
        now += timedelta(seconds=1)
        plan = world.step(now)
        assert len(world.alive()) <= 4, "never above floor(3 x 1.34)"
        assert world.healthy_count() >= 3, "never below ceil(3 x 1)"
        assert len(of(plan, Launch)) <= 1
        world.start_all(now)
        world.complete_kills(now)
        if world.status is not None and world.status.phase == "Running":
            break
    assert world.status is not None and world.status.phase == "Running"
    assert {r.version for r in world.alive()} == {world.version()}
    assert len(world.alive()) == 3


def test_rollout_with_no_room_kills_one_old_instance_at_a_time() -> None:
    strategy = {"minimumHealthCapacity": 1, "maximumOverCapacity": 0}
    world = World(make_service(instances=2, upgradeStrategy=strategy))
    world.step(T0)
    world.start_all(T0, health=None)
    world.step(T0)
    world.service = make_service(instances=2, upgradeStrategy=strategy,
                                 template={"command": "v2", "ports": [{"name": "http"}]})
    plan = world.step(T0)
    kills = of(plan, Kill)
    assert len(kills) == 1 and kills[0].reason == VERSION_REPLACED
    assert not of(world.step(T0), Kill), "one at a time"
    for _ in range(10):
        world.complete_kills(T0)
        world.start_all(T0, health=None)
        world.step(T0)
        assert len(world.alive()) <= 2
    assert world.status is not None and world.status.phase == "Running"
    assert {r.version for r in world.alive()} == {world.version()}


def test_a_rollout_without_progress_says_so_and_keeps_trying() -> None:
    world = World(make_service(instances=1, healthCheck=CHECK, progressDeadlineSeconds=60))
    world.step(T0)
    world.start_all(T0, health=False)  # never healthy
    plan = world.step(T0 + timedelta(seconds=30))
    assert plan.requeue_after is not None and plan.requeue_after <= 30
    world.step(T0 + timedelta(seconds=61))
    cond = world.status.condition("Progressing") if world.status else None
    assert cond is not None and (cond.status, cond.reason) == ("False",
                                                               "ProgressDeadlineExceeded")
    assert world.status is not None and world.status.phase == "Deploying"


def test_unreachable_instance_waits_then_is_replaced_and_killed_if_it_returns() -> None:
    world = World(make_service(instances=1, unreachableStrategy={
        "inactiveAfterSeconds": 30, "expungeAfterSeconds": 600}))
    world.step(T0)
    world.start_all(T0, health=None)
    world.set("service.default.web.9.0.0", T0, state="TASK_UNREACHABLE")
    plan = world.step(T0 + timedelta(seconds=10))
    assert not of(plan, Launch) and plan.requeue_after == 20.0
    (launch,) = of(world.step(T0 + timedelta(seconds=30)), Launch)
    assert launch.task_id == "service.default.web.9.0.1"
    world.set("service.default.web.9.0.0", T0, state="TASK_RUNNING")
    plan = world.step(T0 + timedelta(seconds=40))
    assert [k.task_id for k in of(plan, Kill)] == ["service.default.web.9.0.0"]


def test_an_unreachable_instance_that_returns_in_time_is_kept() -> None:
    world = World(make_service(instances=1, unreachableStrategy={
        "inactiveAfterSeconds": 30, "expungeAfterSeconds": 600}))
    world.step(T0)
    world.start_all(T0, health=None)
    world.set("service.default.web.9.0.0", T0, state="TASK_UNREACHABLE")
    world.step(T0 + timedelta(seconds=5))
    world.set("service.default.web.9.0.0", T0, state="TASK_RUNNING")
    plan = world.step(T0 + timedelta(seconds=6))
    assert not of(plan, Kill) and not of(plan, Launch)


def test_deleting_kills_every_instance() -> None:
    world = World(make_service(instances=2))
    world.step(T0)
    world.start_all(T0, health=None)
    world.service = None
    plan = world.step(T0)
    assert sorted(k.task_id for k in of(plan, Kill)) == ["service.default.web.9.0.0",
                                                         "service.default.web.9.1.0"]


def test_zero_instances_keeps_the_object_and_runs_nothing() -> None:
    world = World(make_service(instances=2))
    world.step(T0)
    world.start_all(T0, health=None)
    world.service = make_service(instances=0)
    plan = world.step(T0)
    assert len(of(plan, Kill)) == 2
    world.complete_kills(T0)
    world.step(T0)
    assert world.status is not None and world.status.phase == "Running"
    assert world.status.instances == 0 and not world.alive()


# --- properties ----------------------------------------------------------------------------------
EVENTS = st.lists(st.tuples(st.sampled_from(["start", "healthy", "unhealthy", "fail", "lose",
                                             "kills", "tick", "change"]),
                            st.integers(0, 9)), min_size=5, max_size=50)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=EVENTS, instances=st.integers(1, 5),
       min_health=st.sampled_from([0.0, 0.5, 0.67, 1.0]),
       over=st.sampled_from([0.0, 0.34, 0.5, 1.0]), check=st.booleans())
def test_rollout_invariants_hold_for_any_history(
        events: list[tuple[str, int]], instances: int, min_health: float, over: float,
        check: bool) -> None:
    def spec(command: str) -> dict[str, object]:
        extra: dict[str, object] = {"healthCheck": CHECK} if check else {}
        return {"instances": instances, "backoffSeconds": 1, "template": {
            "command": command, "ports": [{"name": "http"}]},
            "upgradeStrategy": {"minimumHealthCapacity": min_health,
                                "maximumOverCapacity": over}, **extra}
    world = World(make_service(**spec("v0")))
    floor_h = math.ceil(instances * min_health - 1e-9)
    ceiling = math.floor(instances * (1 + over) + 1e-9)
    now = T0
    versions = 0
    for what, n in events:
        alive = world.alive()
        target = alive[n % len(alive)] if alive else None
        if what == "change":
            versions += 1
            world.service = make_service(**spec(f"v{versions}"))
        elif what == "tick":
            now += timedelta(seconds=n)
        elif what == "kills":
            world.complete_kills(now)
        elif target is not None and what == "start" and target.state == "LAUNCHING":
            world.set(target.task_id, now, state="TASK_RUNNING")
        elif target is not None and what in ("healthy", "unhealthy") \
                and target.state == "TASK_RUNNING":
            world.set(target.task_id, now, healthy=what == "healthy")
        elif target is not None and what == "fail":
            world.set(target.task_id, now, state="TASK_FAILED")
        elif target is not None and what == "lose":
            world.set(target.task_id, now, state="TASK_LOST", reason="REASON_AGENT_REMOVED")
        healthy_before = world.healthy_count()
        healthy_ids = {t for t, r in world.records.items() if healthy(r, check)}
        plan = world.step(now)
        # The planner's own kills never take healthy instances below the floor, except the
        # one Marathon allows when floor and ceiling leave no room.
        killed_healthy = [k for k in of(plan, Kill)
                          if k.task_id in healthy_ids and k.reason == VERSION_REPLACED]
        if floor_h < ceiling or instances == 0:
            assert healthy_before - len(killed_healthy) >= min(floor_h, healthy_before), \
                (healthy_before, killed_healthy, floor_h)
        else:
            assert len(killed_healthy) <= 1
        # Launches never take live instances above the ceiling (or above the instances
        # wanted when the ceiling is below what is alive after failures).
        assert len(world.alive()) <= max(ceiling, instances) + len(
            [r for r in world.alive() if r.kill_reason is not None])
        per_slot: dict[tuple[int, str | None], int] = {}
        for rec in world.alive():
            if rec.kill_reason is None:
                key = (rec.index, rec.version)
                per_slot[key] = per_slot.get(key, 0) + 1
        assert all(v == 1 for v in per_slot.values()), per_slot
    # Liveness: with every task running healthy and every kill completed, the Service
    # converges to `instances` healthy instances of the current version.
    for _ in range(60):
        now += timedelta(seconds=400)
        world.complete_kills(now)
        world.start_all(now, health=True if check else None)
        for rec in world.alive():
            if check and rec.state == "TASK_RUNNING" and rec.healthy is False:
                world.set(rec.task_id, now, healthy=True)
        world.step(now)
        if world.status is not None and world.status.phase == "Running":
            break
    status = world.status
    assert status is not None and status.phase == "Running", status
    current = [r for r in world.alive() if r.kill_reason is None]
    assert len(current) == instances
    assert {r.version for r in current} <= {world.version()}
    assert live  # the helper is what the sim counts with


def test_by_default_an_unreachable_instance_is_written_off_and_replaced_at_once() -> None:
    world = World(make_service(instances=1))
    world.step(T0)
    world.start_all(T0, health=None)
    world.set("service.default.web.9.0.0", T0, state="TASK_UNREACHABLE")
    plan = world.step(T0)
    updates = [a for a in plan.actions if type(a).__name__ == "UpdateExecution"]
    assert [(u.task_id, u.changes) for u in updates] == [
        ("service.default.web.9.0.0", {"kill_reason": "Unreachable"})]
    (launch,) = of(plan, Launch)
    assert launch.task_id == "service.default.web.9.0.1"
    assert world.records["service.default.web.9.0.0"].state == "TASK_UNREACHABLE"
