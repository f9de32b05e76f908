"""The Queue planner, as tables over the simulated world of `queue_sim` (etcd and Redis
sources), and as hypothesis properties over whole runs with failures, losses and producers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.api import QueueStatus
from controller.reconcile import Launch
from controller.reconcile.actions import (
    AckItems,
    ClaimItems,
    DeadLetterItems,
    ForgetExecutions,
    RedisOp,
    ReleaseClaims,
)
from controller.reconcile.queue import MESSAGE_TOO_LARGE, SourceView
from tests.reconcile.queue_sim import World, make_queue

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
REDIS = {"type": "redis", "url": "redis://127.0.0.1:6379/0", "key": "jobs"}


def of(plan, kind):  # type: ignore[no-untyped-def]
    return [a for a in plan.actions if isinstance(a, kind)]


def settle(world: World, now: datetime, passes: int = 20) -> None:
    """Plan until the planner stops asking to be planned again at once."""
    for _ in range(passes):
        plan = world.step(now)
        if plan.requeue_after != 0.0:
            return
    raise AssertionError("the planner kept asking for another pass")


# --- etcd ------------------------------------------------------------------------------------
def test_claims_batches_with_their_intents_up_to_max_concurrent() -> None:
    world = World(make_queue(batchSize=10, maxConcurrent=2))
    for n in range(25):
        world.produce(f"msg {n}".encode())
    plan = world.step(T0)
    claims = of(plan, ClaimItems)
    launches = of(plan, Launch)
    assert [len(c.item_ids) for c in claims] == [10, 10]
    assert [c.value for c in claims] == ["7.0", "7.1"]
    assert [launch.task_id for launch in launches] == ["queue.default.q.7.0.0",
                                                      "queue.default.q.7.1.0"]
    env = launches[0].env
    assert env["DOCKET_BATCH"] == "\n".join(f"msg {n}" for n in range(10))
    assert base64.b64decode(env["DOCKET_BATCH_B64"]) == env["DOCKET_BATCH"].encode()
    assert env["DOCKET_BATCH_SIZE"] == "10" and env["DOCKET_QUEUE"] == "default/q"
    assert launches[0].record["message_ids"] == list(claims[0].item_ids)
    status = world.status
    assert status is not None
    assert (status.pending, status.in_flight, status.next_batch, status.active) == (5, 20, 2, 2)
    # Planned again with nothing new: nothing more is claimed (the slots are taken).
    again = world.step(T0)
    assert not of(again, ClaimItems) and not of(again, Launch)


def test_intents_committed_without_their_status_keep_their_batch_numbers() -> None:
    # A plan larger than one transaction: its intents were committed, then the controller
    # died before the status transaction.
    world = World(make_queue(batchSize=1, maxConcurrent=3))
    world.produce(b"a")
    world.crash_next = True
    world.step(T0)
    assert world.status is None and list(world.records) == ["queue.default.q.7.0.0"]
    world.produce(b"b")
    (launch,) = of(world.step(T0), Launch)
    assert launch.task_id == "queue.default.q.7.1.0"
    assert world.status is not None and world.status.next_batch == 2


def test_a_finished_batch_is_acked_counted_once_and_forgotten() -> None:
    world = World(make_queue(batchSize=3))
    for n in range(4):
        world.produce(f"{n}".encode())
    world.step(T0)
    (tid,) = world.records
    world.report(tid, "TASK_RUNNING", T0)
    world.report(tid, "TASK_FINISHED", T0 + timedelta(seconds=2))
    assert world.acked == ["m00001", "m00002", "m00003"]
    plan = world.step(T0 + timedelta(seconds=3))
    assert of(plan, ForgetExecutions) == [ForgetExecutions((tid,))]
    # The last message is claimed by the next batch in the same pass.
    assert len(of(plan, Launch)) == 1
    settle(world, T0 + timedelta(seconds=3))
    status = world.status
    assert status is not None
    assert status.succeeded == 3 and status.archived.succeeded == 3
    assert status.recent_batches[-1].result == "Succeeded"
    assert status.recent_batches[-1].task_id == tid
    assert not any(v.startswith("7.0") for v in world.claims.values()), "claims released"
    assert status.pending + status.in_flight + status.succeeded == 4


def test_an_ack_the_pump_did_not_make_is_made_by_the_planner() -> None:
    world = World(make_queue(batchSize=2))
    world.produce(b"a")
    world.produce(b"b")
    world.step(T0)
    (tid,) = world.records
    world.records[tid] = world.records[tid].model_copy(update={"state": "TASK_FINISHED"})
    plan = world.step(T0)
    assert of(plan, AckItems) == [AckItems("default", "q", ("m00001", "m00002"))]
    assert plan.requeue_after == 0.0
    settle(world, T0)
    assert world.status is not None and world.status.succeeded == 2
    assert not world.items and not world.records


def test_failed_batch_is_retried_after_backoff_with_the_same_messages() -> None:
    world = World(make_queue(batchSize=2, backoffLimit=3))
    world.produce(b"a")
    world.produce(b"b")
    world.step(T0)
    world.report("queue.default.q.7.0.0", "TASK_FAILED", T0)
    plan = world.step(T0)
    assert not of(plan, Launch)
    assert plan.requeue_after == 1.0  # backoff initialSeconds
    plan = world.step(T0 + timedelta(seconds=1))
    (launch,) = of(plan, Launch)
    assert launch.task_id == "queue.default.q.7.0.1"
    assert launch.record["message_ids"] == ["m00001", "m00002"]
    assert world.status is not None and world.status.failed_attempts == 1
    assert world.status.in_flight == 2


def test_exhausted_batch_goes_to_the_dead_letter_with_reason_and_execution() -> None:
    world = World(make_queue(batchSize=2, backoffLimit=1))
    world.produce(b"poison")
    now = T0
    world.step(now)
    for attempt in range(2):
        world.report(f"queue.default.q.7.0.{attempt}", "TASK_FAILED", now)
        now += timedelta(seconds=10)
        plan = world.step(now)
    (dead,) = of(plan, DeadLetterItems)
    assert dead.reason == "BackoffLimitExceeded"
    assert dead.execution == "queue.default.q.7.0.1"
    settle(world, now)
    assert world.dead == {"m00001": b"poison"}
    status = world.status
    assert status is not None
    assert (status.dead_lettered, status.failed_attempts, status.in_flight) == (1, 2, 0)
    assert status.recent_batches[-1].result == "DeadLettered"
    assert status.recent_batches[-1].reason == "BackoffLimitExceeded"


def test_system_failures_spend_their_own_budget_without_backoff() -> None:
    world = World(make_queue(batchSize=1, backoffLimit=0, systemRetryLimit=1))
    world.produce(b"x")
    world.step(T0)
    world.report("queue.default.q.7.0.0", "TASK_LOST", T0)
    (launch,) = of(world.step(T0), Launch)
    assert launch.attempt == 1
    world.report("queue.default.q.7.0.1", "TASK_LOST", T0)
    (dead,) = of(world.step(T0), DeadLetterItems)
    assert dead.reason == "SystemRetryLimitExceeded"


def test_a_message_larger_than_max_batch_bytes_is_dead_lettered_without_a_task() -> None:
    world = World(make_queue(batchSize=5, maxBatchBytes=10))
    world.produce(b"x" * 11)
    world.produce(b"ok")
    plan = world.step(T0)
    (dead,) = of(plan, DeadLetterItems)
    assert dead.reason == MESSAGE_TOO_LARGE and dead.items[0].id == "m00001"
    (launch,) = of(plan, Launch)
    assert launch.record["message_ids"] == ["m00002"]
    assert world.status is not None and world.status.dead_lettered == 1


def test_batches_are_cut_at_max_batch_bytes() -> None:
    world = World(make_queue(batchSize=10, maxBatchBytes=9, maxConcurrent=3))
    for payload in (b"aaaa", b"bbbb", b"cc", b"dd"):
        world.produce(payload)
    plan = world.step(T0)
    # "aaaa\nbbbb" is 9 bytes; "cc\ndd" 5.
    assert [c.item_ids for c in of(plan, ClaimItems)] == [("m00001", "m00002"),
                                                          ("m00003", "m00004")]


def test_stale_claims_are_released_and_their_messages_count_as_pending() -> None:
    world = World(make_queue(batchSize=1))
    world.produce(b"a")
    world.claims["m00001"] = "3.9"  # an older incarnation's claim
    plan = world.step(T0)
    assert of(plan, ReleaseClaims) == [ReleaseClaims("default", "q", ("m00001",))]
    assert world.status is not None and world.status.pending == 1
    plan = world.step(T0)
    assert len(of(plan, Launch)) == 1


def test_an_older_incarnations_running_task_keeps_its_messages_until_it_ends() -> None:
    from controller.api import ExecutionRecord

    world = World(make_queue(batchSize=1))
    world.produce(b"a")
    old = "queue.default.q.3.0.0"
    world.claims["m00001"] = "3.0"
    world.records[old] = ExecutionRecord(task_id=old, index=0, attempt=0,
                                         state="TASK_RUNNING", agent_id="a1",
                                         message_ids=["m00001"], message_count=1)
    plan = world.step(T0)
    assert [k.task_id for k in plan.actions if type(k).__name__ == "Kill"] == [old]
    assert not of(plan, ReleaseClaims) and not of(plan, Launch)
    world.report(old, "TASK_KILLED", T0)
    plan = world.step(T0)
    assert of(plan, ForgetExecutions) == [ForgetExecutions((old,))]
    assert of(plan, ReleaseClaims) == [ReleaseClaims("default", "q", ("m00001",))]
    plan = world.step(T0)
    (launch,) = of(plan, Launch)
    assert launch.task_id == "queue.default.q.7.0.0"


def test_suspended_queue_claims_and_launches_nothing_but_running_tasks_finish() -> None:
    world = World(make_queue(batchSize=1, maxConcurrent=2))
    world.produce(b"a")
    world.step(T0)
    world.queue = make_queue(batchSize=1, maxConcurrent=2, suspend=True)
    world.produce(b"b")
    plan = world.step(T0)
    assert not of(plan, Launch) and not of(plan, ClaimItems)
    assert not [a for a in plan.actions if type(a).__name__ == "Kill"]
    assert world.status is not None and world.status.phase == "Suspended"
    assert world.status.condition("Suspended") is not None


def test_deleting_a_queue_kills_its_tasks_then_releases_and_deletes_everything() -> None:
    world = World(make_queue(batchSize=1, maxConcurrent=2))
    world.produce(b"a")
    world.produce(b"b")
    world.step(T0)
    world.report("queue.default.q.7.0.0", "TASK_FINISHED", T0)  # acked by the pump
    world.queue = None
    plan = world.step(T0)
    kills = [a for a in plan.actions if type(a).__name__ == "Kill"]
    assert [k.task_id for k in kills] == ["queue.default.q.7.1.0"]
    settle(world, T0)
    assert world.status is None and not world.records and not world.claims
    assert list(world.items) == ["m00002"], "the unfinished batch's message is back"
    assert world.acked == ["m00001"]


def test_a_deleted_queue_that_never_claimed_is_cleaned_up_even_without_its_source() -> None:
    world = World(None)
    world.status = QueueStatus(uid=7, phase="Invalid")
    world.available = False
    plan = world.step(T0)
    assert [type(a).__name__ for a in plan.actions] == ["DeleteOwnerData"]


def test_a_deleted_redis_queue_waits_for_redis_before_forgetting_its_claims() -> None:
    world = World(make_queue(source=REDIS), source_type="redis")
    world.produce(b"a")
    settle(world, T0)
    world.queue = None
    (tid,) = world.records
    world.report(tid, "TASK_KILLED", T0)
    world.available = False
    plan = world.step(T0)
    assert not plan.actions and plan.requeue_after is not None
    world.available = True
    settle(world, T0)
    assert world.status is None and not world.processing
    assert list(world.items.values()) == [(b"a", 0)], "the message is back in the list"


def test_a_source_that_is_down_shows_a_condition_and_claims_nothing() -> None:
    world = World(make_queue())
    world.produce(b"a")
    world.available = False
    plan = world.step(T0)
    assert not of(plan, Launch)
    assert world.status is not None
    cond = world.status.condition("SourceUnavailable")
    assert cond is not None and cond.status == "True" and cond.message == "down"
    assert plan.requeue_after is not None and 0 < plan.requeue_after <= 30
    world.available = True
    world.step(T0 + timedelta(seconds=5))
    assert world.status.condition("SourceUnavailable") is None
    assert len(world.records) == 1


# --- Redis -------------------------------------------------------------------------------------
def test_redis_claims_in_two_steps_reservation_then_intent() -> None:
    world = World(make_queue(source=REDIS, batchSize=10, maxConcurrent=2), source_type="redis")
    for n in range(25):
        world.produce(f"{n}".encode())
    plan = world.step(T0)
    ops = of(plan, RedisOp)
    assert [(o.op, o.tag) for o in ops] == [("claim", "default.q.7.0"), ("claim", "default.q.7.1")]
    assert not of(plan, Launch)
    assert world.status is not None and world.status.claiming == {0: "Claiming", 1: "Claiming"}
    assert [len(v) for v in world.processing.values()] == [10, 10]
    plan = world.step(T0)
    launches = of(plan, Launch)
    assert [launch.task_id for launch in launches] == ["queue.default.q.7.0.0",
                                                      "queue.default.q.7.1.0"]
    assert launches[0].record == {"message_ids": None, "message_count": 10}
    assert world.status.claiming == {}
    assert (world.status.pending, world.status.in_flight) == (5, 20)


def test_redis_reservation_whose_claim_was_lost_is_claimed_again_or_dropped() -> None:
    world = World(make_queue(source=REDIS), source_type="redis")
    world.produce(b"a")
    plan = world.step(T0)
    world.processing.clear()  # the claim never ran (the controller died first)
    world.order.clear()
    world.items.clear()
    world.produce(b"a")
    plan = world.step(T0)
    assert [o.op for o in of(plan, RedisOp)] == ["claim"]
    world.processing.clear()
    world.order.clear()
    world.items.clear()
    world.step(T0)
    assert world.status is not None and world.status.claiming == {}


def test_redis_stray_processing_lists_go_back_to_the_head() -> None:
    world = World(make_queue(source=REDIS), source_type="redis")
    world.processing[42] = [b"lost"]
    plan = world.step(T0)
    assert [(o.op, o.tag) for o in of(plan, RedisOp)] == [("give_back", "default.q.7.42")]


def test_redis_success_acks_then_forgets() -> None:
    world = World(make_queue(source=REDIS, batchSize=2), source_type="redis")
    world.produce(b"a")
    world.produce(b"b")
    settle(world, T0)
    (tid,) = world.records
    world.report(tid, "TASK_FINISHED", T0)
    plan = world.step(T0)
    assert [o.op for o in of(plan, RedisOp)] == ["ack"]
    settle(world, T0)
    assert world.status is not None and world.status.succeeded == 2 and not world.records


def test_redis_oversized_message_is_dead_lettered_and_counted_once() -> None:
    world = World(make_queue(source=REDIS, maxBatchBytes=3), source_type="redis")
    world.produce(b"toolarge")
    settle(world, T0)
    assert list(world.dead.values()) == [b"toolarge"]
    assert world.status is not None and world.status.dead_lettered == 1
    assert not world.launched


# --- properties ----------------------------------------------------------------------------------
EVENTS = st.lists(st.tuples(st.sampled_from(["produce", "run", "finish", "fail", "lose", "tick",
                                             "plan", "big", "crash"]),
                            st.integers(0, 7)), min_size=5, max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=EVENTS, source=st.sampled_from(["etcd", "redis"]),
       batch=st.integers(1, 4), concurrent=st.integers(1, 3))
def test_no_message_is_lost_run_twice_at_once_or_counted_twice(
        events: list[tuple[str, int]], source: str, batch: int, concurrent: int) -> None:
    spec = {"batchSize": batch, "maxConcurrent": concurrent, "backoffLimit": 1,
            "systemRetryLimit": 1, "maxBatchBytes": 40}
    if source == "redis":
        spec["source"] = REDIS
    world = World(make_queue(**spec), source_type=source)
    now = T0
    for what, n in events:
        live = world.live_tasks()
        target = live[n % len(live)] if live else None
        if what == "produce":
            world.produce(f"p{world.produced}".encode())
        elif what == "big":
            world.produce(b"B" * 41)
        elif what == "tick":
            now += timedelta(seconds=n)
        elif what == "crash":
            world.crash_next = True
        elif target is not None and what == "run":
            world.report(target.task_id, "TASK_RUNNING", now)
        elif target is not None and what in ("finish", "fail", "lose"):
            world.report(target.task_id, {"finish": "TASK_FINISHED", "fail": "TASK_FAILED",
                                          "lose": "TASK_LOST"}[what], now)
        world.step(now)
        world.check()
    # Quiet down: every task finishes, time passes, until nothing is left to do.
    for _ in range(200):
        for rec in world.live_tasks():
            world.report(rec.task_id, "TASK_FINISHED", now)
        now += timedelta(seconds=5)
        world.step(now)
        world.check()
        status = world.status
        assert status is not None
        if not world.records and not world.items and not status.claiming \
                and not world.processing:
            break
    status = world.status
    assert status is not None
    assert not world.records and not world.items, "everything ends acked or dead"
    assert status.succeeded == len(world.acked)
    assert status.dead_lettered == len(world.dead)
    assert status.succeeded + status.dead_lettered + status.pending + status.in_flight \
        == world.produced
    assert len(set(world.launched)) == len(world.launched)
    if source == "etcd":
        assert len(set(world.acked)) == len(world.acked), "a message acked twice"
    assert not set(world.acked) & set(world.dead), "a message both acked and dead"


def test_view_type_is_the_sources() -> None:
    assert SourceView("etcd").type == "etcd"
