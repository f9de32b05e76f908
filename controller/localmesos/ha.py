"""Masters in high availability: several masters contending for leadership through ZooKeeper,
as Mesos 1.11's do, and the faults that move the leadership (a leader killed, a master
started again). `LocalMesos` (cluster.py) owns one `Masters`; without a `zk` URL it holds one
master that leads from the start, as Mesos' standalone contender and detector make it.

Mesos 1.11 (src/master/master.cpp `Master::detected`, `lostCandidacy`; the ZooKeeper parts in
zk.py): every master is a contender with its own id (a random UUID per process) and its own
detector; the one whose detector names itself leads and recovers its state; a standby
redirects schedulers to the leader it detects (http.py); a leader that detects another
leader, or none, or loses its ZooKeeper session, commits suicide.

The model, pragmatic and documented here: the masters live in this process and share one
`Master` (the master's state and its agents). A master's own parts are its id, its HTTP port
(http.py serves it), its ZooKeeper session (zk.py) and its detector's view of the leader.
- Killing the leading master stops its HTTP server and drops every connection on it, ends its
  ZooKeeper session (its znode disappears), and loses what only its memory held: that is
  `Master.restart(forget_frameworks=True)` (faults.py), the in-process model of a master
  failover: every stream is closed, outstanding offers are gone, no framework is known.
- The standby with the smallest sequence then detects itself leader and takes the shared
  state over under its own id and port: it knows no framework until each subscribes again
  (with its FrameworkID), and learns their tasks from the agents, which kept running them
  (agents "reregister" at once: they are the shared ones).
- A killed master can be started again (`start`): a new process, so a new id, on the same
  port; it joins with a new, higher sequence and stands by.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from controller.localmesos.http import MasterHTTP
from controller.localmesos.zk import Contender, ZkUrl

if TYPE_CHECKING:
    import socket

    from controller.localmesos.cluster import LocalMesos

log = structlog.get_logger("docket.localmesos.ha")


@dataclass(eq=False)
class MasterNode:
    """One master: what is its own, not the shared state."""

    index: int
    port: int
    master_id: str
    http: MasterHTTP | None = None
    contender: Contender | None = None
    leader: dict[str, Any] | None = None
    """Its detector's view: the leading master's MasterInfo, or None (no leader known)."""
    running: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def elected(self) -> bool:
        leader = self.leader
        return self.running and leader is not None and leader.get("id") == self.master_id


class Masters:
    def __init__(self, cluster: LocalMesos) -> None:
        self.cluster = cluster
        c = cluster.config
        self.zk = ZkUrl.parse(c.zk) if c.zk else None
        if c.masters < 1:
            raise ValueError("masters must be at least 1")
        if c.masters > 1 and self.zk is None:
            raise ValueError("several masters need a ZooKeeper (zk) to elect their leader")
        self.nodes: list[MasterNode] = []
        for i in range(c.masters):
            # The first master's id is the shared state's own, so that a master without HA
            # is exactly the one it always was.
            node = MasterNode(i, (c.port + i) if c.port else 0,
                              cluster.master.master_id if i == 0 else str(uuid.uuid4()))
            node.http = MasterHTTP(cluster, c.host, node.port, node)
            node.port = node.http.port  # port 0 picked one: keep it across restarts
            self.nodes.append(node)
        self._lock = threading.Lock()  # elections and kills, one at a time

    # --- inspection ------------------------------------------------------------------------
    def leading(self) -> MasterNode | None:
        for node in self.nodes:
            if node.elected:
                return node
        return None

    def info(self, node: MasterNode) -> dict[str, Any]:
        """The node's MasterInfo, as Mesos writes it into its znode (v0, JSON)."""
        master = self.cluster.master
        info = master.master_info()
        host = master.config.host
        info.update(id=node.master_id, port=node.port, pid=f"master@{host}:{node.port}")
        info["address"] = {**info["address"], "port": node.port}
        return info

    # --- lifecycle -------------------------------------------------------------------------
    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node.index)

    def start(self, index: int) -> None:
        """Start master `index` (again): a new process, so a new id unless it never ran."""
        node = self.nodes[index]
        with node.lock:
            if node.running:
                return
            if node.http is None:  # killed before: a new process, with a new id
                node.master_id = str(uuid.uuid4())
                node.http = MasterHTTP(self.cluster, self.cluster.config.host, node.port, node)
            node.running = True
            node.http.start()
            contender = None if self.zk is None else Contender(
                self.zk, self.info(node), lambda leader: self._detected(node, leader),
                lambda: self._session_lost(node))
            node.contender = contender
        if contender is None:
            self._detected(node, self.info(node))  # the standalone detector: itself
            return
        contender.start()
        log.info("master started", index=index, master_id=node.master_id, port=node.port,
                 znode=contender.znode)

    def stop_all(self) -> None:
        for node in self.nodes:
            with node.lock:
                node.running = False
                http, node.http = node.http, None
                contender, node.contender = node.contender, None
            if http is not None:
                http.kill() if self.zk is not None else http.stop()
            if contender is not None:
                contender.close()

    def kill(self, index: int, keep: socket.socket | None = None) -> None:
        """Master `index` dies (SIGKILL): its HTTP server and connections, its ZooKeeper
        session, and, if it led, everything only it knew."""
        node = self.nodes[index]
        with self._lock:
            with node.lock:
                if not node.running:
                    return
                was_leader = node.elected
                node.running = False
                node.leader = None
                http, node.http = node.http, None
                contender, node.contender = node.contender, None
            if was_leader:
                self.cluster.master.restart(forget_frameworks=True)
            if http is not None:
                http.kill(keep)
        if contender is not None:
            contender.close()  # outside the lock: the others' elections follow from it
        log.warning("master killed", index=index, master_id=node.master_id, leader=was_leader)

    def kill_leader(self, keep: socket.socket | None = None) -> int:
        if self.zk is None:
            raise RuntimeError("without ZooKeeper (zk) there is no standby to take over")
        node = self.leading()
        if node is None:
            raise RuntimeError("no master leads")
        self.kill(node.index, keep)
        return node.index

    # --- from the detectors (kazoo's thread) -----------------------------------------------
    def _detected(self, node: MasterNode, leader: dict[str, Any] | None) -> None:
        with self._lock:
            with node.lock:
                if not node.running:
                    return
                was = node.elected
                node.leader = leader
                now = node.elected
            if now and not was:
                self._elected(node)
            elif was and not now:
                # "Conceded leadership to another master... committing suicide!"
                threading.Thread(target=self.kill, args=(node.index,), daemon=True,
                                 name="localmesos-master-suicide").start()
        if self.zk is None:
            return  # the standalone master: nothing worth telling
        log.info("leader detected", index=node.index,
                 leader=(leader or {}).get("pid"), elected=now)

    def _elected(self, node: MasterNode) -> None:
        """The node leads: the shared state becomes its own. A state another master led is
        reset first (its frameworks, streams and offers were that master's memory)."""
        master = self.cluster.master
        with master.lock:
            if master.master_id != node.master_id:
                master.restart(forget_frameworks=True)
                master.removed_frameworks.clear()
                master.master_id = node.master_id
            master.config.port = node.port
            master.elected_time = time.time()
        if self.zk is None:
            return
        log.info("elected as the leading master", index=node.index,
                 master_id=node.master_id, port=node.port)

    def _session_lost(self, node: MasterNode) -> None:
        """"Lost candidacy": a leader commits suicide; a standby is done too here (Mesos
        would contend again; a test starts it again instead)."""
        log.warning("master lost its ZooKeeper session", index=node.index)
        self.kill(node.index)
