"""The embedded Mesos through raw v1 scheduler calls: offers, launches, updates and their
acknowledgement, kills, reconciliation, failover, agent loss, and task validation."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from tests.localmesos.scheduler import RawScheduler, task_info

pytestmark = pytest.mark.integration

Start = Callable[..., LocalMesos]


@pytest.fixture
def schedulers() -> Iterator[list[RawScheduler]]:
    made: list[RawScheduler] = []
    yield made
    for s in made:
        s.close()


def connect(lm: LocalMesos, made: list[RawScheduler], *caps: str, **kw: Any) -> RawScheduler:
    s = RawScheduler(lm.master_url, capabilities=caps, **kw)
    made.append(s)
    first = s.subscribe()
    assert first["type"] == "SUBSCRIBED", first
    return s


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_subscribe_gives_framework_id_master_info_and_heartbeats(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(heartbeat_interval=0.2)
    s = RawScheduler(lm.master_url)
    schedulers.append(s)
    first = s.subscribe()
    sub = first["subscribed"]
    assert sub["framework_id"]["value"].endswith("-0000")
    assert sub["heartbeat_interval_seconds"] == 0.2
    info = sub["master_info"]
    assert info["version"] == "1.11.0" and info["port"] == lm.http.port
    assert info["address"]["ip"] == "127.0.0.1"
    assert info["ip"] == 0x0100007F  # 127.0.0.1 in network order, read as a uint32
    s.wait_for(lambda e: e["type"] == "HEARTBEAT", 2, "HEARTBEAT")
    s.wait_for(lambda e: e["type"] == "HEARTBEAT", 2, "second HEARTBEAT")


def test_echo_hello_runs_and_its_output_is_readable(local_mesos: Start,
                                                    schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    code, _ = s.launch(offer, task_info(offer, "hello", "echo hello"))
    assert code == 202
    starting = s.wait_update("hello", "TASK_STARTING")
    assert starting["source"] == "SOURCE_EXECUTOR" and "uuid" in starting
    assert starting["executor_id"]["value"] == "hello"
    s.wait_update("hello", "TASK_RUNNING")
    done = s.wait_update("hello", "TASK_FINISHED")
    assert done["message"] == "Command exited with status 0"
    agent = offer["agent_id"]["value"]
    path = f"/frameworks/{s.framework_id}/executors/hello/runs/latest/stdout"
    read = get_json(f"{lm.agent_url(agent)}/files/read?path={path}&offset=0")
    assert read == {"data": "hello\n", "offset": 0}
    size = get_json(f"{lm.agent_url(agent)}/files/read?path={path}")  # offset -1: the size
    assert size == {"data": "", "offset": 6}
    part = get_json(f"{lm.agent_url(agent)}/files/read?path={path}&offset=1&length=3")
    assert part == {"data": "ell", "offset": 1}
    listing = get_json(f"{lm.agent_url(agent)}/files/browse?path="
                       f"/frameworks/{s.framework_id}/executors/hello/runs/latest")
    assert {e["path"].rsplit("/", 1)[1] for e in listing} >= {"stdout", "stderr"}


def test_nonzero_exit_fails_with_mesos_message(local_mesos: Start,
                                               schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "bad", "exit 3"))
    failed = s.wait_update("bad", "TASK_FAILED")
    assert failed["message"] == "Command exited with status 3"
    assert failed["source"] == "SOURCE_EXECUTOR"


def test_kill_escalates_to_sigkill_after_the_grace_period(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers, "TASK_KILLING_STATE")
    offer = s.wait_offers()[0]
    stubborn = "trap '' TERM; echo ready; while true; do sleep 0.05; done"
    s.launch(offer, task_info(offer, "stubborn", stubborn,
                              kill_policy={"grace_period": {"nanoseconds": 400_000_000}}))
    s.wait_update("stubborn", "TASK_RUNNING")
    # The shell says "ready" once its trap is installed: only then does SIGTERM go unheard.
    stdout = (f"{lm.agent_url(offer['agent_id']['value'])}/files/read?offset=0&path="
              f"/frameworks/{s.framework_id}/executors/stubborn/runs/latest/stdout")
    eventually(lambda: get_json(stdout)["data"] == "ready\n", "the task never got ready")
    started = time.monotonic()
    assert s.call({"type": "KILL", "kill": {"task_id": {"value": "stubborn"}}})[0] == 202
    s.wait_update("stubborn", "TASK_KILLING")
    killed = s.wait_update("stubborn", "TASK_KILLED", timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.35, "SIGKILL came before the grace period was over"
    assert "signal" in killed["message"]


def test_kill_without_killing_capability_sends_no_killing_state(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "sleepy", "sleep 30"))
    s.wait_update("sleepy", "TASK_RUNNING")
    s.call({"type": "KILL", "kill": {"task_id": {"value": "sleepy"}}})
    seen = []
    while True:
        st = s.wait_update("sleepy")
        seen.append(st["state"])
        if st["state"] == "TASK_KILLED":
            break
    assert "TASK_KILLING" not in seen


def test_unacknowledged_updates_are_resent_in_order(local_mesos: Start,
                                                     schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(status_update_retry_min=0.3)
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "t", "true"))
    first = s.wait_update("t", "TASK_STARTING", ack=False)
    again = s.wait_update("t", "TASK_STARTING", ack=False, timeout=3)
    assert again["uuid"] == first["uuid"], "a resend carries the same uuid"
    # Only the head of the queue is forwarded: nothing about RUNNING until STARTING is acked.
    s.ack(again)
    running = s.wait_update("t", "TASK_RUNNING", ack=False)
    assert running["uuid"] != first["uuid"]
    s.ack(running)
    s.wait_update("t", "TASK_FINISHED")
    state = get_json(lm.master_url + "/state")
    fw = state["frameworks"][0]
    assert [t["id"] for t in fw["completed_tasks"]] == ["t"] and fw["tasks"] == []


def test_explicit_and_implicit_reconciliation(local_mesos: Start,
                                              schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    aware = connect(lm, schedulers, "PARTITION_AWARE")
    offer = aware.wait_offers()[0]
    agent_id = offer["agent_id"]
    aware.launch(offer, task_info(offer, "long", "sleep 30"))
    aware.wait_update("long", "TASK_RUNNING")
    aware.call({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "long"}},
        {"task_id": {"value": "ghost"}, "agent_id": agent_id},
        {"task_id": {"value": "nowhere"}},
    ]}})
    answers = {}
    for _ in range(3):
        ev = aware.wait_for(lambda e: e["type"] == "UPDATE", 5)
        st = ev["update"]["status"]
        answers[st["task_id"]["value"]] = st
    assert answers["long"]["state"] == "TASK_RUNNING"
    assert answers["ghost"]["state"] == "TASK_GONE"
    assert answers["nowhere"]["state"] == "TASK_UNKNOWN"
    for st in answers.values():
        assert st["reason"] == "REASON_RECONCILIATION" and st["source"] == "SOURCE_MASTER"
        assert "uuid" not in st
    aware.call({"type": "RECONCILE", "reconcile": {}})
    implicit = aware.wait_update("long", timeout=5)
    assert implicit["reason"] == "REASON_RECONCILIATION"
    assert implicit["message"] == "Reconciliation: Latest task state"
    # A framework that is not partition-aware hears TASK_LOST for an unknown task.
    plain = connect(lm, schedulers)
    plain.call({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "ghost"}, "agent_id": agent_id}]}})
    lost = plain.wait_update("ghost", timeout=5)
    assert lost["state"] == "TASK_LOST" and lost["reason"] == "REASON_RECONCILIATION"


def test_failover_within_timeout_keeps_tasks_and_beyond_removes_framework(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers, "PARTITION_AWARE", failover_timeout=1.0)
    fid = s.framework_id
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "long", "x", env={"DOCKET_SIM_DURATION": "60"}))
    s.wait_update("long", "TASK_RUNNING")
    s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and get_json(lm.master_url + "/state")[
            "frameworks"][0]["connected"]:
        time.sleep(0.05)
    # Disconnected: its calls are refused with 403.
    code, text = s.call({"type": "REVIVE"})
    assert (code, text) == (403, "Framework is not subscribed")
    again = connect(lm, schedulers, "PARTITION_AWARE", framework_id=fid, failover_timeout=1.0)
    assert again.framework_id == fid
    again.call({"type": "RECONCILE", "reconcile": {}})
    assert again.wait_update("long", timeout=5)["state"] == "TASK_RUNNING"
    # Re-subscribing closes the old stream with an ERROR.
    third = RawScheduler(lm.master_url, capabilities=("PARTITION_AWARE",), framework_id=fid,
                         failover_timeout=1.0)
    schedulers.append(third)
    third.subscribe()
    err = again.wait_for(lambda e: e["type"] == "ERROR", 5, "ERROR")
    assert err["error"]["message"] == "Framework failed over"
    third.close()
    # Removed once the failover timeout (1 s) has passed without a subscription.
    eventually(lambda: get_json(lm.master_url + "/state")["frameworks"] == [],
               "the framework is not removed")
    state = get_json(lm.master_url + "/state")
    gone = state["completed_frameworks"][0]["completed_tasks"]
    assert gone[0]["state"] == "TASK_KILLED"
    late = RawScheduler(lm.master_url, framework_id=fid)
    schedulers.append(late)
    assert late.subscribe()["error"]["message"] == "Framework has been removed"


@pytest.mark.parametrize(("caps", "state", "reason"), [
    (("PARTITION_AWARE",), "TASK_GONE_BY_OPERATOR", "REASON_AGENT_REMOVED_BY_OPERATOR"),
    ((), "TASK_LOST", "REASON_AGENT_REMOVED"),
])
def test_agent_removal(local_mesos: Start, schedulers: list[RawScheduler],
                       caps: tuple[str, ...], state: str, reason: str) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers, *caps)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "doomed", "x", env={"DOCKET_SIM_DURATION": "60"}))
    s.wait_update("doomed", "TASK_RUNNING")
    lm.remove_agent(offer["agent_id"]["value"])
    st = s.wait_update("doomed", timeout=5)
    assert (st["state"], st["reason"], st["source"]) == (state, reason, "SOURCE_MASTER")


@pytest.mark.parametrize(("caps", "state"), [
    (("PARTITION_AWARE",), "TASK_UNREACHABLE"), ((), "TASK_LOST")])
def test_partition_and_heal(local_mesos: Start, schedulers: list[RawScheduler],
                            caps: tuple[str, ...], state: str) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers, *caps)
    offer = s.wait_offers()[0]
    agent_id = offer["agent_id"]
    s.launch(offer, task_info(offer, "cut", "x", env={"DOCKET_SIM_DURATION": "60"}))
    s.wait_update("cut", "TASK_RUNNING")
    lm.partition_agent(agent_id["value"])
    st = s.wait_update("cut", timeout=5)
    assert st["state"] == state and st["reason"] == "REASON_AGENT_REMOVED"
    s.call({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "cut"}, "agent_id": agent_id}]}})
    assert "unreachable_time" in st, "Mesos says when the agent became unreachable"
    assert s.wait_update("cut", timeout=5)["state"] == state
    state_json = get_json(lm.master_url + "/state")["frameworks"][0]
    assert [t["id"] for t in state_json["unreachable_tasks"]] == ["cut"]
    lm.heal_agent(agent_id["value"])
    # Mesos 1.11 takes the task back for every framework, partition-aware or not.
    back = s.wait_update("cut", timeout=5)
    assert (back["state"], back["reason"], back["message"]) == (
        "TASK_RUNNING", "REASON_AGENT_REREGISTERED", "Unreachable agent re-reregistered")
    s.call({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "cut"}, "agent_id": agent_id}]}})
    assert s.wait_update("cut", timeout=5)["state"] == "TASK_RUNNING"


def test_decline_filters_revive_and_suppress(local_mesos: Start,
                                             schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    s.call({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]],
                                           "filters": {"refuse_seconds": 30}}})
    with pytest.raises(AssertionError):
        s.wait_offers(timeout=0.5)  # filtered for 30 s
    s.call({"type": "REVIVE", "revive": {"roles": ["*"]}})
    second = s.wait_offers(timeout=2)[0]
    s.call({"type": "SUPPRESS", "suppress": {}})
    # Declined with no filter: it would come straight back, but the framework is suppressed.
    s.call({"type": "DECLINE", "decline": {"offer_ids": [second["id"]],
                                           "filters": {"refuse_seconds": 0}}})
    with pytest.raises(AssertionError):
        s.wait_offers(timeout=0.5)
    s.call({"type": "REVIVE"})
    assert s.wait_offers(timeout=2)


def test_filters_are_per_role_and_revive_clears_only_its_roles(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers, "MULTI_ROLE", roles=["a", "b"])

    def next_role() -> str:
        offer = s.wait_offers(timeout=3)[0]
        s.call({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]],
                                               "filters": {"refuse_seconds": 60}}})
        return str(offer["allocation_info"]["role"])

    # Declined for one role, the agent is offered to the framework's other role.
    first = next_role()
    second = next_role()
    assert {first, second} == {"a", "b"}
    with pytest.raises(AssertionError):
        s.wait_offers(timeout=0.5)  # both roles filtered
    s.call({"type": "REVIVE", "revive": {"roles": [second]}})
    assert next_role() == second  # only the revived role's filter was cleared
    with pytest.raises(AssertionError):
        s.wait_offers(timeout=0.5)


def test_agents_with_gpus_are_offered_only_to_gpu_frameworks(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, gpus=2)
    plain = connect(lm, schedulers)
    with pytest.raises(AssertionError):
        plain.wait_offers(timeout=1.5)
    gpu = connect(lm, schedulers, "GPU_RESOURCES")
    offer = gpu.wait_offers(timeout=3)[0]
    gpus = [r for r in offer["resources"] if r["name"] == "gpus"]
    assert gpus and gpus[0]["scalar"]["value"] == 2


def test_offer_timeout_and_rescind(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, offer_timeout=0.3)
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    ev = s.wait_for(lambda e: e["type"] == "RESCIND", 3, "RESCIND")
    assert ev["rescind"]["offer_id"] == offer["id"]
    # Using a rescinded offer drops the launch (LOST: not partition-aware).
    s.launch(offer, task_info(offer, "late", "x"))
    st = s.wait_update("late", timeout=5)
    assert (st["state"], st["reason"]) == ("TASK_LOST", "REASON_INVALID_OFFERS")
    assert st["message"].startswith("Task launched with invalid offers: Offer ")


def test_task_validation_errors(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, cpus=1, mem=256)
    s = connect(lm, schedulers, "PARTITION_AWARE")
    offer = s.wait_offers()[0]
    cases = [
        task_info(offer, "ok", "x", env={"DOCKET_SIM_DURATION": "60"}),
        task_info(offer, "ok", "x"),  # duplicate of an active task
        task_info(offer, "a/b", "x"),
        task_info(offer, "..", "x"),
        task_info(offer, "x" * 256, "x"),
        task_info(offer, "huge", "x", cpus=64),
    ]
    no_command = task_info(offer, "nocmd", "x")
    del no_command["command"]
    cases.append(no_command)
    s.launch(offer, *cases)
    expected = {
        "a/b": "Task has an invalid TaskID: 'a/b' contains invalid characters",
        "..": "Task has an invalid TaskID: '..' is disallowed",
        "x" * 256: "Task has an invalid TaskID: ID must not be greater than 255 characters",
        "nocmd": "Task should have at least one (but not both) of CommandInfo or ExecutorInfo "
                 "present",
    }
    errors: dict[str, dict[str, Any]] = {}
    while len(errors) < 6:
        ev = s.wait_for(lambda e: e["type"] == "UPDATE", 5)
        st = ev["update"]["status"]
        s.ack(st)
        if st["state"] == "TASK_ERROR":
            errors.setdefault(st["task_id"]["value"], st)
    for tid, message in expected.items():
        assert errors[tid]["message"] == message
    assert errors["ok"]["message"] == "Task has duplicate ID: ok"
    assert "is more than available" in errors["huge"]["message"]
    for st in errors.values():
        assert st["reason"] == "REASON_TASK_INVALID" and st["source"] == "SOURCE_MASTER"
        assert "uuid" not in st
    # The same offer again: it is no longer valid -> TASK_DROPPED for a partition-aware one.
    s.launch(offer, task_info(offer, "reuse", "x"))
    st = s.wait_update("reuse", timeout=5)
    assert (st["state"], st["reason"]) == ("TASK_DROPPED", "REASON_INVALID_OFFERS")


def test_docker_image_without_engine_fails_like_mesos(local_mesos: Start,
                                                      schedulers: list[RawScheduler]) -> None:
    from controller.localmesos.agents import docker_available

    lm = local_mesos()
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "img", "true", container={
        "type": "DOCKER", "docker": {"image": "busybox"}}))
    st = s.wait_update("img", timeout=10)
    if docker_available():
        assert st["state"] in ("TASK_STARTING", "TASK_RUNNING")
    else:
        assert st["state"] == "TASK_FAILED"
        assert st["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
        assert "no Docker engine" in st["message"] or "none is available" in st["message"]


def test_max_completion_time(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "slow", "sleep 30",
                              max_completion_time={"nanoseconds": 300_000_000}))
    st = s.wait_update("slow", "TASK_FAILED", timeout=10)
    assert st["reason"] == "REASON_MAX_COMPLETION_TIME_REACHED"


def test_state_and_tasks_endpoints(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, agents=2, attributes={"rack": "r1"})
    s = connect(lm, schedulers)
    offers = s.wait_offers()
    for i, offer in enumerate(offers):
        s.launch(offer, task_info(offer, f"t{i}", "x"))
    for i in range(len(offers)):
        s.wait_update(f"t{i}", "TASK_FINISHED")
    state = get_json(lm.master_url + "/master/state")
    assert len(state["slaves"]) == 2 and state["slaves"][0]["attributes"] == {"rack": "r1"}
    assert {"id", "pid", "hostname", "version", "frameworks", "slaves", "leader_info"} <= set(
        state)
    slaves = get_json(lm.master_url + "/master/slaves")
    assert [a["id"] for a in slaves["slaves"]] == [a["id"] for a in state["slaves"]]
    tasks = get_json(lm.master_url + "/tasks")["tasks"]
    assert sorted(t["id"] for t in tasks) == ["t0", "t1"]
    assert {"framework_id", "slave_id", "state", "statuses", "resources"} <= set(tasks[0])
    one = get_json(f"{lm.master_url}/tasks?task_id=t1&framework_id={s.framework_id}")
    assert [t["id"] for t in one["tasks"]] == ["t1"]
    page = get_json(lm.master_url + "/tasks?limit=1&offset=1&order=asc")["tasks"]
    assert len(page) == 1
    with urllib.request.urlopen(lm.master_url + "/health") as resp:
        assert resp.status == 200
