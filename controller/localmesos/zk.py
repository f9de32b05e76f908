"""ZooKeeper as Mesos 1.11's masters use it: a `zk://` URL, the group of contending masters,
and who leads it. The masters in HA (ha.py) each own one `Contender`.

What Mesos does, and so what this does (src/zookeeper/group.cpp, contender.cpp, detector.cpp;
src/master/contender/zookeeper.cpp, src/master/detector/zookeeper.cpp of 1.11):
- each master joins the group under the URL's path with an EPHEMERAL|SEQUENCE znode named
  `<label>_<10-digit sequence>`, label `json.info` (master/constants.hpp
  MASTER_INFO_JSON_LABEL), holding its MasterInfo as compact JSON (`JSON::protobuf`); the path
  is created first when missing;
- the leader is the member with the smallest sequence, whatever its label; children whose
  name does not end in a number (the replicated log's `log_replicas`) are not members; an
  incumbent that wins again is no news;
- the leader's data is read and parsed by its label: `json.info` as JSON; any other label is
  not a MasterInfo this detector can read (the binary `info` label of Mesos < 0.24 is not
  written by 1.11 and not read here);
- a master's session ends with its process, and with it its znode (ephemeral).

Schedulers follow the same data: pymesos' MasterDetector reads `address.ip` and
`address.port` of the smallest child's JSON. The ZooKeeper data is the source of truth: any
process can find the leader from it (`leader_info`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from kazoo.client import KazooClient, KazooState  # type: ignore[import-untyped]
from kazoo.exceptions import NoNodeError  # type: ignore[import-untyped]
from kazoo.recipe.watchers import ChildrenWatch  # type: ignore[import-untyped]

log = structlog.get_logger("docket.localmesos.zk")

MASTER_INFO_JSON_LABEL = "json.info"
# MASTER_CONTENDER_ZK_SESSION_TIMEOUT and the detector's: 10 s.
SESSION_TIMEOUT = 10.0


@dataclass(frozen=True)
class ZkUrl:
    servers: str  # host:port[,host:port...]
    path: str  # absolute, no trailing slash

    @classmethod
    def parse(cls, url: str) -> ZkUrl:
        """`zk://host:port[,host:port...]/path`, as Mesos' `zookeeper::URL::parse` takes it
        (credentials are not supported here)."""
        if not url.startswith("zk://"):
            raise ValueError(f"{url!r}: a ZooKeeper URL starts with zk://")
        rest = url[len("zk://"):]
        servers, slash, path = rest.partition("/")
        if not servers or "@" in servers or not slash:
            raise ValueError(f"{url!r}: must look like zk://host:port[,host:port]/path "
                             "(no credentials)")
        for server in servers.split(","):
            host, sep, port = server.rpartition(":")
            if not host or not sep or not port.isdigit():
                raise ValueError(f"{url!r}: {server!r} is not host:port")
        path = "/" + path.strip("/")
        if path == "/":
            raise ValueError(f"{url!r}: the path must not be empty")
        return cls(servers, path)

    def __str__(self) -> str:
        return f"zk://{self.servers}{self.path}"


def sequence_of(child: str) -> int | None:
    """A member's sequence number, or None for a child that is not a member (Group::watch:
    the last `_`-separated token must be a number)."""
    token = child.rsplit("_", 1)[-1]
    return int(token) if token.isdigit() else None


def leading_child(children: list[str]) -> str | None:
    members = [(seq, child) for child in children
               if (seq := sequence_of(child)) is not None]
    return min(members)[1] if members else None


def parse_master_info(child: str, data: bytes | None) -> dict[str, Any] | None:
    """The MasterInfo in a member's data, read by its label as Mesos' detector does."""
    if data is None or "_" not in child or child.rsplit("_", 1)[0] != MASTER_INFO_JSON_LABEL:
        return None
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def encode_master_info(info: dict[str, Any]) -> bytes:
    """As `stringify(JSON::protobuf(masterInfo))`: compact, fields in proto order."""
    return json.dumps(info, separators=(",", ":")).encode("utf-8")


def leader_info(client: KazooClient, path: str) -> dict[str, Any] | None:
    """The leading master's MasterInfo at `path`, read once (None: no leader)."""
    try:
        child = leading_child(client.get_children(path))
        if child is None:
            return None
        return parse_master_info(child, client.get(f"{path}/{child}")[0])
    except NoNodeError:
        return None


LeaderCallback = Callable[[dict[str, Any] | None], None]


class Contender:
    """One master's membership and its view of the leader: `on_leader(info)` is called
    (from kazoo's thread) with the leader's MasterInfo, or None, each time the leader
    changes; `on_lost()` when the session is lost (the znode is gone with it)."""

    def __init__(self, url: ZkUrl, info: dict[str, Any], on_leader: LeaderCallback,
                 on_lost: Callable[[], None]) -> None:
        self.url = url
        self._data = encode_master_info(info)
        self._on_leader = on_leader
        self._on_lost = on_lost
        self._client = KazooClient(hosts=url.servers, timeout=SESSION_TIMEOUT)
        self._leader: str | None = None
        self._closed = threading.Event()
        self.znode: str | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._client.start(timeout=timeout)
        self._client.add_listener(self._state)
        self._client.ensure_path(self.url.path)
        self.znode = self._client.create(f"{self.url.path}/{MASTER_INFO_JSON_LABEL}_",
                                         self._data, ephemeral=True, sequence=True)
        log.info("master joined the group", znode=self.znode)
        ChildrenWatch(self._client, self.url.path, self._children)

    def close(self) -> None:
        """Ends the session: the znode disappears now, not after the session timeout."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._client.stop()
        finally:
            self._client.close()

    def _state(self, state: str) -> None:
        if state == KazooState.LOST and not self._closed.is_set():
            # Called on kazoo's thread, which must not be blocked: the master's reaction
            # (suicide if it led) runs on its own.
            threading.Thread(target=self._on_lost, name="localmesos-zk-lost",
                             daemon=True).start()

    def _children(self, children: list[str]) -> bool:
        if self._closed.is_set():
            return False
        child = leading_child(children)
        if child == self._leader:
            return True  # the incumbent won again: no news
        self._leader = child
        info = None
        if child is not None:
            try:
                info = parse_master_info(child, self._client.get(
                    f"{self.url.path}/{child}")[0])
            except NoNodeError:
                info = None  # the membership is gone before its data could be read
        self._on_leader(info)
        return True
