"""Details where localmesos must say exactly what a Mesos 1.11 master says: SUBSCRIBED's
MasterInfo as the v1 API carries it, the fields of status updates (executor vs master), offer
resource formats per framework capability, the master's Task JSON and /state, and the order
and texts of task validation."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from tests.localmesos.scheduler import RawScheduler, task_info
from tests.mesos_v1 import validate_scheduler_event

Start = Callable[..., LocalMesos]

pytestmark = pytest.mark.integration


@pytest.fixture
def schedulers() -> Iterator[list[RawScheduler]]:
    made: list[RawScheduler] = []
    yield made
    for s in made:
        s.close()


def connect(lm: LocalMesos, made: list[RawScheduler], *caps: str, **kw: Any) -> RawScheduler:
    s = RawScheduler(lm.master_url, capabilities=caps, **kw)
    made.append(s)
    assert s.subscribe()["type"] == "SUBSCRIBED"
    return s


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_subscribed_master_info_is_what_a_1_11_master_sends(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = RawScheduler(lm.master_url)
    schedulers.append(s)
    event = s.subscribe()
    validate_scheduler_event(event)  # as a client with 1.11.0's v1 protos parses it
    info = event["subscribed"]["master_info"]
    # The master's third capability, QUOTA_V2, is in 1.11.0's v0 proto only; `evolve()`
    # (v0 bytes parsed as v1) keeps it as an unknown field, and the JSON has no `type`.
    assert info["capabilities"] == [{"type": "AGENT_UPDATE"}, {"type": "AGENT_DRAINING"}, {}]
    assert (info["pid"], info["port"], info["version"]) == (
        f"master@{lm.address}", int(lm.address.rsplit(":", 1)[1]), "1.11.0")
    # /state is written from the v0 MasterInfo: all three by name; its leader_info holds
    # what common/http.cpp's json(MasterInfo) writes.
    state = get_json(lm.master_url + "/state")
    assert state["capabilities"] == ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"]
    assert state["leader_info"] == {"id": info["id"], "pid": info["pid"],
                                    "port": info["port"], "hostname": info["hostname"]}


def test_every_event_sent_is_seen_by_the_observers_errors_too(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    """The test fixture validates what `event_observers` see: that must be all there is."""
    lm = local_mesos(simulate=True)
    seen: list[dict[str, Any]] = []
    lm.master.event_observers.append(lambda _fid, event: seen.append(event))
    refused = RawScheduler(lm.master_url)
    schedulers.append(refused)
    refused.info["roles"] = ["a"]  # not MULTI_ROLE capable
    assert refused.subscribe()["type"] == "ERROR"
    first = connect(lm, schedulers, failover_timeout=60)
    second = RawScheduler(lm.master_url, framework_id=first.framework_id, failover_timeout=60)
    schedulers.append(second)
    assert second.subscribe()["type"] == "SUBSCRIBED"
    first.wait_for(lambda e: e == {"type": "ERROR",
                                   "error": {"message": "Framework failed over"}}, 5)
    received = refused.all_events + first.all_events + second.all_events
    assert [e["type"] for e in refused.all_events] == ["ERROR"]
    unseen = [e for e in received if e not in seen]
    assert unseen == []


def test_executor_updates_carry_container_status_master_updates_no_executor_id(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers, "PARTITION_AWARE")
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "sleeper", "sleep 30"))
    starting = s.wait_update("sleeper", "TASK_STARTING")
    running = s.wait_update("sleeper", "TASK_RUNNING")
    for st in (starting, running):
        # The agent merges its containerizer's status into every executor update.
        cs = st["container_status"]
        # IPAddress.protocol is unset but has a declared default, which Mesos' JSON writer
        # (stout's protobuf.hpp) writes.
        assert cs["container_id"]["value"] and cs["network_infos"] == [
            {"ip_addresses": [{"protocol": "IPv4", "ip_address": "127.0.0.1"}]}]
        assert st["executor_id"] == {"value": "sleeper"} and "uuid" in st
    assert starting["container_status"]["container_id"] == \
        running["container_status"]["container_id"]
    assert isinstance(running["container_status"]["executor_pid"], int)
    s.call({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "sleeper"}}]}})
    rec = s.wait_update("sleeper", timeout=5)
    # The master's Task of a command task has no executor_id; it copies the latest
    # container_status into its own updates.
    assert "executor_id" not in rec and "uuid" not in rec
    assert rec["container_status"] == running["container_status"]
    assert rec["agent_id"] == offer["agent_id"]


@pytest.mark.parametrize(("caps", "role_field", "allocation"), [
    ((), True, False),
    (("MULTI_ROLE",), True, True),
    (("MULTI_ROLE", "RESERVATION_REFINEMENT"), False, True),
])
def test_offer_resource_format_follows_capabilities(
        local_mesos: Start, schedulers: list[RawScheduler], caps: tuple[str, ...],
        role_field: bool, allocation: bool) -> None:
    lm = local_mesos(simulate=True)
    kw: dict[str, Any] = {"roles": ["*"]} if "MULTI_ROLE" in caps else {}
    s = connect(lm, schedulers, *caps, **kw)
    offer = s.wait_offers()[0]
    assert offer["url"]["path"] == "/slave(1)" and offer["url"]["scheme"] == "http"
    assert ("allocation_info" in offer) == allocation
    for r in offer["resources"]:
        assert ("role" in r) == role_field, r
        assert ("allocation_info" in r) == allocation, r
        assert "reservations" not in r


def test_validation_order_and_texts(local_mesos: Start,
                                    schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, cpus=1, mem=256)
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    wrong_agent = task_info(offer, "elsewhere", "x")
    wrong_agent["agent_id"] = {"value": "nope"}
    no_resources = task_info(offer, "empty", "x")
    no_resources["resources"] = []
    no_resources_no_command = task_info(offer, "bare", "x")
    no_resources_no_command["resources"] = []
    del no_resources_no_command["command"]
    s.launch(offer, wrong_agent, no_resources, no_resources_no_command,
             task_info(offer, "huge", "x", cpus=2))
    errors: dict[str, str] = {}
    while len(errors) < 4:
        st = s.wait_for(lambda e: e["type"] == "UPDATE", 5)["update"]["status"]
        assert st["state"] == "TASK_ERROR" and st["reason"] == "REASON_TASK_INVALID"
        assert "executor_id" not in st
        errors[st["task_id"]["value"]] = st["message"]
    agent = offer["agent_id"]["value"]
    assert errors["elsewhere"] == f"Task uses invalid agent nope while agent {agent} is expected"
    assert errors["empty"] == "Task uses no resources"
    assert errors["bare"] == "Task uses no resources", "resources are checked before command"
    assert errors["huge"].startswith("Total resources cpus(allocated: *):2; mem(allocated: *):32"
                                     " required by task and its executor is more than "
                                     "available cpus(allocated: *):1; mem(allocated: *):256")


def test_tasks_json_is_the_masters_task_model(local_mesos: Start,
                                              schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    info = task_info(offer, "t", "x", env={"DOCKET_SIM_DURATION": "60"},
                     labels={"labels": [{"key": "k", "value": "v"}]},
                     container={"type": "MESOS"})
    info["command"]["user"] = "nobody"
    s.launch(offer, info)
    s.wait_update("t", "TASK_RUNNING")
    task = get_json(lm.master_url + "/tasks")["tasks"][0]
    assert task["slave_id"] == offer["agent_id"]["value"] and task["executor_id"] == ""
    assert task["user"] == "nobody" and task["labels"] == [{"key": "k", "value": "v"}]
    assert task["container"] == {"type": "MESOS"}
    assert set(task["resources"]) >= {"cpus", "mem", "disk", "gpus"}
    # The master records no status at launch (Mesos' createTask adds none): the agent's first.
    assert [st["state"] for st in task["statuses"]] == ["TASK_STARTING", "TASK_RUNNING"]
    assert all(isinstance(st["timestamp"], float) for st in task["statuses"])
    assert "container_status" in task["statuses"][-1]


def test_kill_of_an_unknown_task_answers_by_reconciliation(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers, "PARTITION_AWARE")
    offer = s.wait_offers()[0]
    code, _ = s.call({"type": "KILL", "kill": {"task_id": {"value": "ghost"},
                                               "agent_id": offer["agent_id"]}})
    assert code == 202
    st = s.wait_update("ghost", timeout=5)
    assert (st["state"], st["reason"], st["message"]) == (
        "TASK_GONE", "REASON_RECONCILIATION", "Reconciliation: Task is unknown to the agent")


def test_removed_agent_message(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers, "PARTITION_AWARE")
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "doomed", "x", env={"DOCKET_SIM_DURATION": "60"}))
    s.wait_update("doomed", "TASK_RUNNING")
    lm.remove_agent(offer["agent_id"]["value"])
    st = s.wait_update("doomed", timeout=5)
    assert st["message"] == "Agent has been marked gone" and "executor_id" not in st


@pytest.mark.parametrize(("caps", "extra", "message"), [
    ((), {"suppressed_roles": ["web"]},
     "Suppressed roles { web } are not contained in the set of roles"),
    (("MULTI_ROLE",), {"role": "a"},
     "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"),
    ((), {"roles": ["a"]},
     "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable"),
    ((), {"role": "-x"}, "'FrameworkInfo.role' is not a valid role: Role component '-x' is "
                         "invalid because it starts with a dash"),
])
def test_subscribe_refused_like_mesos(local_mesos: Start, schedulers: list[RawScheduler],
                                      caps: tuple[str, ...], extra: dict[str, Any],
                                      message: str) -> None:
    lm = local_mesos(simulate=True)
    s = RawScheduler(lm.master_url, capabilities=caps)
    schedulers.append(s)
    s.suppressed_roles = extra.pop("suppressed_roles", [])
    s.info.update(extra)
    assert s.subscribe() == {"type": "ERROR", "error": {"message": message}}


def test_subscribe_with_suppressed_roles_gets_no_offers_until_revive(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = RawScheduler(lm.master_url)
    schedulers.append(s)
    s.suppressed_roles = ["*"]
    assert s.subscribe()["type"] == "SUBSCRIBED"
    with pytest.raises(AssertionError):
        s.wait_offers(timeout=0.5)
    s.call({"type": "REVIVE", "revive": {"roles": ["*"]}})
    assert s.wait_offers(timeout=3)


def test_suppress_with_a_role_not_subscribed_is_dropped(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers)
    first = s.wait_offers()[0]
    # "web" is not the framework's role: the whole call is dropped, "*" stays unsuppressed.
    assert s.call({"type": "SUPPRESS", "suppress": {"roles": ["*", "web"]}})[0] == 202
    s.call({"type": "DECLINE", "decline": {"offer_ids": [first["id"]],
                                           "filters": {"refuse_seconds": 0}}})
    assert s.wait_offers(timeout=3)
