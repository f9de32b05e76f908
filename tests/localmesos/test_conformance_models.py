"""The Mesos v1 message models (tests/mesos_v1) themselves: hand-written messages shaped as a
Mesos 1.11 master sends them pass; each missing required field, unknown field, wrong type,
bad enum name, null, bad base64 and typed event without its body is refused, naming the path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.mesos_v1 import validate_scheduler_call, validate_scheduler_event

FID = {"value": "5b1c-0000"}
AID = {"value": "5b1c-S0"}

SUBSCRIBED: dict[str, Any] = {
    "type": "SUBSCRIBED",
    "subscribed": {
        "framework_id": FID,
        "heartbeat_interval_seconds": 15.0,
        "master_info": {
            "id": "5b1c", "ip": 16777343, "port": 5050, "pid": "master@127.0.0.1:5050",
            "hostname": "m1", "version": "1.11.0",
            "address": {"hostname": "m1", "ip": "127.0.0.1", "port": 5050},
            "domain": {"fault_domain": {"region": {"name": "r"}, "zone": {"name": "z"}}},
            # QUOTA_V2 of the master's v0 MasterInfo has no v1 name: `evolve()` leaves `{}`.
            "capabilities": [{"type": "AGENT_UPDATE"}, {"type": "AGENT_DRAINING"}, {}],
        },
    },
}

OFFERS: dict[str, Any] = {
    "type": "OFFERS",
    "offers": {"offers": [{
        "id": {"value": "5b1c-O1"}, "framework_id": FID, "agent_id": AID, "hostname": "a1",
        "url": {"scheme": "http", "address": {"hostname": "a1", "ip": "10.0.0.1", "port": 5051},
                "path": "/slave(1)"},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4}, "role": "*",
             "allocation_info": {"role": "docket"}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 1024.5}, "role": "docket",
             "allocation_info": {"role": "docket"},
             "reservations": [{"type": "STATIC", "role": "docket"}]},
            {"name": "ports", "type": "RANGES",
             "ranges": {"range": [{"begin": 31000, "end": 32000}]}, "role": "*"},
            {"name": "disks", "type": "SET", "set": {"item": ["a", "b"]}},
        ],
        "attributes": [
            {"name": "rack", "type": "TEXT", "text": {"value": "r1"}},
            {"name": "level", "type": "SCALAR", "scalar": {"value": 2}},
        ],
        "executor_ids": [{"value": "e1"}],
        "allocation_info": {"role": "docket"},
    }]},
}

UPDATE: dict[str, Any] = {
    "type": "UPDATE",
    "update": {"status": {
        "task_id": {"value": "job-0-1"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR",
        "reason": "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED", "message": "ok",
        "agent_id": AID, "executor_id": {"value": "job-0-1"}, "timestamp": 1700000000.25,
        "uuid": "3q2+7w==", "healthy": True, "data": "",
        "labels": {"labels": [{"key": "k", "value": "v"}, {"key": "only"}]},
        "container_status": {
            "container_id": {"value": "c2", "parent": {"value": "c1"}},
            "network_infos": [{"ip_addresses": [{"protocol": "IPv4", "ip_address": "10.0.0.9"}]}],
            "executor_pid": 4242,
        },
        "check_status": {"type": "COMMAND", "command": {"exit_code": 0}},
    }},
}

OTHER_EVENTS: list[dict[str, Any]] = [
    {"type": "HEARTBEAT"},
    {"type": "RESCIND", "rescind": {"offer_id": {"value": "o1"}}},
    {"type": "ERROR", "error": {"message": "Framework failed over"}},
    {"type": "FAILURE", "failure": {"agent_id": AID}},
    {"type": "MESSAGE", "message": {"agent_id": AID, "executor_id": {"value": "e"},
                                    "data": "aGk="}},
    {"type": "UPDATE", "update": {"status": {
        "task_id": {"value": "t"}, "state": "TASK_UNREACHABLE", "source": "SOURCE_MASTER",
        "reason": "REASON_AGENT_REMOVED", "unreachable_time": {"nanoseconds": 1}}}},
    {"type": "UPDATE_OPERATION_STATUS", "update_operation_status": {"status": {
        "operation_id": {"value": "op"}, "state": "OPERATION_FINISHED",
        "uuid": {"value": "AAE="}}}},
    {"type": "INVERSE_OFFERS", "inverse_offers": {"inverse_offers": [{
        "id": {"value": "io"}, "framework_id": FID,
        "unavailability": {"start": {"nanoseconds": 5},
                           "duration": {"nanoseconds": 10}}}]}},
]


@pytest.mark.parametrize("event", [SUBSCRIBED, OFFERS, UPDATE, *OTHER_EVENTS],
                         ids=lambda e: str(e["type"]))
def test_valid_events_pass(event: dict[str, Any]) -> None:
    validate_scheduler_event(event)


def _without(message: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    out = copy.deepcopy(message)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def _with(message: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(message)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _refused(event: dict[str, Any], *fragments: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_scheduler_event(event)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


OFFER = ("offers", "offers", 0)
MISSING_REQUIRED = [
    (SUBSCRIBED, ("type",), "event.type"),
    (SUBSCRIBED, ("subscribed", "framework_id"), "event.subscribed.framework_id"),
    (SUBSCRIBED, ("subscribed", "framework_id", "value"), "event.subscribed.framework_id.value"),
    (SUBSCRIBED, ("subscribed", "master_info", "id"), "master_info.id"),
    (SUBSCRIBED, ("subscribed", "master_info", "ip"), "master_info.ip"),
    (SUBSCRIBED, ("subscribed", "master_info", "port"), "master_info.port"),
    (SUBSCRIBED, ("subscribed", "master_info", "address", "port"), "master_info.address.port"),
    (SUBSCRIBED, ("subscribed", "master_info", "domain", "fault_domain", "zone"),
     "fault_domain.zone"),
    *[(OFFERS, (*OFFER, field), f"event.offers.offers[0].{field}")
      for field in ("id", "framework_id", "agent_id", "hostname")],
    (OFFERS, (*OFFER, "url", "scheme"), "offers[0].url.scheme"),
    (OFFERS, (*OFFER, "resources", 0, "name"), "offers[0].resources[0].name"),
    (OFFERS, (*OFFER, "resources", 0, "type"), "offers[0].resources[0].type"),
    (OFFERS, (*OFFER, "resources", 0, "scalar", "value"), "resources[0].scalar.value"),
    (OFFERS, (*OFFER, "resources", 2, "ranges", "range", 0, "end"), "range[0].end"),
    (OFFERS, (*OFFER, "attributes", 0, "name"), "attributes[0].name"),
    (OFFERS, (*OFFER, "attributes", 0, "text", "value"), "attributes[0].text.value"),
    *[(UPDATE, ("update", "status", field), f"event.update.status.{field}")
      for field in ("task_id", "state")],
    (UPDATE, ("update", "status", "labels", "labels", 0, "key"), "labels[0].key"),
    (UPDATE, ("update", "status", "container_status", "container_id", "parent", "value"),
     "container_id.parent.value"),
    (OTHER_EVENTS[1], ("rescind", "offer_id"), "event.rescind.offer_id"),
    (OTHER_EVENTS[2], ("error", "message"), "event.error.message"),
    (OTHER_EVENTS[4], ("message", "data"), "event.message.data"),
    (OTHER_EVENTS[5], ("update", "status", "unreachable_time", "nanoseconds"),
     "unreachable_time.nanoseconds"),
    (OTHER_EVENTS[7], ("inverse_offers", "inverse_offers", 0, "unavailability"),
     "inverse_offers[0].unavailability"),
]


@pytest.mark.parametrize(("event", "path", "named"), MISSING_REQUIRED,
                         ids=[m[2] for m in MISSING_REQUIRED])
def test_each_missing_required_field_is_named(event: dict[str, Any],
                                              path: tuple[str | int, ...], named: str) -> None:
    _refused(_without(event, path), named, "required")


@pytest.mark.parametrize("event_type", ["SUBSCRIBED", "OFFERS", "RESCIND", "UPDATE", "ERROR",
                                        "MESSAGE", "FAILURE", "UPDATE_OPERATION_STATUS",
                                        "INVERSE_OFFERS", "RESCIND_INVERSE_OFFER"])
def test_a_typed_event_needs_its_sub_message(event_type: str) -> None:
    _refused({"type": event_type}, f"needs the field '{event_type.lower()}'")


@pytest.mark.parametrize(("path", "named"), [
    ((), "event.extra"),
    (("subscribed",), "event.subscribed.extra"),
    (("subscribed", "master_info"), "master_info.extra"),
    (("subscribed", "master_info", "address"), "master_info.address.extra"),
])
def test_unknown_fields_are_refused(path: tuple[str, ...], named: str) -> None:
    _refused(_with(SUBSCRIBED, (*path, "extra"), 1), named, "Extra inputs")


def test_unknown_field_deep_in_an_offer_is_refused() -> None:
    _refused(_with(OFFERS, (*OFFER, "resources", 0, "frameworkId"), "x"),
             "resources[0].frameworkId", "Extra inputs")


@pytest.mark.parametrize(("event", "path", "bad"), [
    (SUBSCRIBED, ("type",), "SUBSCRIBE"),
    (SUBSCRIBED, ("subscribed", "master_info", "capabilities", 0, "type"), "QUOTA"),
    # In 1.11.0's v0 MasterInfo only, not in v1's: a strict v1 client refuses it.
    (SUBSCRIBED, ("subscribed", "master_info", "capabilities", 0, "type"), "QUOTA_V2"),
    (OFFERS, (*OFFER, "resources", 0, "type"), "scalar"),
    (OFFERS, (*OFFER, "resources", 1, "reservations", 0, "type"), "STATIC_RESERVATION"),
    (UPDATE, ("update", "status", "state"), "RUNNING"),
    (UPDATE, ("update", "status", "source"), "SOURCE_SCHEDULER"),
    # The v0 name: a v1 master says REASON_AGENT_REMOVED.
    (UPDATE, ("update", "status", "reason"), "REASON_SLAVE_REMOVED"),
    (UPDATE, ("update", "status", "state"), 1),
    (UPDATE, ("update", "status", "container_status", "network_infos", 0, "ip_addresses", 0,
              "protocol"), "IPV4"),
])
def test_bad_enum_names_are_refused(event: dict[str, Any], path: tuple[str | int, ...],
                                    bad: Any) -> None:
    _refused(_with(event, path, bad), _dotted(path), "Input should be")


def _dotted(path: tuple[str | int, ...]) -> str:
    return "event" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@pytest.mark.parametrize(("event", "path", "bad", "named"), [
    (SUBSCRIBED, ("subscribed", "heartbeat_interval_seconds"), "15", "heartbeat_interval"),
    (SUBSCRIBED, ("subscribed", "master_info", "port"), "5050", "master_info.port"),
    (SUBSCRIBED, ("subscribed", "master_info", "ip"), "127.0.0.1", "master_info.ip"),
    (OFFERS, (*OFFER, "resources", 0, "scalar", "value"), "4", "scalar.value"),
    (OFFERS, (*OFFER, "resources", 2, "ranges", "range", 0, "begin"), -1, "range[0].begin"),
    (OFFERS, (*OFFER, "resources", 3, "set", "item"), "a", "set.item"),
    (UPDATE, ("update", "status", "healthy"), "true", "status.healthy"),
    (UPDATE, ("update", "status", "timestamp"), True, "status.timestamp"),
    (UPDATE, ("update", "status", "uuid"), "not base64!", "status.uuid"),
    (UPDATE, ("update", "status", "message"), None, "null"),
    (OFFERS, (*OFFER, "hostname"), None, "null"),
])
def test_wrong_json_types_are_refused(event: dict[str, Any], path: tuple[str | int, ...],
                                      bad: Any, named: str) -> None:
    _refused(_with(event, path, bad), named)


def test_a_resource_needs_the_value_its_type_names() -> None:
    _refused(_without(OFFERS, (*OFFER, "resources", 0, "scalar")), "needs the field 'scalar'")
    _refused(_with(OFFERS, (*OFFER, "resources", 0, "type"), "TEXT"), "not allowed")


def test_non_objects_are_refused() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        validate_scheduler_event([SUBSCRIBED])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- calls

FRAMEWORK_INFO: dict[str, Any] = {
    "user": "docket", "name": "docket", "id": FID, "failover_timeout": 604800,
    "checkpoint": True, "roles": ["docket"], "principal": "docket",
    "capabilities": [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"},
                     {"type": "TASK_KILLING_STATE"}, {"type": "REGION_AWARE"}],
    "labels": {"labels": [{"key": "team", "value": "infra"}]},
}

TASK: dict[str, Any] = {
    "name": "job-0", "task_id": {"value": "job-0-1"}, "agent_id": AID,
    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5},
                   "allocation_info": {"role": "docket"}}],
    "command": {"value": "echo hi", "shell": True,
                "environment": {"variables": [{"name": "A", "type": "VALUE", "value": "1"}]},
                "uris": [{"value": "http://x/y.tgz", "extract": True}]},
    "container": {"type": "MESOS", "mesos": {"image": {"type": "DOCKER",
                                                       "docker": {"name": "alpine"}}},
                  "volumes": [{"mode": "RW", "container_path": "/data",
                               "source": {"type": "SANDBOX_PATH",
                                          "sandbox_path": {"type": "SELF", "path": "d"}}}]},
    "kill_policy": {"grace_period": {"nanoseconds": 3000000000}},
    "labels": {"labels": [{"key": "docket/job", "value": "j"}]},
    "max_completion_time": {"nanoseconds": 60000000000},
    "limits": {"cpus": {"value": 1}},
}

VALID_CALLS: list[dict[str, Any]] = [
    {"framework_id": FID, "type": "SUBSCRIBE", "subscribe": {"framework_info": FRAMEWORK_INFO,
                                        "suppressed_roles": []}},
    {"framework_id": FID, "type": "ACCEPT", "accept": {
        "offer_ids": [{"value": "o1"}],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [TASK]}},
                       {"type": "LAUNCH_GROUP", "launch_group": {
                           "executor": {"type": "DEFAULT", "executor_id": {"value": "e"},
                                        "framework_id": FID},
                           "task_group": {"tasks": [TASK]}}},
                       {"type": "RESERVE", "reserve": {"resources": TASK["resources"]}}],
        "filters": {"refuse_seconds": 5}}},
    {"framework_id": FID, "type": "DECLINE", "decline": {"offer_ids": [{"value": "o1"}]}},
    {"framework_id": FID, "type": "REVIVE"},
    {"framework_id": FID, "type": "SUPPRESS", "suppress": {"roles": ["docket"]}},
    {"framework_id": FID, "type": "KILL", "kill": {"task_id": {"value": "t"}, "agent_id": AID}},
    {"framework_id": FID, "type": "ACKNOWLEDGE", "acknowledge": {
        "agent_id": AID, "task_id": {"value": "t"}, "uuid": "ASNFZ4mrze8BI0VniavN7w=="}},
    {"framework_id": FID, "type": "RECONCILE", "reconcile": {"tasks": []}},
    {"framework_id": FID, "type": "TEARDOWN"},
]


@pytest.mark.parametrize("call", VALID_CALLS, ids=lambda c: str(c["type"]))
def test_valid_calls_pass(call: dict[str, Any]) -> None:
    validate_scheduler_call(call)


@pytest.mark.parametrize(("call", "mutate", "named"), [
    (VALID_CALLS[0], lambda c: c["subscribe"]["framework_info"].pop("user"), "framework_info.user"),
    (VALID_CALLS[0], lambda c: c["subscribe"]["framework_info"].pop("name"), "framework_info.name"),
    (VALID_CALLS[0], lambda c: c["subscribe"]["framework_info"]["capabilities"].append(
        {"type": "GPU"}), "capabilities[4].type"),
    (VALID_CALLS[0], lambda c: c.pop("subscribe"), "needs the field 'subscribe'"),
    (VALID_CALLS[1], lambda c: c.pop("framework_id"), "needs 'framework_id'"),
    (VALID_CALLS[1], lambda c: c["accept"]["operations"][0].pop("launch"),
     "needs the field 'launch'"),
    (VALID_CALLS[1], lambda c: c["accept"]["operations"][0]["launch"]["task_infos"][0].pop(
        "agent_id"), "task_infos[0].agent_id"),
    (VALID_CALLS[1], lambda c: c["accept"]["operations"][0]["launch"]["task_infos"][0][
        "container"].pop("type"), "container.type"),
    (VALID_CALLS[1], lambda c: c["accept"]["operations"][0]["launch"]["task_infos"][0][
        "command"].update(shell="yes"), "command.shell"),
    (VALID_CALLS[1], lambda c: c["accept"]["operations"][1]["launch_group"].pop("executor"),
     "launch_group.executor"),
    (VALID_CALLS[1], lambda c: c["accept"]["operations"][0].update(type="START"),
     "operations[0].type"),
    (VALID_CALLS[5], lambda c: c["kill"].pop("task_id"), "kill.task_id"),
    (VALID_CALLS[6], lambda c: c["acknowledge"].pop("uuid"), "acknowledge.uuid"),
    (VALID_CALLS[6], lambda c: c["acknowledge"].update(uuid="***"), "acknowledge.uuid"),
    (VALID_CALLS[6], lambda c: c["acknowledge"].update(uuid="3q2+7w=="), "16 bytes"),
    (VALID_CALLS[7], lambda c: c.pop("reconcile"), "needs the field 'reconcile'"),
    (VALID_CALLS[0], lambda c: c.update(framework_id={"value": "other"}), "differs"),
    (VALID_CALLS[0], lambda c: c["subscribe"]["framework_info"].pop("id"), "differs"),
    (VALID_CALLS[3], lambda c: c.update(type="REVIVE_ALL"), "call.type"),
    (VALID_CALLS[3], lambda c: c.update(revive={"roles": ["a"], "role": "b"}), "revive.role"),
])
def test_bad_calls_are_refused(call: dict[str, Any], mutate: Any, named: str) -> None:
    bad = copy.deepcopy(call)
    mutate(bad)
    with pytest.raises(ValueError) as info:
        validate_scheduler_call(bad)
    assert named in str(info.value), str(info.value)
