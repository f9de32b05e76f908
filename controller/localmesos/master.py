"""The master's state machine: frameworks, agents, offers, tasks and status updates.

It follows Mesos 1.11's master (src/master/master.cpp, validation.cpp): the same validation
order and messages, the same task states and reasons, master-generated updates without a
uuid, agent updates with a uuid that are resent until acknowledged, in order per task, and
the same reconciliation answers. The HTTP layer (`http.py`) only parses and routes; the agents
(`agents.py`) only run tasks and report their states here.

All state is guarded by one lock; nothing here blocks on I/O while holding it. Events for a
framework are buffered in its stream and written to the SUBSCRIBE connection by the thread
that made them once it lets go of the lock (`MasterLock`, `Stream.flush`).
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import os
import random
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from controller.localmesos.resources import ResourceError, Resources
from controller.localmesos.timers import Timer, Timers

log = structlog.get_logger("docket.localmesos.master")

MESOS_VERSION = "1.11.0"

TERMINAL_STATES = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
    "TASK_GONE", "TASK_GONE_BY_OPERATOR",
})
# States only partition-aware frameworks may see; the others get TASK_LOST instead.
PARTITION_AWARE_STATES = frozenset({
    "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_DROPPED", "TASK_UNKNOWN",
})

DEFAULT_KILL_GRACE_SECONDS = 3.0

# The master's capabilities (src/master/constants.cpp MASTER_CAPABILITIES), named as in its
# v0 MasterInfo, and those of them that v1's MasterInfo.Capability.Type of 1.11.0 knows.
MASTER_CAPABILITIES = ("AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2")
V1_MASTER_CAPABILITIES = frozenset({"UNKNOWN", "AGENT_UPDATE", "AGENT_DRAINING"})


def validate_id(value: str) -> str | None:
    """Mesos' common::validation::validateID: the error message, or None when valid."""
    if not value:
        return "ID must not be empty"
    if len(value) > 255:
        return "ID must not be greater than 255 characters"
    if value in (".", ".."):
        return f"'{value}' is disallowed"
    if any(ord(c) < 32 or ord(c) == 127 or c in "/\\" for c in value):
        return f"'{value}' contains invalid characters"
    return None


_encode = json.JSONEncoder(separators=(",", ":")).encode


def framework_roles(info: dict[str, Any]) -> list[str]:
    """protobuf::framework::getRoles: `roles` for MULTI_ROLE frameworks (none: no offers),
    else `role` ("*" by default)."""
    caps = {c.get("type") for c in info.get("capabilities") or [] if isinstance(c, dict)}
    if "MULTI_ROLE" in caps:
        return [str(r) for r in info.get("roles") or []]
    return [str(info.get("role", "*"))]


def _stringify_set(items: set[str]) -> str:
    return "{ " + ", ".join(sorted(items)) + " }"


def validate_role(role: str) -> str | None:
    """Mesos' roles::validate: the error message, or None when valid."""
    if role == "*":
        return None
    if role.startswith("/"):
        return f"Role '{role}' cannot start with a slash"
    if role.endswith("/"):
        return f"Role '{role}' cannot end with a slash"
    if "//" in role:
        return f"Role '{role}' cannot contain two adjacent slashes"
    components = [c for c in role.split("/") if c]
    if not components:
        return "Role names cannot be the empty string"
    for component in components:
        if component in (".", "..", "*"):
            return f"Role '{role}' cannot include '{component}' as a component"
        if component.startswith("-"):
            return f"Role component '{component}' is invalid because it starts with a dash"
        if any(c in "\t\n\v\f\r \b" for c in component):
            return (f"Role component '{component}' is invalid because it contains backspace "
                    "or whitespace")
    return None


def validate_framework(info: dict[str, Any]) -> str | None:
    """validation.cpp framework::validate of a SUBSCRIBE's FrameworkInfo: the refusal's
    ERROR message, or None."""
    caps = {c.get("type") for c in info.get("capabilities") or [] if isinstance(c, dict)}
    multi_role = "MULTI_ROLE" in caps
    roles = [str(r) for r in info.get("roles") or []]
    if multi_role and "role" in info:
        return "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
    if not multi_role and roles:
        return ("'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE "
                "capable")
    if multi_role:
        duplicates = {r for r in roles if roles.count(r) > 1}
        if duplicates:
            return f"'FrameworkInfo.roles' contains duplicate items: {_stringify_set(duplicates)}"
        for role in roles:
            error = validate_role(role)
            if error:
                return f"'FrameworkInfo.roles' contains invalid role: {error}"
    else:
        error = validate_role(str(info.get("role", "*")))
        if error:
            return f"'FrameworkInfo.role' is not a valid role: {error}"
    fid = (info.get("id") or {}).get("value")
    if fid:
        error = validate_id(str(fid))
        if error:
            return error
    timeout = info.get("failover_timeout", 0.0)
    if isinstance(timeout, int | float) and not abs(timeout) * 1e9 < 2**63:
        return f"The framework failover_timeout ({timeout:g}) is invalid"
    return None


def recordio(event: dict[str, Any]) -> bytes:
    data = _encode(event).encode()
    return str(len(data)).encode() + b"\n" + data


# Random UUIDs are made under the master lock for every status update and task. os.urandom
# (and so uuid.uuid4) is a getrandom() syscall that lets go of the GIL, which under load hands
# the GIL to a thread that then queues on the master lock. A PRNG seeded from os.urandom makes
# the same version-4 UUIDs (unique, not secret: nothing here needs them unguessable) without one.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)  # a forked child must not repeat them
_VERSION_4 = (0xF000 << 64 | 0xC000 << 48, 0x4000 << 64 | 0x8000 << 48)


def _uuid4_int() -> int:
    """128 random bits with the version 4 and RFC 4122 variant bits set, as uuid.UUID does."""
    clear, set_bits = _VERSION_4
    return (_rng.getrandbits(128) & ~clear) | set_bits


def new_uuid() -> str:
    """A random (version 4) UUID in its canonical text form, like str(uuid.uuid4())."""
    return str(uuid.UUID(int=_uuid4_int()))


def new_uuid_bytes() -> str:
    """A status update uuid (random, version 4, RFC 4122 variant) as the JSON encoding of a
    proto `bytes` field: base64."""
    return base64.b64encode(_uuid4_int().to_bytes(16, "big")).decode()


