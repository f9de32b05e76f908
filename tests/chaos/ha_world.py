"""`HAWorld`: the chaos `World` with its embedded Mesos run as production runs Mesos — several
masters electing a leader through a real ZooKeeper (controller/localmesos/ha.py) — and the
controllers given the masters as `DOCKET_MESOS_MASTER=zk://...`. Owned by scenario 3
(tests/chaos/scenarios/master_failover.py); world.py stays the framework's.

Why a subclass: `World` builds a single-master `LocalMesos` in its constructor and knows
nothing of ZooKeeper. `HAWorld` starts a `ZooKeeperServer` (tests/fixtures/zookeeper.py)
first, builds `LocalMesos(masters=N, zk=...)` in place of `self.lm` (the single master the
constructor built is stopped before it ever serves), points the controllers at the zk:// URL
and stops ZooKeeper last. `base.execute` builds the World it is given:
the scenario passes `execute(..., world_type=functools.partial(HAWorld, masters=N))`.

The masters share one state (ha.py), so the launch log (`lm.launches()`) and `/tasks` are
one across failovers: the evidence needs no merging. `check_launch_log` asserts that premise
at each failover rather than trusting it.

Also here, the master-side probes the scenario measures with: who leads, whether a framework
is subscribed on the leader (and on which stream), the RECONCILE calls the master received,
and a controller's reconnect counters from its /metrics.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from controller.localmesos import LocalMesos
from tests.chaos.world import World, WorldConfig
from tests.fixtures.zookeeper import ZooKeeperServer

LEADER_TIMEOUT = 20.0  # for the first election after start


class HAWorld(World):
    def __init__(self, workdir: Path, config: WorldConfig | None = None, *,
                 masters: int = 2) -> None:
        super().__init__(workdir, config)
        if masters < 2:
            raise ValueError("an HA World needs at least two masters")
        self.masters = masters
        self.lm.stop()  # the single master World built: never started, its port released
        self.zookeeper = ZooKeeperServer(self.workdir / "zookeeper")
        self.zk_url = ""
        # (time.time(), framework id, tasks named: 0 = implicit) of every RECONCILE.
        self.reconciles: list[tuple[float, str, int]] = []

    # --- life --------------------------------------------------------------------------------
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.zookeeper.start()
        self.zk_url = self.zookeeper.url("mesos")
        self.lm = LocalMesos(dataclasses.replace(self.lm.config, masters=self.masters,
                                                 zk=self.zk_url))
        self._probe_reconciles()
        self.config = dataclasses.replace(self.config, controller_env={
            **self.config.controller_env, "DOCKET_MESOS_MASTER": self.zk_url})
        super().start()
        if poll(lambda: self.lm.leading_master() is not None, LEADER_TIMEOUT) is None:
            raise AssertionError(f"no master elected within {LEADER_TIMEOUT}s")
        self.note(f"masters in HA at {self.zk_url}")

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.zookeeper.stop()

    def _probe_reconciles(self) -> None:
        """Record every RECONCILE the (shared) master state answers, then answer it."""
        master = self.lm.master
        answer = master.reconcile

        def reconcile(fw: Any, tasks: list[dict[str, Any]]) -> None:
            self.reconciles.append((time.time(), fw.framework_id, len(tasks)))
            answer(fw, tasks)

        master.reconcile = reconcile  # type: ignore[method-assign]

    # --- faults ------------------------------------------------------------------------------
    def kill_leading_master(self) -> int:
        """The leading master dies (SIGKILL, as ha.py models it): its index."""
        index = self.lm.kill_leading_master()
        self.faults["master_kill"] += 1
        self.note(f"killed leading master {index}")
        return index

    def start_master(self, index: int) -> None:
        """A killed master started again: it rejoins as a standby, with a new id."""
        self.lm.start_master(index)
        self.note(f"started master {index}")

    def half_open_streams(self) -> None:
        """Every subscribed stream stays connected but carries nothing more."""
        self.lm.half_open_streams()
        self.faults["half_open"] += 1
        self.note("streams half-open")

    # --- probes ------------------------------------------------------------------------------
    def heartbeat_seconds(self) -> float:
        return float(self.lm.config.heartbeat_interval)

    def framework_id(self) -> str | None:
        return self.user.get_framework_id()

    def stream_on_leader(self, framework_id: str) -> str | None:
        """The id of the stream `framework_id` is subscribed on at the leading master, or None
        (no leader, the state not yet the leader's, not subscribed, half-open)."""
        node = self.lm.masters.leading()
        if node is None:
            return None
        master = self.lm.master
        with master.lock:
            fw = master.frameworks.get(framework_id)
            if master.master_id != node.master_id or fw is None or not fw.connected:
                return None
            stream = fw.stream
            if stream is None or stream.closed or stream.silent:
                return None
            return stream.stream_id

    def standby_knows_leader(self, index: int) -> bool:
        """Master `index` runs, does not lead, and its detector names the leader."""
        node, leader = self.lm.masters.nodes[index], self.lm.masters.leading()
        seen = node.leader
        return (node.running and leader is not None and leader is not node
                and seen is not None and seen.get("id") == leader.master_id)

    def implicit_reconciles(self, framework_id: str, since: float) -> list[float]:
        return [t for t, fid, named in list(self.reconciles)
                if fid == framework_id and named == 0 and t >= since]

    def reconnects(self, reason: str) -> float | None:
        """docket_mesos_reconnects_total{reason} of the controller that leads (None: no
        leader, or its /metrics did not answer)."""
        leader = self.leader()
        if leader is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{leader.port}/metrics",
                                        timeout=2.0) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (sample.name == "docket_mesos_reconnects_total"
                        and sample.labels.get("reason") == reason):
                    return float(sample.value)
        return None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "masters": self.masters, "zk": self.zk_url}


def check_launch_log(before: list[tuple[float, str, str, str]],
                     after: list[tuple[float, str, str, str]]) -> str | None:
    """Why `after` is not `before` grown (None: it is): the launch log must survive a master
    failover, or the evidence would miss the old leader's launches."""
    if len(after) < len(before) or after[:len(before)] != before:
        return (f"the launch log held {len(before)} launches before the failover and "
                f"{len(after)} after, not the same prefix")
    return None


def poll(check: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    """`check()` once truthy (its value), or None after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)  # poll interval of a bounded wait

