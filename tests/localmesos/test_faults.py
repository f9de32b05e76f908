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

Start = Callable[..., LocalMesos]


@pytest.fixture
def schedulers() -> Iterator[list[RawScheduler]]:
    made: list[RawScheduler] = []
    yield made
    for s in made:
        s.close()


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


def test_dropped_update_is_resent_and_duplicates_share_a_uuid(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True, status_update_retry_min=0.3)
    s = subscribed(lm, schedulers)
    offer = s.wait_offers()[0]
    admin(lm, "/admin/updates", {"drop": 1})
    s.launch(offer, task_info(offer, "t", "x", env={"DOCKET_SIM_DURATION": "60"}))
    started = time.monotonic()
    first = s.wait_update("t", "TASK_STARTING", timeout=5)
    assert time.monotonic() - started >= 0.25, "the dropped update came back only on retry"
    assert first["source"] == "SOURCE_EXECUTOR"
    lm.fault_updates(duplicate=True)
    one = s.wait_update("t", "TASK_RUNNING", ack=False)
    two = s.wait_update("t", "TASK_RUNNING", ack=False)
    assert one["uuid"] == two["uuid"]


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
    s = subscribed(lm, schedulers)
    s.wait_for(lambda e: e["type"] == "HEARTBEAT", 2)
    admin(lm, "/admin/streams/silence")
    time.sleep(0.2)
    while not s.events.empty():
        s.events.get()
    time.sleep(0.5)
    assert s.events.empty() and not s.closed.is_set(), "connected, yet nothing arrives"


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
