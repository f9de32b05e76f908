"""Fault injection, through the admin HTTP API and the Python API."""

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


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def admin(lm: LocalMesos, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(lm.master_url + path, data=json.dumps(body or {}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def subscribed(lm: LocalMesos, made: list[RawScheduler], **kw: Any) -> RawScheduler:
    s = RawScheduler(lm.master_url, capabilities=("PARTITION_AWARE",), **kw)
    made.append(s)
    assert s.subscribe()["type"] == "SUBSCRIBED"
    return s


def test_admin_adds_partitions_heals_and_removes_agents(local_mesos: Start,
                                                        schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, agents=0)
    agent_id = admin(lm, "/admin/agents", {"cpus": 2, "mem": 512, "simulate": True,
                                           "attributes": {"zone": "a"}})["agent_id"]
    s = subscribed(lm, schedulers)
    offer = s.wait_offers()[0]
    assert offer["agent_id"]["value"] == agent_id
    assert offer["attributes"] == [{"name": "zone", "type": "TEXT", "text": {"value": "a"}}]
    s.launch(offer, task_info(offer, "t", "x", env={"DOCKET_SIM_DURATION": "60"}))
    s.wait_update("t", "TASK_RUNNING")
    admin(lm, f"/admin/agents/{agent_id}/partition")
    assert s.wait_update("t")["state"] == "TASK_UNREACHABLE"
    admin(lm, f"/admin/agents/{agent_id}/heal")
    assert s.wait_update("t")["reason"] == "REASON_AGENT_REREGISTERED"
    admin(lm, f"/admin/agents/{agent_id}/remove")
    st = s.wait_update("t")
    assert st["state"] == "TASK_GONE_BY_OPERATOR"


def test_dropped_update_is_resent(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, status_update_retry_min=0.3)
    s = subscribed(lm, schedulers)
    offer = s.wait_offers()[0]
    admin(lm, "/admin/updates", {"drop": 1})
    s.launch(offer, task_info(offer, "t", "x", env={"DOCKET_SIM_DURATION": "60"}))
    started = time.monotonic()
    first = s.wait_update("t", "TASK_STARTING", timeout=5)
    assert time.monotonic() - started >= 0.25, "the dropped update came back only on retry"
    assert first["source"] == "SOURCE_EXECUTOR"


def test_duplicated_update_shares_its_uuid(local_mesos: Start,
                                           schedulers: list[RawScheduler]) -> None:
    # No resend can happen within the test (the first retry is due after an hour) and the
    # first copy is acknowledged as soon as it arrives: a second copy can only be the
    # injected duplicate. (Unacknowledged, an ordinary resend would look just the same.)
    lm = local_mesos(simulate=True, status_update_retry_min=3600.0)
    s = subscribed(lm, schedulers)
    offer = s.wait_offers()[0]
    admin(lm, "/admin/updates", {"duplicate": True})
    s.launch(offer, task_info(offer, "t", "x", env={"DOCKET_SIM_DURATION": "60"}))
    one = s.wait_update("t", "TASK_STARTING", ack=True)
    two = s.wait_update("t", "TASK_STARTING", ack=False)
    assert one["uuid"] == two["uuid"]
    # The acknowledgement of the first copy was taken: the next update follows, duplicated.
    three = s.wait_update("t", "TASK_RUNNING", ack=True)
    four = s.wait_update("t", "TASK_RUNNING", ack=False)
    assert three["uuid"] == four["uuid"] != one["uuid"]


def test_delayed_updates(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = subscribed(lm, schedulers)
    offer = s.wait_offers()[0]
    lm.fault_updates(delay=0.5)
    started = time.monotonic()
    s.launch(offer, task_info(offer, "t", "x"))
    s.wait_update("t", "TASK_STARTING", timeout=5)
    assert time.monotonic() - started >= 0.45


def test_failed_launch(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = subscribed(lm, schedulers)
    offer = s.wait_offers()[0]
    admin(lm, "/admin/launches/fail", {"count": 1})
    s.launch(offer, task_info(offer, "t", "x"))
    st = s.wait_update("t", timeout=5)
    assert (st["state"], st["reason"]) == ("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED")


def test_rescind_offer(local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = subscribed(lm, schedulers)
    offer = s.wait_offers()[0]
    assert admin(lm, f"/admin/offers/{offer['id']['value']}/rescind") == {"rescinded": True}
    ev = s.wait_for(lambda e: e["type"] == "RESCIND", 5)
    assert ev["rescind"]["offer_id"] == offer["id"]


def test_half_open_stream_goes_silent(local_mesos: Start,
                                      schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, heartbeat_interval=0.1)
    sent: list[tuple[bool, str]] = []  # (silenced, type) of each event the master sends

    def observe(framework_id: str, event: dict[str, Any]) -> None:
        # Called under the master lock, as silencing is, so `silenced` is exact.
        fw = lm.master.frameworks.get(framework_id)
        sent.append((bool(fw and fw.stream and fw.stream.silent), event["type"]))

    lm.master.event_observers.append(observe)
    s = subscribed(lm, schedulers)
    s.wait_for(lambda e: e["type"] == "HEARTBEAT", 2)
    admin(lm, "/admin/streams/silence")
    # The master goes on sending heartbeats into the stream, which stays connected ...
    eventually(lambda: sum(silenced and t == "HEARTBEAT" for silenced, t in sent) >= 3)
    assert not s.closed.is_set(), "the connection stays up"
    # ... yet none of them arrives. Once the master ends the stream, the client has read
    # everything ever written to it (TCP keeps order): exactly what came before the silence.
    admin(lm, "/admin/master/restart", {"forget_frameworks": False})
    assert s.closed.wait(5), "the restart ends the stream"
    assert [e["type"] for e in s.all_events] == [t for silenced, t in sent if not silenced]


@pytest.mark.parametrize("forget", [False, True])
def test_master_restart_drops_streams_and_frameworks_resubscribe(
        local_mesos: Start, schedulers: list[RawScheduler], forget: bool) -> None:
    lm = local_mesos(simulate=True)
    s = subscribed(lm, schedulers, failover_timeout=60)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "t", "x", env={"DOCKET_SIM_DURATION": "60"}))
    s.wait_update("t", "TASK_RUNNING")
    admin(lm, "/admin/master/restart", {"forget_frameworks": forget})
    assert s.closed.wait(5), "the stream was dropped"
    again = subscribed(lm, schedulers, framework_id=s.framework_id, failover_timeout=60)
    assert again.framework_id == s.framework_id
    again.call({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "t"}}]}})
    assert again.wait_update("t", timeout=5)["state"] == "TASK_RUNNING"
