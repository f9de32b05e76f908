"""The embedded Mesos answers the v1 scheduler endpoint's error cases as Mesos 1.11 does, in
the order `Master::Http::scheduler` (src/master/http.cpp) checks them: method, Content-Type,
body, call validation (src/master/validation.cpp), Accept, stream id, framework lookup. Also
the SUBSCRIBE stream (RecordIO, SUBSCRIBED then HEARTBEATs, checked against tests/mesos_v1),
failover closing the old stream, and the shape of /version, /master/state and /master/tasks.
Raw http.client only, so every header and byte is under the test's control."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from tests.localmesos.scheduler import RawScheduler, task_info
from tests.mesos_v1 import validate_scheduler_event

pytestmark = pytest.mark.integration

Start = Callable[..., LocalMesos]
JSON = "application/json"
API = "/api/v1/scheduler"


@pytest.fixture
def master(local_mesos: Start) -> LocalMesos:
    return local_mesos(simulate=True, heartbeat_interval=0.2, sim_default_duration=60.0)


@pytest.fixture
def schedulers() -> Iterator[list[RawScheduler]]:
    made: list[RawScheduler] = []
    yield made
    for s in made:
        s.close()


def post(lm: LocalMesos, body: bytes | str | dict[str, Any], headers: dict[str, str],
         method: str = "POST") -> tuple[int, str, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", lm.http.port, timeout=10)
    try:
        data = json.dumps(body) if isinstance(body, dict) else body
        conn.request(method, API, data, headers)
        resp = conn.getresponse()
        # A 200 to SUBSCRIBE is a stream: the first chunk is enough here.
        text = resp.read1(65536) if resp.status == 200 else resp.read()
        return resp.status, text.decode(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def subscribed(lm: LocalMesos, made: list[RawScheduler], **kw: Any) -> RawScheduler:
    s = RawScheduler(lm.master_url, **kw)
    made.append(s)
    assert s.subscribe()["type"] == "SUBSCRIBED"
    return s


SUBSCRIBE = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}


def test_get_is_405(master: LocalMesos) -> None:
    code, _, headers = post(master, "", {}, method="GET")
    assert code == 405
    assert headers.get("allow") == "POST"


def test_missing_content_type_is_400(master: LocalMesos) -> None:
    code, body, _ = post(master, SUBSCRIBE, {"Accept": JSON})
    assert (code, body) == (400, "Expecting 'Content-Type' to be present")


def test_other_content_type_is_415_naming_what_is_served(master: LocalMesos) -> None:
    code, body, _ = post(master, SUBSCRIBE, {"Content-Type": "text/plain", "Accept": JSON})
    assert code == 415
    # Mesos says "Expecting 'Content-Type' of application/json or application/x-protobuf";
    # localmesos serves only JSON and may say so, but must name application/json.
    assert body.startswith("Expecting 'Content-Type' of application/json"), body


def test_malformed_json_is_400(master: LocalMesos) -> None:
    code, body, _ = post(master, "{not json", {"Content-Type": JSON, "Accept": JSON})
    assert code == 400 and body.startswith("Failed to parse body into JSON"), body


@pytest.mark.parametrize(("call", "message"), [
    ({"subscribe": SUBSCRIBE["subscribe"]}, "Expecting 'type' to be present"),
    ({"type": "SUBSCRIBE"}, "Expecting 'subscribe' to be present"),
    ({"type": "DECLINE"}, "Expecting 'framework_id' to be present"),
    ({"type": "DECLINE", "framework_id": {"value": "f"}}, "Expecting 'decline' to be present"),
    ({"type": "KILL", "framework_id": {"value": "f"}}, "Expecting 'kill' to be present"),
    ({"type": "ACKNOWLEDGE", "framework_id": {"value": "f"}},
     "Expecting 'acknowledge' to be present"),
    ({"type": "RECONCILE", "framework_id": {"value": "f"}},
     "Expecting 'reconcile' to be present"),
    ({**SUBSCRIBE, "framework_id": {"value": "f"}},
     "'framework_id' differs from 'subscribe.framework_info.id'"),
])
def test_invalid_calls_are_400_with_mesos_message(master: LocalMesos, call: dict[str, Any],
                                                  message: str) -> None:
    code, body, _ = post(master, call, {"Content-Type": JSON, "Accept": JSON})
    assert (code, body) == (400, "Failed to validate scheduler::Call: " + message)


def test_subscribe_whose_accept_allows_no_json_is_406(master: LocalMesos) -> None:
    code, body, _ = post(master, SUBSCRIBE, {"Content-Type": JSON, "Accept": "text/html"})
    assert code == 406 and body.startswith("Expecting 'Accept' to allow"), body


def test_subscribe_with_a_stream_id_is_400(master: LocalMesos) -> None:
    code, body, _ = post(master, SUBSCRIBE, {"Content-Type": JSON, "Accept": JSON,
                                              "Mesos-Stream-Id": "x"})
    assert (code, body) == (
        400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")


def test_unknown_framework_is_400(master: LocalMesos) -> None:
    code, body, _ = post(master, {"type": "REVIVE", "framework_id": {"value": "nope"}},
                         {"Content-Type": JSON, "Mesos-Stream-Id": "x"})
    assert (code, body) == (400, "Framework cannot be found")


def test_known_but_disconnected_framework_is_403(master: LocalMesos,
                                                  schedulers: list[RawScheduler]) -> None:
    s = subscribed(master, schedulers, failover_timeout=60.0)
    stream = s.stream_id
    s.close()
    assert s.closed.wait(5)
    deadline = time.monotonic() + 5
    while True:
        code, body, _ = post(master, {"type": "REVIVE",
                                      "framework_id": {"value": s.framework_id}},
                             {"Content-Type": JSON, "Mesos-Stream-Id": stream or ""})
        if code != 202 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (code, body) == (403, "Framework is not subscribed")


def test_missing_or_wrong_stream_id_is_400(master: LocalMesos,
                                           schedulers: list[RawScheduler]) -> None:
    s = subscribed(master, schedulers)
    call = {"type": "REVIVE", "framework_id": {"value": s.framework_id}}
    code, body, _ = post(master, call, {"Content-Type": JSON})
    assert (code, body) == (
        400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
    code, body, _ = post(master, call, {"Content-Type": JSON, "Mesos-Stream-Id": "other"})
    assert code == 400
    assert body == ("The stream ID 'other' included in this request didn't match the stream "
                    f"ID currently associated with framework ID {s.framework_id}")


def test_acknowledge_with_a_malformed_uuid_is_400(master: LocalMesos,
                                                  schedulers: list[RawScheduler]) -> None:
    s = subscribed(master, schedulers)
    code, body = s.call({"type": "ACKNOWLEDGE", "acknowledge": {
        "agent_id": {"value": "a"}, "task_id": {"value": "t"}, "uuid": "3q2+7w=="}})
    assert code == 400 and body.startswith("Failed to validate scheduler::Call: "), body


def test_unknown_call_type_is_501(master: LocalMesos, schedulers: list[RawScheduler]) -> None:
    s = subscribed(master, schedulers)
    code, _ = s.call({"type": "UNKNOWN"})
    assert code == 501


def test_good_calls_are_202(master: LocalMesos, schedulers: list[RawScheduler]) -> None:
    s = subscribed(master, schedulers)
    for call in ({"type": "REVIVE"}, {"type": "SUPPRESS"}, {"type": "REVIVE"},
                 {"type": "RECONCILE", "reconcile": {"tasks": []}},
                 {"type": "DECLINE", "decline": {"offer_ids": [{"value": "gone"}]}},
                 {"type": "KILL", "kill": {"task_id": {"value": "none"}}}):
        code, body = s.call(call)
        assert (code, body) == (202, ""), call


def test_subscribe_streams_recordio_subscribed_then_heartbeats(master: LocalMesos) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", master.http.port, timeout=10)
    try:
        conn.request("POST", API, json.dumps(SUBSCRIBE),
                     {"Content-Type": JSON, "Accept": JSON})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == JSON
        assert resp.getheader("Transfer-Encoding") == "chunked"
        stream_id = resp.getheader("Mesos-Stream-Id") or ""
        assert len(stream_id) == 36 and stream_id.count("-") == 4, stream_id
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 5
        while sum(e["type"] == "HEARTBEAT" for e in events) < 2:
            assert time.monotonic() < deadline, [e["type"] for e in events]
            size = resp.readline()
            assert size.strip().isdigit(), size  # RecordIO: "<length>\n<record>"
            record = resp.read(int(size))
            assert len(record) == int(size)
            events.append(json.loads(record))
            validate_scheduler_event(events[-1])
        assert events[0]["type"] == "SUBSCRIBED"  # always first; OFFERS may come in between
        assert events[0]["subscribed"]["heartbeat_interval_seconds"] == 0.2
    finally:
        conn.close()


def test_resubscribe_closes_the_old_stream_with_failed_over(
        master: LocalMesos, schedulers: list[RawScheduler]) -> None:
    old = subscribed(master, schedulers, failover_timeout=60.0)
    new = RawScheduler(master.master_url, framework_id=old.framework_id, failover_timeout=60.0)
    schedulers.append(new)
    assert new.subscribe()["type"] == "SUBSCRIBED"
    error = old.wait_for(lambda e: e["type"] == "ERROR", 5, "ERROR on the old stream")
    assert error["error"]["message"] == "Framework failed over"
    assert old.closed.wait(5), "the old stream stays open"
    assert new.stream_id != old.stream_id


def get(lm: LocalMesos, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", lm.http.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200, (path, resp.status)
        return json.loads(resp.read())
    finally:
        conn.close()


def test_version_shape(master: LocalMesos) -> None:
    version = get(master, "/version")
    assert version["version"] == "1.11.0"
    assert {"build_date", "build_time", "build_user"} <= set(version)


def test_state_and_tasks_shape(master: LocalMesos, schedulers: list[RawScheduler]) -> None:
    s = subscribed(master, schedulers)
    offer = s.wait_offers()[0]
    code, _ = s.launch(offer, task_info(offer, "t1", "sleep 60"))
    assert code == 202
    s.wait_update("t1", "TASK_RUNNING")

    state = get(master, "/master/state")
    assert {"version", "id", "pid", "hostname", "start_time", "activated_slaves",
            "deactivated_slaves", "unreachable_slaves", "leader", "leader_info", "flags",
            "slaves", "frameworks", "completed_frameworks", "unregistered_frameworks",
            "capabilities"} <= set(state), sorted(state)
    slave = state["slaves"][0]
    assert {"id", "pid", "hostname", "port", "registered_time", "resources", "used_resources",
            "offered_resources", "unreserved_resources", "attributes", "active",
            "version", "reserved_resources", "deactivated", "capabilities"} <= set(slave), \
        sorted(slave)
    fw = state["frameworks"][0]
    assert {"id", "name", "user", "failover_timeout", "checkpoint", "registered_time",
            "unregistered_time", "active", "connected", "recovered", "capabilities",
            "hostname", "role", "roles", "tasks", "unreachable_tasks", "completed_tasks",
            "offers", "executors", "used_resources", "offered_resources", "webui_url",
            "resources"} <= set(fw), sorted(fw)
    assert fw["used_resources"]["cpus"] == 0.1
    assert fw["id"] == s.framework_id and fw["active"] and fw["connected"]
    assert [t["id"] for t in fw["tasks"]] == ["t1"]

    tasks = get(master, "/master/tasks")["tasks"]
    assert [t["id"] for t in tasks] == ["t1"]
    task = tasks[0]
    assert {"id", "name", "framework_id", "executor_id", "slave_id", "state", "resources",
            "role", "statuses"} <= set(task), sorted(task)
    assert task["framework_id"] == s.framework_id and task["state"] == "TASK_RUNNING"
    assert task["slave_id"] == offer["agent_id"]["value"]
    assert {"state", "timestamp"} <= set(task["statuses"][-1])


@pytest.mark.parametrize(("body", "where"), [
    ({"type": "SUBSCRIBE", "subscribe": {"framework_info": 7}}, "subscribe.framework_info"),
    ({"type": "KILL", "framework_id": {"value": "f"}, "kill": 5}, "kill"),
    ({"type": "ACCEPT", "framework_id": "f", "accept": {}}, "framework_id"),
    ({"type": "REVIVE", "framework_id": {"value": "f"}, "revive": {"roles": "a"}},
     "revive.roles"),
])
def test_json_that_is_not_a_call_is_400(master: LocalMesos, body: dict[str, Any],
                                        where: str) -> None:
    status, text, _ = post(master, body, {"Content-Type": JSON, "Accept": JSON})
    assert status == 400
    assert text.startswith("Failed to convert JSON into Call protobuf: ")
    assert where in text