class MasterLock:
    """The master's one reentrant lock. Events are not written to a stream's socket while it
    is held: `Stream.send` only buffers them, and the thread that leaves the outermost hold
    writes what it buffered, without blocking (see `Stream.flush`). So an event reaches its
    client as soon as the call or timer that made it is done, with no thread woken per event
    and no I/O under the lock."""

    __slots__ = ("_depth", "_dirty", "_lock")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # only the owner touches it
        self._dirty: list[Stream] = []

    def __enter__(self) -> None:
        self._lock.acquire()
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth or not self._dirty:
            self._lock.release()
            return
        dirty, self._dirty = self._dirty, []
        self._lock.release()
        for stream in dict.fromkeys(dirty):
            stream.flush()

    def buffered(self, stream: Stream) -> None:
        self._dirty.append(stream)


@dataclass(eq=False)
class Stream:
    """The open SUBSCRIBE response of one framework: events as RecordIO records in HTTP
    chunks. Records are buffered under the master lock and written by whichever thread gets
    the socket first: the one that made them when it leaves the lock (never blocking), or
    the stream's HTTP thread (`MasterHTTP._pump`), which is woken only to finish a write the
    client was too slow for, to close the stream, or when the client is gone."""

    framework_id: str
    stream_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    closed: bool = False
    silent: bool = False  # half-open fault: the connection stays up, nothing arrives
    lock: MasterLock | None = None  # whose release writes what `send` buffered
    broken: bool = False  # a write failed: the client is gone
    wakeup: threading.Event = field(default_factory=threading.Event)
    _records: list[bytes] = field(default_factory=list)  # guarded by _buffer_lock
    _buffer_lock: threading.Lock = field(default_factory=threading.Lock)
    # The socket, its bytes accepted but not yet written (a partial chunk) and whether
    # `flush` may write without blocking; all guarded by _io_lock.
    _sock: socket.socket | None = None
    _backlog: bytes = b""
    _nonblocking: bool = False
    _io_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, event: dict[str, Any], record: bytes | None = None) -> None:
        """Buffer `event`; `record` is its RecordIO encoding when the caller has it."""
        if not self.closed and not self.silent:
            if record is None:
                record = recordio(event)
            with self._buffer_lock:
                self._records.append(record)
            if self.lock is not None:
                self.lock.buffered(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.wakeup.set()

    def attach(self, sock: socket.socket | None) -> None:
        """The HTTP thread's socket, once the response headers are out (None: detached,
        before the server closes it, so no late write can reach a reused descriptor)."""
        with self._io_lock:
            self._sock = sock
            # Python waits for a socket with a timeout to be writable, MSG_DONTWAIT or not.
            self._nonblocking = sock is not None and sock.gettimeout() is None

    def flush(self, block: bool = False) -> None:
        """Write the buffered records as one chunk, after any backlog. Without `block`, a
        thread already writing is left to it (it looks again once done) and what the socket
        does not take at once becomes backlog for the stream's HTTP thread."""
        while True:
            if not self._io_lock.acquire(block):
                return
            try:
                sock = self._sock
                if sock is None or self.broken:
                    return
                if not block and not self._nonblocking:
                    self.wakeup.set()  # the stream's own thread writes
                    return
                with self._buffer_lock:
                    records, self._records = self._records, []
                data = self._backlog
                if records:
                    body = b"".join(records)
                    data += b"%x\r\n%s\r\n" % (len(body), body)
                self._backlog = b""
                if data:
                    if block:
                        sock.sendall(data)
                    else:
                        try:
                            sent = sock.send(data, socket.MSG_DONTWAIT)
                        except BlockingIOError:
                            sent = 0
                        if sent < len(data):
                            self._backlog = data[sent:]
                            self.wakeup.set()
                            return
            except OSError:
                self.broken = True
                self.wakeup.set()
                return
            finally:
                self._io_lock.release()
            if not self._records:
                return


@dataclass
class Task:
    task_id: str
    name: str
    framework_id: str
    agent_id: str
    resources: Resources
    info: dict[str, Any]
    role: str
    state: str = "TASK_STAGING"
    statuses: list[dict[str, Any]] = field(default_factory=list)
    agent_statuses: list[dict[str, Any]] = field(default_factory=list)  # the agent's Task
    pending: deque[dict[str, Any]] = field(default_factory=deque)  # unacknowledged updates
    retry_interval: float = 0.0
    unreachable_time: float | None = None
    resources_released: bool = False
    agent_state: str = "TASK_STAGING"  # what the agent knows, also while partitioned
    held: list[dict[str, Any]] = field(default_factory=list)  # updates made while partitioned
    # The command executor's container, as the agent's containerizer reports it in every
    # update the executor sends (Mesos' container ids are UUIDs).
    container_id: str = field(default_factory=new_uuid)
    executor_pid: int | None = None
    # The head of `pending` and its UPDATE event's RecordIO encoding: a resend (every retry
    # interval until acknowledged) writes the same bytes without encoding them again.
    head_record: tuple[dict[str, Any], bytes] | None = field(default=None, repr=False)

    @property
    def executor_id(self) -> str:
        return self.task_id  # the command executor is named after its task

    @property
    def latest_container_status(self) -> dict[str, Any] | None:
        """What the master copies into its own updates of the task (getTaskContainerStatus)."""
        for entry in reversed(self.statuses):
            if "container_status" in entry:
                return dict(entry["container_status"])
        return None

    @property
    def status_update_state(self) -> str:
        return str(self.pending[0]["state"]) if self.pending else self.state


@dataclass
class Framework:
    framework_id: str
    info: dict[str, Any]
    stream: Stream | None = None
    connected: bool = False
    active: bool = False
    registered_time: float = field(default_factory=time.time)
    unregistered_time: float | None = None
    removal_timer: Timer | None = None
    heartbeat_timer: Timer | None = None
    suppressed: set[str] = field(default_factory=set)
    # Offer filters per (role, agent id), as Mesos' allocator keeps them: a REVIVE of one role
    # clears that role's filters only.
    filters: dict[tuple[str, str], list[tuple[Resources, float]]] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    unreachable_tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque[Task] = field(default_factory=lambda: deque(maxlen=10000))
    offers: set[str] = field(default_factory=set)

    @property
    def capabilities(self) -> set[str]:
        return {str(c.get("type")) for c in self.info.get("capabilities", [])
                if isinstance(c, dict)}

    @property
    def partition_aware(self) -> bool:
        return "PARTITION_AWARE" in self.capabilities

    @property
    def roles(self) -> list[str]:
        return framework_roles(self.info)

    @property
    def failover_timeout(self) -> float:
        return float(self.info.get("failover_timeout", 0.0))


class AgentRuntime(Protocol):
    """What runs tasks on an agent: local processes (real) or timers (simulated)."""

    def launch(self, task: Task) -> None: ...

    def kill(self, task: Task, grace_seconds: float, killing_state: bool) -> None: ...

    def shutdown(self) -> None: ...


@dataclass
class Agent:
    agent_id: str
    hostname: str
    port: int
    total: Resources
    attributes: list[dict[str, Any]]
    runtime: AgentRuntime
    pid_name: str = "slave(1)"
    used: Resources = field(default_factory=Resources)
    offered: Resources = field(default_factory=Resources)
    state: str = "active"  # active | unreachable | gone
    registered_time: float = field(default_factory=time.time)
    unreachable_time: float | None = None
    tasks: dict[tuple[str, str], Task] = field(default_factory=dict)
    work_dir: str | None = None

    _available: tuple[Resources, Resources, Resources, bool] | None = field(
        default=None, repr=False, compare=False)

    def _availability(self) -> tuple[Resources, Resources, Resources, bool]:
        # Resources are immutable and replaced on every change, so identity tells whether
        # the cached difference still holds; allocation rounds over 1,000 agents then cost
        # no arithmetic for agents whose accounting did not move.
        cached = self._available
        if cached is None or cached[0] is not self.used or cached[1] is not self.offered:
            value = self.total - self.used - self.offered
            cached = self._available = (self.used, self.offered, value, value.empty)
        return cached

    @property
    def available(self) -> Resources:
        return self._availability()[2]

    @property
    def has_available(self) -> bool:
        return not self._availability()[3]


@dataclass
class Offer:
    offer_id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    timer: Timer | None = None


@dataclass
class MasterConfig:
    host: str = "127.0.0.1"
    port: int = 5050
    hostname: str = field(default_factory=socket.gethostname)
    heartbeat_interval: float = 15.0
    allocation_interval: float = 1.0
    offer_timeout: float | None = None
    default_refuse_seconds: float = 5.0
    status_update_retry_min: float = 10.0
    status_update_retry_max: float = 600.0
    failover_timeout_cap: float | None = None


class ApiError(Exception):
    """A scheduler call refused before it reaches the master's logic: HTTP status + text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Master:
    def __init__(self, config: MasterConfig | None = None) -> None:
        self.config = config or MasterConfig()
        self.master_id = str(uuid.uuid4())
        self.start_time = time.time()
        self.lock = MasterLock()
        self.timers = Timers()
        self.frameworks: dict[str, Framework] = {}
        self.removed_frameworks: dict[str, Framework] = {}
        self.agents: dict[str, Agent] = {}
        self.offers: dict[str, Offer] = {}
        self.all_tasks: dict[tuple[str, str], Task] = {}  # every task ever launched
        self._framework_seq = 0
        self._agent_seq = 0
        self._offer_seq = 0
        self._allocation_timer: Timer | None = None
        self._retries: list[tuple[float, int, Task, dict[str, Any]]] = []
        self._retry_seq = itertools.count()
        self._retry_timer: Timer | None = None
        self.event_observers: list[Callable[[str, dict[str, Any]], None]] = []
        # Fault injection of status updates and launches.
        self.update_delay = 0.0
        self.duplicate_updates = False
        self.drop_updates = 0
        self.fail_launches = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._allocation_timer = self.timers.every(self.config.allocation_interval,
                                                   self.allocate)
        # Retries are checked a few times per minimum interval: resends come at most a
        # quarter of it late.
        self._retry_timer = self.timers.every(
            min(1.0, max(0.02, self.config.status_update_retry_min / 4)), self._resend_due)

    def stop(self) -> None:
        with self.lock:
            for fw in self.frameworks.values():
                if fw.stream:
                    fw.stream.close()
            agents = list(self.agents.values())
        for agent in agents:
            agent.runtime.shutdown()
        self.timers.stop()

    @property
    def ip_uint32(self) -> int:
        """MasterInfo.ip: the IPv4 address packed in network order, read as a uint32."""
        packed = socket.inet_aton(self.config.host)
        return int(struct.unpack("<I", packed)[0])

    def master_info(self, *, v1: bool = False) -> dict[str, Any]:
        """The master's MasterInfo; `v1` as SUBSCRIBED carries it. Mesos 1.11 makes that
        by `evolve()` (src/internal/evolve.cpp: serialize the v0 message, parse it as v1).
        Its v1 proto is proto2, whose parser keeps an enum number it does not know as an
        unknown field, so QUOTA_V2 (v0 only) leaves a Capability without `type`, and the
        JSON writer (stout's protobuf.hpp, set fields only) makes that `{}`."""
        capabilities = [{"type": c} if not v1 or c in V1_MASTER_CAPABILITIES else {}
                        for c in MASTER_CAPABILITIES]
        return {
            "id": self.master_id,
            "ip": self.ip_uint32,
            "port": self.config.port,
            "pid": f"master@{self.config.host}:{self.config.port}",
            "hostname": self.config.hostname,
            "version": MESOS_VERSION,
            "address": {"hostname": self.config.hostname, "ip": self.config.host,
                        "port": self.config.port},
            "capabilities": capabilities,
        }

    # --- sending events --------------------------------------------------------------------
    def _send(self, fw: Framework, event: dict[str, Any], record: bytes | None = None) -> bool:
        if fw.stream is None or fw.stream.closed or not fw.connected:
            return False
        self._send_on(fw.stream, event, record)
        return True

    def _send_on(self, stream: Stream, event: dict[str, Any],
                 record: bytes | None = None) -> None:
        """Every event goes out here, so `event_observers` see each one."""
        for observer in self.event_observers:
            observer(stream.framework_id, event)
        stream.send(event, record)

    def _heartbeat(self, fw: Framework) -> None:
        with self.lock:
            self._send(fw, {"type": "HEARTBEAT"})

    # --- agents ----------------------------------------------------------------------------
    def add_agent(self, *, hostname: str, port: int, resources: Resources,
                  attributes: list[dict[str, Any]], runtime: AgentRuntime,
                  work_dir: str | None = None) -> Agent:
        with self.lock:
            agent_id = f"{self.master_id}-S{self._agent_seq}"
            self._agent_seq += 1
            agent = Agent(agent_id, hostname, port, resources, attributes, runtime,
                          work_dir=work_dir)
            self.agents[agent_id] = agent
            return agent

    # --- subscription ----------------------------------------------------------------------
    def subscribe(self, call: dict[str, Any]) -> Stream:
        """A validated SUBSCRIBE: the stream to answer with (already holding SUBSCRIBED, or
        ERROR for a removed framework)."""
        info = dict(call["subscribe"]["framework_info"])
        with self.lock:
            fid = (info.get("id") or {}).get("value")
            stream = Stream(framework_id=fid or "", lock=self.lock)
            # Refused subscriptions get a 200 stream holding one ERROR, as in Mesos.
            # Mesos' order: FrameworkInfo, a removed framework, then the suppressed roles.
            refusal = validate_framework(info)
            if refusal is None and fid and fid in self.removed_frameworks:
                refusal = "Framework has been removed"
            unknown = set(call["subscribe"].get("suppressed_roles") or []) - set(
                framework_roles(info))
            if refusal is None and unknown:
                refusal = (f"Suppressed roles {_stringify_set(unknown)} are not contained in "
                           "the set of roles")
            if refusal is not None:
                self._send_on(stream, {"type": "ERROR", "error": {"message": refusal}})
                stream.close()
                return stream
            if fid and fid in self.frameworks:
                fw = self.frameworks[fid]
                old = fw.stream
                if old is not None and not old.closed:
                    self._send_on(old, {"type": "ERROR",
                                        "error": {"message": "Framework failed over"}})
                    old.close()
                if fw.removal_timer:
                    fw.removal_timer.cancel()
                    fw.removal_timer = None
                info["id"] = {"value": fid}
                fw.info = info
                # Offers outstanding to the previous instance are rescinded.
                for offer_id in list(fw.offers):
                    self._remove_offer(offer_id, rescind=False)
            else:
                if not fid:
                    fid = f"{self.master_id}-{self._framework_seq:04d}"
                    self._framework_seq += 1
                info["id"] = {"value": fid}
                fw = Framework(fid, info)
                self.frameworks[fid] = fw
                self._adopt_orphans(fw)
            stream.framework_id = fid
            fw.stream = stream
            fw.connected = True
            fw.active = True
            fw.unregistered_time = None
            fw.suppressed = set(call["subscribe"].get("suppressed_roles") or [])
            self._send(fw, {
                "type": "SUBSCRIBED",
                "subscribed": {
                    "framework_id": {"value": fid},
                    "heartbeat_interval_seconds": self.config.heartbeat_interval,
                    "master_info": self.master_info(v1=True),
                },
            })
            if fw.heartbeat_timer:
                fw.heartbeat_timer.cancel()
            fw.heartbeat_timer = self.timers.every(self.config.heartbeat_interval,
                                                   lambda: self._heartbeat(fw))
            # Updates that were waiting for the framework to come back are sent now.
            for task in fw.tasks.values():
                if task.pending:
                    self._forward_head(task)
        self.timers.call_soon(self.allocate)
        return stream

    def _adopt_orphans(self, fw: Framework) -> None:
        """After a master restart that forgot frameworks, agents still run their tasks; the
        re-subscribing framework gets them back, as when agents reregister with a new
        master."""
        for agent in self.agents.values():
            for (fid, _tid), task in agent.tasks.items():
                if fid == fw.framework_id:
                    fw.tasks[task.task_id] = task

    def stream_closed(self, stream: Stream) -> None:
        """The SUBSCRIBE connection broke: the framework is disconnected (calls get 403) and
        removed after its failover_timeout unless it subscribes again."""
        with self.lock:
            stream.close()
            fw = self.frameworks.get(stream.framework_id)
            if fw is None or fw.stream is not stream:
                return
            self._disconnect(fw)

    def _disconnect(self, fw: Framework) -> None:
        fw.connected = False
        fw.active = False
        fw.unregistered_time = time.time()
        if fw.heartbeat_timer:
            fw.heartbeat_timer.cancel()
            fw.heartbeat_timer = None
        for offer_id in list(fw.offers):
            self._remove_offer(offer_id, rescind=False)
        timeout = fw.failover_timeout
        if self.config.failover_timeout_cap is not None:
            timeout = min(timeout, self.config.failover_timeout_cap)
        fid = fw.framework_id
        fw.removal_timer = self.timers.call_later(timeout, lambda: self._failover_expired(fid))

    def _failover_expired(self, framework_id: str) -> None:
        with self.lock:
            fw = self.frameworks.get(framework_id)
            if fw is not None and not fw.connected:
                log.info("framework failover timeout expired", framework_id=framework_id)
                self.remove_framework(fw)

    def remove_framework(self, fw: Framework) -> None:
        with self.lock:
            for task in list(fw.tasks.values()) + list(fw.unreachable_tasks.values()):
                agent = self.agents.get(task.agent_id)
                if task.state not in TERMINAL_STATES and agent is not None \
                        and agent.state == "active":
                    agent.runtime.kill(task, 0.0, killing_state=False)
                self._set_state(task, self._master_status(
                    fw, task, "TASK_KILLED", f"Framework {fw.framework_id} removed",
                    "REASON_FRAMEWORK_REMOVED"))
                self._release(task)
                self._complete(fw, task)
            fw.unreachable_tasks.clear()
            for offer_id in list(fw.offers):
                self._remove_offer(offer_id, rescind=False)
            if fw.heartbeat_timer:
                fw.heartbeat_timer.cancel()
            if fw.removal_timer:
                fw.removal_timer.cancel()
            fw.connected = fw.active = False
            if fw.stream:
                fw.stream.close()
            self.frameworks.pop(fw.framework_id, None)
            self.removed_frameworks[fw.framework_id] = fw

    # --- calls (validated by the HTTP layer) -----------------------------------------------
    def framework_for_call(self, framework_id: str, stream_id: str | None) -> Framework:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            raise ApiError(400, "Framework cannot be found")
        if not fw.connected:
            raise ApiError(403, "Framework is not subscribed")
        if stream_id is None:
            raise ApiError(400, "All non-subscribe calls should include the 'Mesos-Stream-Id' "
                                "header")
        if fw.stream is None or stream_id != fw.stream.stream_id:
            raise ApiError(400, f"The stream ID '{stream_id}' included in this request didn't "
                                f"match the stream ID currently associated with framework ID "
                                f"{framework_id}")
        return fw

    def handle_call(self, call: dict[str, Any], stream_id: str | None) -> None:
        with self.lock:
            fw = self.framework_for_call(call["framework_id"]["value"], stream_id)
            kind = call["type"]
            if kind == "TEARDOWN":
                self.remove_framework(fw)
            elif kind == "ACCEPT":
                self.accept(fw, call["accept"])
            elif kind == "DECLINE":
                self.decline(fw, call["decline"])
            elif kind == "REVIVE":
                self.revive(fw, (call.get("revive") or {}).get("roles") or [])
            elif kind == "SUPPRESS":
                self.suppress(fw, (call.get("suppress") or {}).get("roles") or [])
            elif kind == "KILL":
                self.kill(fw, call["kill"])
            elif kind == "ACKNOWLEDGE":
                self.acknowledge(fw, call["acknowledge"])
            elif kind == "RECONCILE":
                self.reconcile(fw, call["reconcile"].get("tasks") or [])
            elif kind == "SHUTDOWN":
                pass  # custom executors are not supported; nothing to shut down
            # MESSAGE, REQUEST, ACCEPT/DECLINE_INVERSE_OFFERS: accepted, nothing to do.

    # --- offers ----------------------------------------------------------------------------
    def allocate(self) -> None:
        with self.lock:
            frameworks = [fw for fw in self.frameworks.values() if fw.connected and fw.active]
            if not frameworks:
                return
            now = time.monotonic()
            batches: dict[str, list[dict[str, Any]]] = {}
            rotation = self._offer_seq
            for agent in self.agents.values():
                if agent.state != "active":
                    continue
                if not agent.has_available:
                    continue
                available = agent.available
                has_gpus = agent.total.get("gpus") > 0
                for i in range(len(frameworks)):
                    fw = frameworks[(rotation + i) % len(frameworks)]
                    if has_gpus and "GPU_RESOURCES" not in fw.capabilities:
                        # Mesos' default (--filter_gpu_resources): agents with GPUs are kept
                        # for frameworks that declare they can use them.
                        continue
                    role = next((r for r in fw.roles if r not in fw.suppressed
                                 and not self._filtered(fw, r, agent.agent_id, available, now)),
                                None)
                    if role is None:
                        continue
                    offer = self._make_offer(fw, agent, role, available)
                    batches.setdefault(fw.framework_id, []).append(offer)
                    break
            for fid, offers in batches.items():
                self._send(self.frameworks[fid], {"type": "OFFERS", "offers": {"offers": offers}})

    def _filtered(self, fw: Framework, role: str, agent_id: str, available: Resources,
                  now: float) -> bool:
        entries = [(r, t) for r, t in fw.filters.get((role, agent_id), []) if t > now]
        if entries:
            fw.filters[(role, agent_id)] = entries
        else:
            fw.filters.pop((role, agent_id), None)
        # Mesos refuses offers of resources that the declined ones contain (a superset is
        # offered again).
        return any(declined.contains(available) for declined, _ in entries)

    def _make_offer(self, fw: Framework, agent: Agent, role: str,
                    resources: Resources) -> dict[str, Any]:
        offer_id = f"{self.master_id}-O{self._offer_seq}"
        self._offer_seq += 1
        offer = Offer(offer_id, fw.framework_id, agent.agent_id, role, resources)
        self.offers[offer_id] = offer
        fw.offers.add(offer_id)
        agent.offered = agent.offered + resources
        if self.config.offer_timeout is not None:
            offer.timer = self.timers.call_later(
                self.config.offer_timeout, lambda: self._rescind_expired(offer_id))
        multi_role = "MULTI_ROLE" in fw.capabilities
        body: dict[str, Any] = {
            "id": {"value": offer_id},
            "framework_id": {"value": fw.framework_id},
            "agent_id": {"value": agent.agent_id},
            "hostname": agent.hostname,
            "url": {"scheme": "http",
                    "address": {"hostname": agent.hostname, "ip": self.config.host,
                                "port": agent.port},
                    "path": f"/{agent.pid_name}"},
            "resources": resources.to_json(
                allocation_role=role if multi_role else None,
                refinement="RESERVATION_REFINEMENT" in fw.capabilities),
            "attributes": agent.attributes,
        }
        if multi_role:
            body["allocation_info"] = {"role": role}
        return body

    def _remove_offer(self, offer_id: str, *, rescind: bool) -> Offer | None:
        offer = self.offers.pop(offer_id, None)
        if offer is None:
            return None
        if offer.timer:
            offer.timer.cancel()
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offered = agent.offered - offer.resources
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer_id)
            if rescind:
                self._send(fw, {"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}})
        return offer

    def _rescind_expired(self, offer_id: str) -> None:
        self.rescind_offer(offer_id)

    def rescind_offer(self, offer_id: str) -> bool:
        with self.lock:
            return self._remove_offer(offer_id, rescind=True) is not None

    def _add_filter(self, fw: Framework, role: str, agent_id: str, resources: Resources,
                    filters: dict[str, Any] | None) -> None:
        refuse = self.config.default_refuse_seconds
        if filters and "refuse_seconds" in filters:
            refuse = float(filters["refuse_seconds"])
        if refuse > 0 and not resources.empty:
            fw.filters.setdefault((role, agent_id), []).append(
                (resources, time.monotonic() + refuse))

    def decline(self, fw: Framework, decline: dict[str, Any]) -> None:
        for oid in decline.get("offer_ids") or []:
            offer_id = oid.get("value")
            offer = self.offers.get(offer_id)
            if offer is None or offer.framework_id != fw.framework_id:
                continue
            self._remove_offer(offer_id, rescind=False)
            self._add_filter(fw, offer.role, offer.agent_id, offer.resources,
                             decline.get("filters"))

    @staticmethod
    def _roles_dropped(fw: Framework, roles: list[str], what: str) -> bool:
        """Mesos drops a whole REVIVE or SUPPRESS (still answered 202) if one of its roles
        is invalid or not one the framework subscribed with."""
        for role in roles:
            error = validate_role(role)
            if error is None and role in fw.roles:
                continue
            log.warning(f"dropping {what} call", framework_id=fw.framework_id, role=role,
                        error=error or "not one of the framework's subscribed roles")
            return True
        return False

    def revive(self, fw: Framework, roles: list[str]) -> None:
        if self._roles_dropped(fw, roles, "REVIVE"):
            return
        targets = set(roles) if roles else set(fw.roles)
        fw.suppressed -= targets
        for key in [k for k in fw.filters if k[0] in targets]:
            del fw.filters[key]
        self.timers.call_soon(self.allocate)

    def suppress(self, fw: Framework, roles: list[str]) -> None:
        if self._roles_dropped(fw, roles, "SUPPRESS"):
            return
        fw.suppressed |= set(roles) if roles else set(fw.roles)

    def _validate_offers(self, fw: Framework, offer_ids: list[str]) -> str | None:
        if not offer_ids:
            return "No offers specified"
        if len(set(offer_ids)) != len(offer_ids):
            return "Duplicate offers in an ACCEPT call"
        agent_id = None
        for offer_id in offer_ids:
            offer = self.offers.get(offer_id)
            if offer is None:
                return f"Offer {offer_id} is no longer valid"
            if offer.framework_id != fw.framework_id:
                return (f"Offer {offer_id} has invalid framework {offer.framework_id} while "
                        f"framework {fw.framework_id} is expected")
            if agent_id is not None and offer.agent_id != agent_id:
                return "Aggregated offers must belong to one single agent"
            agent_id = offer.agent_id
        return None

    def accept(self, fw: Framework, accept: dict[str, Any]) -> None:
        offer_ids = [o.get("value") for o in accept.get("offer_ids") or []]
        operations = accept.get("operations") or []
        error = self._validate_offers(fw, offer_ids)
        if error is not None:
            for offer_id in offer_ids:
                offer = self.offers.get(offer_id)
                if offer is not None and offer.framework_id == fw.framework_id:
                    self._remove_offer(offer_id, rescind=False)
            state = "TASK_DROPPED" if fw.partition_aware else "TASK_LOST"
            for op in operations:
                for info in self._launch_infos(op):
                    self._send_master_update(fw, info, state,
                                             f"Task launched with invalid offers: {error}",
                                             "REASON_INVALID_OFFERS")
            return
        offers = [self._remove_offer(oid, rescind=False) for oid in offer_ids]
        agent = self.agents[offers[0].agent_id]  # type: ignore[union-attr]
        role = offers[0].role  # type: ignore[union-attr]
        remaining = Resources()
        for offer in offers:
            remaining = remaining + offer.resources  # type: ignore[union-attr]
        for op in operations:
            kind = op.get("type")
            if kind == "LAUNCH":
                for info in op.get("launch", {}).get("task_infos") or []:
                    remaining = self._launch(fw, agent, role, info, remaining)
            elif kind == "LAUNCH_GROUP":
                for info in self._launch_infos(op):
                    self._send_master_update(
                        fw, info, "TASK_ERROR",
                        "LAUNCH_GROUP is not supported by this embedded Mesos (no default "
                        "executor)", "REASON_TASK_GROUP_INVALID")
            else:
                log.warning("refusing unsupported offer operation", type=kind,
                            framework_id=fw.framework_id)
        # What the framework did not use goes back, filtered for refuse_seconds.
        self._add_filter(fw, role, agent.agent_id, remaining, accept.get("filters"))

    @staticmethod
    def _launch_infos(op: dict[str, Any]) -> list[dict[str, Any]]:
        if op.get("type") == "LAUNCH":
            return list((op.get("launch") or {}).get("task_infos") or [])
        if op.get("type") == "LAUNCH_GROUP":
            group = (op.get("launch_group") or {}).get("task_group") or {}
            return list(group.get("tasks") or [])
        return []

    def _validate_task(self, fw: Framework, agent: Agent, role: str, info: dict[str, Any],
                       available: Resources) -> tuple[str | None, Resources]:
        """Mesos' task validation, in its order (validation.cpp: validateTask, then
        validateExecutor): the first error found, or the resources the task needs."""
        task_id = (info.get("task_id") or {}).get("value", "")
        error = validate_id(task_id)
        if error:
            return f"Task has an invalid TaskID: {error}", Resources()
        if task_id in fw.tasks:
            return f"Task has duplicate ID: {task_id}", Resources()
        if task_id in fw.unreachable_tasks:
            return f"Task reuses the ID of an unreachable task: {task_id}", Resources()
        agent_id = (info.get("agent_id") or {}).get("value")
        if agent_id != agent.agent_id:
            return (f"Task uses invalid agent {agent_id} while agent {agent.agent_id} is "
                    "expected"), Resources()
        grace = (((info.get("kill_policy") or {}).get("grace_period") or {})
                 .get("nanoseconds", 0))
        if grace < 0:
            return "Task's 'kill_policy.grace_period' must be non-negative", Resources()
        mct = (info.get("max_completion_time") or {}).get("nanoseconds", 0)
        if mct < 0:
            return "Task's `max_completion_time` must be non-negative", Resources()
        if not info.get("resources"):
            return "Task uses no resources", Resources()
        try:
            wanted = Resources.from_json(info.get("resources"))
        except ResourceError as exc:
            return f"Task uses invalid resources: {exc}", Resources()
        if ("executor" in info) == ("command" in info):
            return ("Task should have at least one (but not both) of CommandInfo or "
                    "ExecutorInfo present"), Resources()
        if "executor" in info:
            return "Custom executors are not supported by this embedded Mesos", Resources()
        if not available.contains(wanted):
            return (f"Total resources {wanted.allocated_string(role)} required by task and "
                    f"its executor is more than available "
                    f"{available.allocated_string(role)}"), Resources()
        return None, wanted

    def _launch(self, fw: Framework, agent: Agent, role: str, info: dict[str, Any],
                available: Resources) -> Resources:
        error, wanted = self._validate_task(fw, agent, role, info, available)
        if error is not None:
            self._send_master_update(fw, info, "TASK_ERROR", error, "REASON_TASK_INVALID")
            return available
        task = Task(info["task_id"]["value"], str(info.get("name", "")), fw.framework_id,
                    agent.agent_id, wanted, info, role)
        task.statuses.append({"state": "TASK_STAGING", "timestamp": time.time()})
        fw.tasks[task.task_id] = task
        agent.tasks[(fw.framework_id, task.task_id)] = task
        agent.used = agent.used + wanted
        self.all_tasks[(fw.framework_id, task.task_id)] = task
        if self.fail_launches > 0:
            self.fail_launches -= 1
            self.timers.call_soon(lambda: self.agent_update(
                agent.agent_id, fw.framework_id, task.task_id, "TASK_FAILED",
                message="Failed to launch container: injected launch failure",
                reason="REASON_CONTAINER_LAUNCH_FAILED", source="SOURCE_AGENT"))
        else:
            agent.runtime.launch(task)
        return available - wanted

    # --- status updates --------------------------------------------------------------------
    def _master_status(self, fw: Framework, task: Task | None, state: str, message: str,
                       reason: str, *, info: dict[str, Any] | None = None,
                       agent_id: str | None = None,
                       unreachable_time: float | None = None,
                       container_status: dict[str, Any] | None = None) -> dict[str, Any]:
        """An update the master makes itself: no uuid (no ack expected) and, for command
        tasks, no executor_id (the master's Task has none; only the executor sets it)."""
        if state in PARTITION_AWARE_STATES and not fw.partition_aware:
            state = "TASK_LOST"
        status: dict[str, Any] = {
            "task_id": {"value": task.task_id if task else info["task_id"]["value"]},  # type: ignore[index]
            "state": state,
            "source": "SOURCE_MASTER",
            "message": message,
            "reason": reason,
            "timestamp": time.time(),
        }
        aid = task.agent_id if task else agent_id
        if aid:
            status["agent_id"] = {"value": aid}
        if container_status is not None:
            status["container_status"] = container_status
        if unreachable_time is not None:
            status["unreachable_time"] = {"nanoseconds": int(unreachable_time * 1e9)}
        return status

    def _send_master_update(self, fw: Framework, info: dict[str, Any], state: str,
                            message: str, reason: str) -> None:
        agent_id = (info.get("agent_id") or {}).get("value")
        status = self._master_status(fw, None, state, message, reason, info=info,
                                     agent_id=agent_id)
        self._send(fw, {"type": "UPDATE", "update": {"status": status}})

    def _set_state(self, task: Task, status: dict[str, Any]) -> None:
        task.state = str(status["state"])
        self._add_status(task.statuses, status)

    @staticmethod
    def _add_status(statuses: list[dict[str, Any]], status: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"state": status["state"], "timestamp": status["timestamp"]}
        if "container_status" in status:
            entry["container_status"] = status["container_status"]
        # Like Mesos' updateTask (master) and updateTaskState (agent): a repeated state
        # replaces the previous entry.
        if statuses and statuses[-1]["state"] == entry["state"]:
            statuses.pop()
        statuses.append(entry)

    def _container_status(self, task: Task, extra: dict[str, Any] | None) -> dict[str, Any]:
        """What the agent merges into an executor's update from its containerizer: the
        container id, the executor's pid when there is a process, and the agent's IP as the
        container's network when the container has no network of its own."""
        if extra and "executor_pid" in extra:
            task.executor_pid = int(extra["executor_pid"])
        status: dict[str, Any] = {"container_id": {"value": task.container_id}}
        if task.executor_pid is not None:
            status["executor_pid"] = task.executor_pid
        # The JSON writer (stout's protobuf.hpp) writes an unset field that has a declared
        # default; IPAddress.protocol defaults to IPv4.
        address = {"protocol": "IPv6" if ":" in self.config.host else "IPv4",
                   "ip_address": self.config.host}
        status["network_infos"] = [{"ip_addresses": [address]}]
        return status

    def agent_update(self, agent_id: str, framework_id: str, task_id: str, state: str, *,
                     message: str | None = None, reason: str | None = None,
                     source: str = "SOURCE_EXECUTOR",
                     container_status: dict[str, Any] | None = None) -> None:
        """A task's state change reported by its agent: recorded, then delivered reliably."""
        with self.lock:
            agent = self.agents.get(agent_id)
            task = agent.tasks.get((framework_id, task_id)) if agent else None
            if agent is None or task is None or agent.state == "gone":
                return
            if task.agent_state in TERMINAL_STATES:
                return  # an agent never changes a terminal state
            fw = self.frameworks.get(framework_id)
            status: dict[str, Any] = {
                "task_id": {"value": task_id},
                "state": state,
                "source": source,
                "agent_id": {"value": agent_id},
                "executor_id": {"value": task.executor_id},
                "timestamp": time.time(),
                "uuid": new_uuid_bytes(),
            }
            if message is not None:
                status["message"] = message
            if reason is not None:
                status["reason"] = reason
            if source == "SOURCE_EXECUTOR":
                status["container_status"] = self._container_status(task, container_status)
            task.agent_state = state
            self._add_status(task.agent_statuses, status)
            if state in TERMINAL_STATES:
                self._release(task)
            if agent.state == "unreachable":
                # The master hears nothing from a partitioned agent; the agent keeps the
                # update and sends it when it reregisters.
                task.held.append(status)
                return
            self._set_state(task, status)
            task.pending.append(status)
            if len(task.pending) == 1 and fw is not None:
                self._forward_head(task)

    def _release(self, task: Task) -> None:
        if task.resources_released:
            return
        task.resources_released = True
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.used = agent.used - task.resources

    def _forward_head(self, task: Task) -> None:
        fw = self.frameworks.get(task.framework_id)
        if fw is None or not task.pending:
            return
        status = task.pending[0]
        if task.retry_interval == 0:
            task.retry_interval = self.config.status_update_retry_min
        # A plain heap entry, not a timer: an acknowledged update's entry is just skipped
        # when it comes due, so the ack path cancels nothing.
        heapq.heappush(self._retries, (time.monotonic() + task.retry_interval,
                                       next(self._retry_seq), task, status))
        if self.drop_updates > 0:
            self.drop_updates -= 1
            return
        event = {"type": "UPDATE", "update": {"status": status}}
        if self.update_delay > 0:
            delay = self.update_delay
            self.timers.call_later(delay, lambda: self._send_locked(fw, event))
            if self.duplicate_updates:
                self._send(fw, event)
            return
        cached = task.head_record
        if cached is None or cached[0] is not status:
            cached = task.head_record = (status, recordio(event))
        self._send(fw, event, cached[1])
        if self.duplicate_updates:
            self._send(fw, event, cached[1])

    def _send_locked(self, fw: Framework, event: dict[str, Any]) -> None:
        with self.lock:
            self._send(fw, event)

    def _resend_due(self) -> None:
        """Resend every forwarded update whose retry time has come and that is still its
        task's unacknowledged head, doubling its interval up to the maximum."""
        with self.lock:
            now = time.monotonic()
            retries = self._retries
            while retries and retries[0][0] <= now:
                _, _, task, status = heapq.heappop(retries)
                if task.pending and task.pending[0] is status:
                    task.retry_interval = min(task.retry_interval * 2,
                                              self.config.status_update_retry_max)
                    self._forward_head(task)

    def acknowledge(self, fw: Framework, ack: dict[str, Any]) -> None:
        task_id = (ack.get("task_id") or {}).get("value")
        task = fw.tasks.get(task_id) if task_id else None
        if task is None or not task.pending:
            return
        if task.pending[0].get("uuid") != ack.get("uuid"):
            return  # an old or duplicate acknowledgement
        task.pending.popleft()
        task.head_record = None
        task.retry_interval = 0
        if task.pending:
            self._forward_head(task)
        elif task.state in TERMINAL_STATES:
            self._complete(fw, task)

    def _complete(self, fw: Framework, task: Task) -> None:
        fw.tasks.pop(task.task_id, None)
        fw.unreachable_tasks.pop(task.task_id, None)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.pop((fw.framework_id, task.task_id), None)
        fw.completed_tasks.append(task)

    # --- kill and reconcile ----------------------------------------------------------------
    def kill(self, fw: Framework, kill: dict[str, Any]) -> None:
        task_id = (kill.get("task_id") or {}).get("value", "")
        agent_id = (kill.get("agent_id") or {}).get("value")
        task = fw.tasks.get(task_id)
        if task is None:
            entry: dict[str, Any] = {"task_id": {"value": task_id}}
            if agent_id:
                entry["agent_id"] = {"value": agent_id}
            self.reconcile(fw, [entry])
            return
        if agent_id and agent_id != task.agent_id:
            return
        agent = self.agents[task.agent_id]
        if agent.state != "active" or task.state in TERMINAL_STATES:
            return
        grace = self._grace(kill.get("kill_policy") or task.info.get("kill_policy"))
        agent.runtime.kill(task, grace, killing_state="TASK_KILLING_STATE" in fw.capabilities)

    @staticmethod
    def _grace(policy: dict[str, Any] | None) -> float:
        nanos = ((policy or {}).get("grace_period") or {}).get("nanoseconds")
        return DEFAULT_KILL_GRACE_SECONDS if nanos is None else max(0.0, nanos / 1e9)

    def reconcile(self, fw: Framework, tasks: list[dict[str, Any]]) -> None:
        if not tasks:
            for task in list(fw.tasks.values()):
                self._send(fw, {"type": "UPDATE", "update": {"status": self._reconcile_status(
                    fw, task, task.status_update_state,
                    "Reconciliation: Latest task state")}})
            return
        for entry in tasks:
            task_id = (entry.get("task_id") or {}).get("value", "")
            agent_id = (entry.get("agent_id") or {}).get("value")
            known = fw.tasks.get(task_id)
            if known is not None:
                status = self._reconcile_status(fw, known, known.status_update_state,
                                                "Reconciliation: Latest task state")
            else:
                agent = self.agents.get(agent_id) if agent_id else None
                if agent is not None and agent.state == "active":
                    state, message, when = ("TASK_GONE",
                                            "Reconciliation: Task is unknown to the agent", None)
                elif agent is not None and agent.state == "unreachable":
                    state, message, when = ("TASK_UNREACHABLE",
                                            "Reconciliation: Task is unreachable",
                                            agent.unreachable_time)
                elif agent is not None and agent.state == "gone":
                    state, message, when = ("TASK_GONE_BY_OPERATOR",
                                            "Reconciliation: Task is gone", None)
                else:
                    state, message, when = ("TASK_UNKNOWN", "Reconciliation: Task is unknown",
                                            None)
                status = self._master_status(fw, None, state, message,
                                             "REASON_RECONCILIATION",
                                             info={"task_id": {"value": task_id}},
                                             agent_id=agent_id, unreachable_time=when)
            self._send(fw, {"type": "UPDATE", "update": {"status": status}})

    def _reconcile_status(self, fw: Framework, task: Task, state: str,
                          message: str) -> dict[str, Any]:
        status = self._master_status(fw, task, state, message, "REASON_RECONCILIATION",
                                     container_status=task.latest_container_status)
        status["state"] = state  # the task's own state is reported as it is
        return status

    # --- faults ----------------------------------------------------------------------------
    def remove_agent(self, agent_id: str) -> None:
        """The agent is gone for good (marked gone by an operator, machine lost)."""
        with self.lock:
            agent = self.agents[agent_id]
            if agent.state == "gone":
                return
            was_unreachable = agent.state == "unreachable"
            agent.state = "gone"
            self._drop_agent_offers(agent)
            for (fid, _tid), task in list(agent.tasks.items()):
                fw = self.frameworks.get(fid)
                if fw is None or (was_unreachable and task.task_id not in fw.unreachable_tasks):
                    continue
                status = self._master_status(
                    fw, task, "TASK_GONE_BY_OPERATOR", "Agent has been marked gone",
                    "REASON_AGENT_REMOVED_BY_OPERATOR" if fw.partition_aware
                    else "REASON_AGENT_REMOVED")
                self._set_state(task, status)
                self._release(task)
                self._complete(fw, task)
                self._send(fw, {"type": "UPDATE", "update": {"status": status}})
            agent.tasks.clear()
        agent.runtime.shutdown()

    def partition_agent(self, agent_id: str) -> None:
        """The agent stops answering: its tasks become unreachable (LOST for frameworks
        that are not partition-aware) while they may well go on running."""
        with self.lock:
            agent = self.agents[agent_id]
            if agent.state != "active":
                return
            agent.state = "unreachable"
            agent.unreachable_time = time.time()
            self._drop_agent_offers(agent)
            for (fid, _tid), task in list(agent.tasks.items()):
                fw = self.frameworks.get(fid)
                if fw is None or task.task_id not in fw.tasks:
                    continue
                status = self._master_status(fw, task, "TASK_UNREACHABLE",
                                             "health check timed out", "REASON_AGENT_REMOVED",
                                             unreachable_time=agent.unreachable_time)
                task.unreachable_time = agent.unreachable_time
                # Unacknowledged updates stay with the agent, which resends them once it
                # reregisters.
                task.held[:0] = task.pending
                task.pending.clear()
                task.head_record = None
                task.retry_interval = 0
                # Whether or not the framework is partition-aware (it saw TASK_LOST then),
                # the master keeps the task among its unreachable ones, as Mesos does.
                fw.tasks.pop(task.task_id)
                fw.unreachable_tasks[task.task_id] = task
                self._set_state(task, status)
                self._send(fw, {"type": "UPDATE", "update": {"status": status}})

    def heal_agent(self, agent_id: str) -> None:
        """The agent reregisters. As in Mesos 1.11, every task it still runs is the
        master's again, whether or not its framework is partition-aware: the framework
        hears the task's current state ("Unreachable agent re-reregistered",
        REASON_AGENT_REREGISTERED), then the updates the agent kept while cut off."""
        with self.lock:
            agent = self.agents[agent_id]
            if agent.state != "unreachable":
                return
            agent.state = "active"
            agent.unreachable_time = None
            for (fid, _tid), task in list(agent.tasks.items()):
                fw = self.frameworks.get(fid)
                if fw is None or task.task_id not in fw.unreachable_tasks:
                    continue
                fw.unreachable_tasks.pop(task.task_id)
                fw.tasks[task.task_id] = task
                task.unreachable_time = None
                status = self._master_status(
                    fw, task, task.agent_state, "Unreachable agent re-reregistered",
                    "REASON_AGENT_REREGISTERED", container_status=task.latest_container_status)
                status["state"] = task.agent_state  # a live state, never downgraded
                self._set_state(task, status)
                self._send(fw, {"type": "UPDATE", "update": {"status": status}})
                held, task.held = task.held, []
                task.pending.extend(held)
                if task.pending:
                    self._forward_head(task)
                elif task.state in TERMINAL_STATES:
                    self._complete(fw, task)
        self.timers.call_soon(self.allocate)

    def _drop_agent_offers(self, agent: Agent) -> None:
        for offer_id in [o.offer_id for o in self.offers.values()
                         if o.agent_id == agent.agent_id]:
            self._remove_offer(offer_id, rescind=True)

    def restart(self, forget_frameworks: bool = False) -> None:
        """A master failover: every stream is dropped; frameworks must subscribe again. With
        `forget_frameworks`, the new master knows none of them until they do (their tasks
        are re-learnt from the agents)."""
        with self.lock:
            for fw in list(self.frameworks.values()):
                if fw.stream:
                    fw.stream.close()
                if fw.connected:
                    self._disconnect(fw)
            if forget_frameworks:
                for fw in self.frameworks.values():
                    if fw.removal_timer:
                        fw.removal_timer.cancel()
                self.frameworks.clear()
            self.master_id_restarted = time.time()

    def silence_streams(self) -> None:
        """Half-open fault: every stream stays connected but carries nothing more."""
        with self.lock:
            for fw in self.frameworks.values():
                if fw.stream:
                    fw.stream.silent = True
