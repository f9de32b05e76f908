"""Masters in HA through a real ZooKeeper (controller/localmesos/ha.py, zk.py): the election,
the znodes as Mesos 1.11 writes them and as pymesos reads them, what a standby answers (as
src/master/http.cpp `Master::Http::redirect` does), a killed leader's standby taking over
with the agents' tasks, and pymesos' driver following the leader through `zk://`."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from controller.localmesos.zk import ZkUrl
from tests.fixtures.zookeeper import ZooKeeperServer
from tests.localmesos.scheduler import RawScheduler, task_info

pytestmark = pytest.mark.integration

Start = Callable[..., LocalMesos]


def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout}s: {what}"
        time.sleep(0.01)


def request(address: str, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def ha(local_mesos: Start, zookeeper: ZooKeeperServer) -> Callable[..., LocalMesos]:
    def start(masters: int = 3, **kw: Any) -> LocalMesos:
        lm = local_mesos(masters=masters, zk=zookeeper.url(), **kw)
        eventually(lambda: lm.leading_master() is not None, what="a leader")
        return lm
    return start


@pytest.fixture
def schedulers() -> Iterator[list[RawScheduler]]:
    made: list[RawScheduler] = []
    yield made
    for s in made:
        s.close()


def znodes(zookeeper: ZooKeeperServer, url: str) -> dict[str, bytes]:
    path = ZkUrl.parse(url).path
    zk = zookeeper.client()
    try:
        return {c: zk.get(f"{path}/{c}")[0] for c in zk.get_children(path)}
    finally:
        zk.stop()
        zk.close()


def test_masters_contend_and_the_lowest_sequence_leads(ha: Start,
                                                      zookeeper: ZooKeeperServer) -> None:
    lm = ha(masters=3)
    assert lm.leading_master() == 0
    nodes = znodes(zookeeper, lm.zk_url or "")
    # Group::join: EPHEMERAL|SEQUENCE "<label>_<10 digits>", label MASTER_INFO_JSON_LABEL.
    names = sorted(nodes)
    assert len(names) == 3 and all(n.startswith("json.info_") and len(n) == 20 for n in names)
    infos = [json.loads(nodes[n]) for n in names]
    ports = [int(a.rsplit(":", 1)[1]) for a in lm.master_addresses]
    # Each holds its master's MasterInfo as JSON::protobuf writes it: compact, v0 fields.
    for info, port, raw in zip(infos, ports, (nodes[n] for n in names), strict=True):
        assert raw == json.dumps(info, separators=(",", ":")).encode()
        assert list(info)[:7] == ["id", "ip", "port", "pid", "hostname", "version", "address"]
        assert info["port"] == port and info["pid"] == f"master@127.0.0.1:{port}"
        assert info["address"] == {"hostname": info["hostname"], "ip": "127.0.0.1",
                                   "port": port}
        assert info["version"] == "1.11.0"
        assert info["ip"] == 16777343  # 127.0.0.1 in network order, read as a uint32
        assert {"type": "AGENT_UPDATE"} in info["capabilities"]
    assert len({i["id"] for i in infos}) == 3  # a random id per master
    # What pymesos' MasterDetector picks (min of the children) and reads (address.ip/port).
    assert infos[0]["address"]["port"] == ports[0] == int(lm.address.rsplit(":", 1)[1])
    state = json.loads(request(lm.address, "GET", "/master/state")[2])
    assert state["id"] == infos[0]["id"] and state["leader_info"]["id"] == infos[0]["id"]


def test_a_standby_redirects_as_mesos_does(ha: Start) -> None:
    lm = ha(masters=2)
    leader, standby = lm.master_addresses
    port = leader.rsplit(":", 1)[1]
    hostname = json.loads(request(leader, "GET", "/master/state")[2])["hostname"]
    base = f"//{hostname}:{port}"
    call = json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
        "user": "u", "name": "n"}}}).encode()
    # The scheduler API: 307 to the same path on the leader, before any other check (even a
    # wrong method), with no body.
    for method in ("POST", "GET"):
        status, headers, body = request(standby, method, "/api/v1/scheduler", call,
                                        {"Content-Type": "application/json"})
        assert (status, headers["location"], body) == (307, base + "/api/v1/scheduler", b"")
    # Read endpoints that check elected(): the path and query are kept.
    for path in ("/master/state", "/state.json", "/master/tasks?limit=1", "/master/slaves"):
        status, headers, _ = request(standby, "GET", path)
        assert (status, headers["location"]) == (307, base + path)
    # /redirect and /master/redirect: the leader's base URL, from any master; below: 404.
    for address in (standby, leader):
        for path in ("/redirect", "/master/redirect"):
            status, headers, _ = request(address, "GET", path)
            assert (status, headers["location"]) == (307, base)
        assert request(address, "GET", "/master/redirect/x")[0] == 404
    # Served by every master.
    assert request(standby, "GET", "/version")[0] == 200
    assert request(standby, "GET", "/health")[0] == 200


def test_without_a_leader_a_standby_answers_503(ha: Start) -> None:
    lm = ha(masters=2)
    standby = lm.masters.nodes[1]
    # A master whose detector knows no leader (between a leader's death and the next
    # election: too short a window to hit over the network reliably, so it is set here).
    saved, standby.leader = standby.leader, None
    try:
        address = lm.master_addresses[1]
        status, _, body = request(address, "POST", "/api/v1/scheduler", b"{}",
                                  {"Content-Type": "application/json"})
        assert (status, body) == (503, b"No leader elected")
        for path in ("/redirect", "/master/redirect", "/master/state"):
            assert request(address, "GET", path)[:3:2] == (503, b"No leader elected")
    finally:
        standby.leader = saved


def test_killing_the_leader_elects_a_standby_with_the_agents_tasks(
        ha: Start, zookeeper: ZooKeeperServer, schedulers: list[RawScheduler]) -> None:
    lm = ha(masters=3, simulate=True, agents=2)
    before = json.loads(request(lm.address, "GET", "/master/state")[2])["id"]
    s = RawScheduler(lm.master_url, capabilities=("PARTITION_AWARE",), failover_timeout=60)
    schedulers.append(s)
    assert s.subscribe()["type"] == "SUBSCRIBED"
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "t1", env={"DOCKET_SIM_DURATION": "60"}))
    s.wait_update("t1", "TASK_RUNNING")  # and acknowledged
    fid = s.framework_id
    assert lm.kill_leading_master() == 0
    assert s.closed.wait(5), "the killed leader's stream ends"
    eventually(lambda: lm.leading_master() == 1, what="master 1 leads")
    assert len(znodes(zookeeper, lm.zk_url or "")) == 2  # the dead master's znode is gone
    # The dead master answers nothing any more.
    with pytest.raises(OSError):
        request(lm.master_addresses[0], "GET", "/version")
    state = json.loads(request(lm.address, "GET", "/master/state")[2])
    assert state["id"] != before and state["frameworks"] == []  # a new master, no framework
    assert len(state["slaves"]) == 2  # the agents reregistered
    # The framework subscribes again with its id and gets its running task back.
    again = RawScheduler(lm.master_url, capabilities=("PARTITION_AWARE",), framework_id=fid,
                         failover_timeout=60)
    schedulers.append(again)
    sub = again.subscribe()
    assert sub["type"] == "SUBSCRIBED"
    assert sub["subscribed"]["master_info"]["id"] == state["id"]
    assert again.call({"type": "RECONCILE", "reconcile": {"tasks": []}})[0] == 202
    update = again.wait_update("t1")
    assert update["state"] == "TASK_RUNNING" and update["reason"] == "REASON_RECONCILIATION"
    # A killed master started again stands by, under a new id.
    lm.start_master(0)
    eventually(lambda: len(znodes(zookeeper, lm.zk_url or "")) == 3, what="it rejoined")
    assert lm.leading_master() == 1
    status, headers, _ = request(lm.master_addresses[0], "GET", "/master/state")
    assert status == 307 and headers["location"].endswith(lm.address.rsplit(":", 1)[1]
                                                           + "/master/state")


def test_admin_api_kills_and_starts_masters(ha: Start) -> None:
    lm = ha(masters=2)
    leader = lm.master_addresses[0]
    status, _, body = request(leader, "POST", "/admin/masters/kill-leader", b"{}",
                              {"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (200, {"killed": 0})
    eventually(lambda: lm.leading_master() == 1, what="master 1 leads")
    standby = lm.master_addresses[1]
    assert request(standby, "POST", "/admin/masters/0/start", b"{}")[0] == 200
    eventually(lambda: lm.masters.nodes[0].leader is not None, what="master 0 detects")
    assert lm.leading_master() == 1
    assert request(standby, "POST", "/admin/masters/7/start", b"{}")[0] == 404


class _Follower:
    """A pymesos Scheduler recording what it is told."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        self.events.put(("registered", (framework_id["value"], master_info["port"])))

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self.events.put(("reregistered", master_info["port"]))

    def disconnected(self, driver: Any) -> None:
        pass

    def resourceOffers(self, driver: Any, offers: list[Any]) -> None:
        # pymesos raises from the callback (ending its thread) when the master it sends to
        # is gone, as a leader killed right after offering is. A real scheduler must survive
        # that; the offer died with the master.
        with contextlib.suppress(Exception):
            driver.declineOffer([o["id"] for o in offers], {"refuse_seconds": 60})

    def wait(self, kind: str, timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got, value = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if got == kind:
                return value


def test_pymesos_follows_the_leader_through_zookeeper(ha: Start) -> None:
    from pymesos import MesosSchedulerDriver

    lm = ha(masters=2, simulate=True)
    follower = _Follower()
    driver = MesosSchedulerDriver(follower, {"user": "u", "name": "zk-follower",
                                             "failover_timeout": 60}, lm.zk_url,
                                  use_addict=False)
    driver.start()
    try:
        fid, port = follower.wait("registered")
        assert port == lm.masters.nodes[0].port
        lm.kill_leading_master()
        assert follower.wait("reregistered") == lm.masters.nodes[1].port
        assert lm.frameworks() == [fid]  # the same framework, on the new leader
    finally:
        driver.stop(failover=True)
        with contextlib.suppress(Exception):
            driver.join()


def test_the_cli_runs_masters_in_ha(zookeeper: ZooKeeperServer) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from controller.store.etcd_server import free_port

    docket = str(Path(sys.executable).parent / "docket")
    url = zookeeper.url()
    port = free_port()
    proc = subprocess.Popen([docket, "local-mesos", "--zk", url, "--masters", "2", "--port",
                             str(port), "--agent-port", "0", "--simulate", "--enable-faults"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Masters in HA"):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        printed = "".join(lines)
        for i in (0, 1):
            assert f"Mesos master {i} (embedded, Mesos 1.11.0 API) on " \
                   f"http://127.0.0.1:{port + i}" in printed, printed
        assert f"through ZooKeeper: {url} (leader: master 0)" in printed, printed
        standby = f"127.0.0.1:{port + 1}"
        assert request(standby, "GET", "/redirect")[1]["location"].endswith(f":{port}")
        # Another process finds the leader in ZooKeeper, as Mesos' detector does.
        from controller.mesos.masters import leader_url

        assert leader_url(url) == f"http://127.0.0.1:{port}"
        assert leader_url(f"127.0.0.1:{port + 1},127.0.0.1:{port}").endswith(f":{port}")
        status, _, body = request(standby, "POST", "/admin/masters/kill-leader", b"{}")
        assert (status, json.loads(body)) == (200, {"killed": 0})
        eventually(lambda: leader_url(url) == f"http://127.0.0.1:{port + 1}",
                   what="master 1 leads")
        proc.send_signal(2)  # SIGINT
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
