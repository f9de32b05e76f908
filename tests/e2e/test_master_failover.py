"""Docket follows Mesos masters in HA (issue 14, scenario 3): three embedded masters contend in
a real ZooKeeper and share simulated agents; Docket runs Jobs on them, the leading master is
killed mid-run, a standby takes over with a new master id and no framework, and Docket must
re-subscribe with the same FrameworkID, reconcile, and finish every Job, with no task id
launched twice (the master's own launch log, across both masters, is the judge). Docket is
given the masters as ZooKeeper gives them (`zk://`, pymesos' detector) and as a plain list
(`host:port,...`: tried in turn, a standby's redirect followed). And a stream that goes
silent without closing (half-open) is given up and subscribed again within two heartbeat
intervals."""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.localmesos import LocalMesos
from controller.manager import KnownTasks, Manager
from controller.mesos.adapter import MesosAdapter
from controller.mesos.backend import MesosBackend
from controller.store import Store
from tests.e2e.harness import Docket, StoreFrameworkIds, mesos_config, sim, wait_for
from tests.fixtures.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

JOBS = 2
COMPLETIONS = 6
PARALLELISM = 3


class HADocket(Docket):
    """The in-process harness' Docket, given the masters in one of the HA forms."""

    def __init__(self, store: Store, lm: LocalMesos, master: str, **config: Any) -> None:
        self.store = store
        self.lm = lm
        mesos = dataclasses.replace(mesos_config(lm), master=master, **config)

        def make(known: KnownTasks) -> MesosBackend:
            return MesosAdapter(mesos, StoreFrameworkIds(store), known)

        self.jobs = Manager(store, make, workers=2, resync_seconds=1.0)
        self.started = False


@pytest.fixture
def cluster(local_mesos: Callable[..., LocalMesos],
            zookeeper: ZooKeeperServer) -> Callable[..., LocalMesos]:
    def start(**kw: Any) -> LocalMesos:
        lm = local_mesos(masters=3, zk=zookeeper.url(), simulate=True, agents=2, **kw)
        wait_for(lambda: lm.leading_master() == 0, 10, lambda: "no leader elected")
        return lm
    return start


@pytest.fixture
def dockets(store: Store) -> Iterator[Callable[..., Docket]]:
    made: list[Docket] = []

    def make(lm: LocalMesos, master: str, **config: Any) -> Docket:
        d = HADocket(store, lm, master, **config)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()


def _running(d: Docket, name: str) -> int:
    return sum(1 for r in d.executions(name) if r.state == "TASK_RUNNING")


def _fail_over_mid_run(lm: LocalMesos, d: Docket) -> None:
    names = [f"job-{i}" for i in range(JOBS)]
    for name in names:
        d.put_job(name, {"completions": COMPLETIONS, "parallelism": PARALLELISM,
                         "template": sim(duration=1.0)})
    wait_for(lambda: all(_running(d, n) for n in names), 20,
             lambda: f"no task running yet: {[d.executions(n) for n in names]}")
    fid = d.store.get_framework_id()
    assert fid and lm.frameworks() == [fid]
    before = lm.master.master_id
    assert lm.kill_leading_master() == 0
    wait_for(lambda: lm.leading_master() == 1, 10, lambda: "the standby never took over")
    assert lm.master.master_id != before  # a new master, which knows no framework yet
    # Docket subscribes again to the new leader, with the FrameworkID it had.
    wait_for(lambda: lm.frameworks() == [fid], 10,
             lambda: f"docket never re-subscribed: {lm.frameworks()} (wanted {fid})")
    assert d.store.get_framework_id() == fid
    for name in names:
        status = d.wait_phase(name, "Succeeded", "Failed", timeout=30)
        assert status.phase == "Succeeded", status
        assert (status.succeeded, status.failed) == (COMPLETIONS, 0), status
        # Tasks that ran through the failover were adopted, not written off.
        assert status.system_failures == 0, status
    launched = collections.Counter(task_id for _t, _fw, task_id, _a in lm.launches())
    assert launched and max(launched.values()) == 1, [t for t, n in launched.items() if n > 1]
    recorded = {r.task_id for n in names for r in d.executions(n)}
    assert set(launched) == recorded
    assert {fw for _t, fw, _id, _a in lm.launches()} == {fid}


def test_docket_follows_the_leader_through_zookeeper(cluster: Callable[..., LocalMesos],
                                                     dockets: Callable[..., Docket]) -> None:
    lm = cluster()
    d = dockets(lm, lm.zk_url)
    _fail_over_mid_run(lm, d)


def test_docket_tries_a_list_of_masters_in_turn(cluster: Callable[..., LocalMesos],
                                                dockets: Callable[..., Docket]) -> None:
    lm = cluster()
    # A standby first: its 307 redirect leads Docket to the leader.
    masters = lm.master_addresses
    d = dockets(lm, ",".join([masters[2], masters[0], masters[1]]))
    _fail_over_mid_run(lm, d)


def _heartbeat_reconnects() -> float:
    return REGISTRY.get_sample_value("docket_mesos_reconnects_total",
                                     {"reason": "heartbeat"}) or 0.0


def test_a_half_open_stream_is_resubscribed_within_two_heartbeats(
        cluster: Callable[..., LocalMesos], dockets: Callable[..., Docket]) -> None:
    heartbeat = 0.5
    lm = cluster(heartbeat_interval=heartbeat)
    d = dockets(lm, lm.zk_url)
    d.put_job("steady", {"completions": 4, "parallelism": 2, "template": sim(duration=1.0)})
    wait_for(lambda: _running(d, "steady"), 20, lambda: "no task running yet")
    fid = d.store.get_framework_id()
    subscribed = lm.master.frameworks[fid].stream
    before = _heartbeat_reconnects()
    lm.half_open_streams()
    silent_since = time.monotonic()
    wait_for(lambda: _heartbeat_reconnects() > before, 5, lambda: "the silence went unnoticed",
             interval=0.005)
    noticed = time.monotonic() - silent_since
    assert noticed <= 2 * heartbeat + 0.1, noticed
    # Subscribed again on a new stream, with the same FrameworkID.
    wait_for(lambda: (fw := lm.master.frameworks.get(fid)) is not None
             and fw.connected and fw.stream is not subscribed, 5, lambda: "not re-subscribed")
    status = d.wait_phase("steady", "Succeeded", "Failed", timeout=30)
    assert (status.phase, status.succeeded, status.failed) == ("Succeeded", 4, 0), status
    launched = collections.Counter(task_id for _t, _fw, task_id, _a in lm.launches())
    assert max(launched.values()) == 1
