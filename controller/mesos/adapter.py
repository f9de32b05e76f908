"""`MesosAdapter`: the real `MesosBackend`, over pymesos' v1 HTTP scheduler driver.

This is the only module in Docket that imports pymesos. Import it from the main thread:
pymesos installs a SIGINT handler on import (we put the previous one back right away, so a
Ctrl-C stays a KeyboardInterrupt).

Threads. pymesos reads the event stream on its own thread and calls back from there; those
callbacks only time-stamp the event and put it on an inbox, never block, never raise (an
exception there kills pymesos' thread). One worker thread of ours takes the inbox and the
controller's commands and makes every call to the master, so calls are serialised and a slow
master never stalls the event stream's reader.

Connection health. pymesos does not watch heartbeats, and its thread dies (and would interrupt
the main thread) when the master stays unreachable past its timeout or answers SUBSCRIBE with
an error. The worker supervises: no event for `heartbeat_misses` heartbeat intervals, no
SUBSCRIBED within `subscribe_timeout_seconds`, or a dead driver thread, and it stops that
driver (with failover, so nothing is torn down) and starts a new one that subscribes again
with the same FrameworkID. Events of a replaced driver are ignored.

On every (re)subscription: the FrameworkID is persisted, the tasks the controller knows are
reconciled explicitly, then all tasks implicitly (orphans come back as TaskUpdates; killing
them is the controller's decision), and offers are revived or suppressed depending on what is
pending.
"""

from __future__ import annotations

import base64
import getpass
import json
import queue
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pymesos
import pymesos.process
import structlog

from controller.mesos import metrics
from controller.mesos.backend import (
    Disconnected,
    LaunchRequest,
    MesosEvent,
    Subscribed,
    TaskLaunched,
    TaskUpdate,
    docket_group,
)
from controller.mesos.offers import Offer, Placements, TaskRequest, match
from controller.mesos.taskinfo import task_info, task_request
from controller.reconcile.taskid import parse_task_id

log = structlog.get_logger("docket.mesos")


def _restore_sigint() -> None:
    previous = getattr(pymesos.process, "_prev_handler", None)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        return
    if signal.getsignal(signal.SIGINT) is getattr(pymesos.process, "_handle_sigint", None):
        signal.signal(signal.SIGINT, previous)


class _NoInterrupt:
    """Stands in for `_thread` inside pymesos.process: when its IO thread dies it calls
    `interrupt_main()`, which would raise in whatever the main thread is doing. The adapter
    notices the dead driver itself and replaces it."""

    @staticmethod
    def interrupt_main() -> None:
        return None


_restore_sigint()
pymesos.process.thread = _NoInterrupt

WEEK_SECONDS = 7 * 24 * 3600.0


# Acks one sender writes at once (HTTP/1.1 pipelining) when a backlog has built up.
ACK_PIPELINE = 256


class _AckConnection:
    """A keep-alive HTTP/1.1 connection that sends several POSTs pipelined and reads their
    answers in order. http.client cannot: each response object buffers its own reads, and
    would swallow the start of the next answer."""

    def __init__(self, master: str, timeout: float) -> None:
        self.master = master
        host, _, port = master.rpartition(":")
        self._host = master
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def post_all(self, path: str, headers: Mapping[str, str], bodies: Sequence[bytes]
                 ) -> list[tuple[int, bytes]]:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        prefix = f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\n{head}".encode()
        self._sock.sendall(b"".join(
            b"%sContent-Length: %d\r\n\r\n%s" % (prefix, len(body), body) for body in bodies))
        return [self._response() for _ in bodies]

    def _response(self) -> tuple[int, bytes]:
        line = self._reader.readline(65537)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError(f"bad response from {self.master}: {line[:100]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        while True:
            header = self._reader.readline(65537)
            if header in (b"\r\n", b"\n"):
                break
            if not header:
                raise ConnectionError(f"{self.master} closed the connection")
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            body = b""
            while (size := int(self._reader.readline(65537).split(b";")[0], 16)) > 0:
                body += self._reader.read(size)
                self._reader.readline(65537)
            while self._reader.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return status, body
        if length is None:
            if status in (202, 204, 304) or status < 200:
                return status, b""
            raise ConnectionError(f"{self.master} answered {status} without a length")
        return status, self._reader.read(length)


def _ack_body(update: TaskUpdate) -> dict[str, Any]:
    return {"acknowledge": {"agent_id": {"value": update.agent_id},
                            "task_id": {"value": update.task_id}, "uuid": update.uuid}}


def _task_log(task_id: str) -> Any:
    """The logger for lines about one task: with its object's kind, namespace and name when
    the id is one of Docket's, so every line about an object can be found by the object."""
    parts = parse_task_id(task_id)
    if parts is None:
        return log.bind(task_id=task_id)
    owner = parts.owner
    return log.bind(kind=owner.kind, namespace=owner.namespace, name=owner.name,
                    task_id=task_id)


def _attribute_text(value: Any) -> str:
    """An attribute as the master's JSON endpoints give it, rendered as in offers."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


class FrameworkIdStore(Protocol):
    """Where the FrameworkID survives restarts (the controller keeps it in etcd)."""

    def get(self) -> str | None: ...

    def set(self, framework_id: str) -> None: ...


class MemoryFrameworkIdStore:
    def __init__(self, framework_id: str | None = None) -> None:
        self.framework_id = framework_id

    def get(self) -> str | None:
        return self.framework_id

    def set(self, framework_id: str) -> None:
        self.framework_id = framework_id


@dataclass(frozen=True)
class MesosConfig:
    master: str
    """`host:port` or `http://host:port` of the master (plain HTTP: pymesos has no TLS)."""
    name: str = "docket"
    role: str | None = None
    roles: tuple[str, ...] = ()
    """Several roles: subscribes with MULTI_ROLE. Exclusive with `role`."""
    principal: str | None = None
    secret: str | None = None
    user: str | None = None
    """Unix user tasks run as; default the current user."""
    failover_timeout_seconds: float = WEEK_SECONDS
    refuse_seconds: float = 60.0
    """How long a declined offer stays away (a REVIVE brings it back when work appears)."""
    accept_refuse_seconds: float = 5.0
    call_timeout_seconds: float = 20.0
    heartbeat_misses: float = 3.0
    subscribe_timeout_seconds: float = 30.0
    reconnect_delay_seconds: float = 1.0
    reconcile_batch: int = 1000
    reconcile_interval_seconds: float = 600.0
    gpu_resources: bool = False
    """Declare GPU_RESOURCES: Mesos then offers agents that have GPUs (by default it keeps
    them from frameworks that do not declare it, so a task asking for gpus never starts)."""
    """Besides each subscription, reconcile this often (Mesos' advice: updates the master
    generates itself carry no uuid and are never resent if one is lost)."""
    agent_refresh_seconds: float = 30.0
    """At most this often, list the agents again when an update names an unknown one."""
    tick_seconds: float = 0.5
    ack_senders: int = 2
    """Threads acknowledging updates, each on its own connection to the master (0: acks go
    through the worker like every other call)."""
    revive_interval_seconds: float = 1.0
    """At most one REVIVE this often while offers are not suppressed: each one clears every
    filter and brings an offer from every agent, so reviving on each new launch made offer
    handling (parse, match, decline) most of the controller's work."""
    suppress_after_seconds: float = 2.0
    """SUPPRESS once nothing was pending this long (not at every moment the pending set
    happens to be empty, which would need a REVIVE for the next launch)."""


class _Driver(pymesos.MesosSchedulerDriver):  # type: ignore[misc]
    """pymesos' driver, with every stream event handed raw to the adapter.

    Only SUBSCRIBED still goes through pymesos (it records the FrameworkID it must send on
    every call); updates are not acknowledged implicitly because they never reach pymesos'
    own handler.
    """

    def __init__(self, adapter: MesosAdapter, generation: int, framework: dict[str, Any],
                 master: str, config: MesosConfig) -> None:
        super().__init__(_Callbacks(adapter, generation), framework, master,
                         use_addict=False, implicit_acknowledgements=False,
                         principal=config.principal, secret=config.secret,
                         failover=True, timeout=config.call_timeout_seconds)
        self._adapter = adapter
        self._generation = generation
        self._gpu_resources = config.gpu_resources

    @property
    def framework(self) -> dict[str, Any]:
        # pymesos adds GPU_RESOURCES for any Mesos >= 1.0; Docket declares it only when the
        # operator asks (Mesos keeps GPU agents for frameworks that can use them).
        info: dict[str, Any] = super().framework
        if not self._gpu_resources:
            caps = [c for c in info.get("capabilities", []) if c.get("type") != "GPU_RESOURCES"]
            info["capabilities"] = caps
        return info

    def on_event(self, event: dict[str, Any]) -> None:
        try:
            kind = str(event.get("type", "")).upper()
            if kind == "SUBSCRIBED":
                super().on_event(event)
            self._adapter._from_stream(self._generation, kind, event)
        except Exception:  # an exception here would kill pymesos' thread
            log.exception("mesos event handling failed")


class _Callbacks(pymesos.Scheduler):  # type: ignore[misc]
    def __init__(self, adapter: MesosAdapter, generation: int) -> None:
        self._adapter = adapter
        self._generation = generation

    def disconnected(self, driver: Any) -> None:
        try:
            self._adapter._from_stream(self._generation, "CLOSED", {})
        except Exception:
            log.exception("mesos disconnect handling failed")


class MesosAdapter:
    """The real `MesosBackend`. `known_tasks` returns the (task id, agent id or None) of every
    task the controller believes exists; it is called on the adapter's thread at each
    subscription and must be thread-safe."""

    def __init__(
        self,
        config: MesosConfig,
        framework_ids: FrameworkIdStore,
        known_tasks: Callable[[], Iterable[tuple[str, str | None]]] = lambda: (),
        *,
        group_of: Callable[[str], str | None] = docket_group,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._framework_ids = framework_ids
        self._known_tasks = known_tasks
        self._group_of = group_of
        self._clock = clock
        self._events: queue.Queue[MesosEvent] = queue.Queue()
        self._inbox: queue.SimpleQueue[tuple[int, str, Any]] = queue.SimpleQueue()
        # Acknowledgements are most of the calls (one per update, ~3 per task) and each is a
        # blocking HTTP round trip: sent one at a time by the worker they bounded throughput
        # and queued offers behind them. They go out on their own connections instead; the
        # order of acks does not matter to Mesos, and each is still sent only once the
        # controller asks for it (after the update is recorded).
        self._acks: queue.SimpleQueue[TaskUpdate | None] = queue.SimpleQueue()
        self._ackers: list[threading.Thread] = []
        # Read when scraped: nothing on the hot path.
        metrics.UPDATES_PENDING.set_function(self._events.qsize)
        metrics.ACKS_PENDING.set_function(self._acks.qsize)
        self._lock = threading.Lock()
        # Pending launches with what they need from an offer, worked out once at launch().
        self._pending: dict[str, tuple[LaunchRequest, TaskRequest]] = {}
        self._driver: _Driver | None = None
        self._generation = 0
        self._framework_id: str | None = None
        self._fid_saved = True
        self._connected = False
        self._suppressed = False
        self._want_revive = False
        self._last_revive = -1e18
        self._idle_since: float | None = None
        self._last_event = 0.0
        self._heartbeat_seconds: float | None = None
        self._next_reconcile = float("inf")  # set on subscription
        self._next_start = 0.0
        self._retry_delay = config.reconnect_delay_seconds
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        # Where tasks run, for constraints.
        self._placements = Placements()
        self._agents: dict[str, tuple[str, Mapping[str, str]]] = {}
        self._agents_fetched = -1e18

    # --- MesosBackend ----------------------------------------------------------------------
    @property
    def events(self) -> queue.Queue[MesosEvent]:
        return self._events

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def framework_id(self) -> str | None:
        return self._framework_id

    def start(self) -> None:
        if self._worker is not None:
            return
        self._stopping.clear()
        self._worker = threading.Thread(target=self._run, name="docket-mesos", daemon=True)
        self._worker.start()
        self._ackers = [threading.Thread(target=self._ack_loop, name=f"docket-mesos-ack-{i}",
                                         daemon=True)
                        for i in range(self.config.ack_senders)]
        for t in self._ackers:
            t.start()

    def stop(self) -> None:
        """Disconnect with failover: the framework and its tasks stay for the next instance."""
        worker = self._worker
        if worker is None:
            return
        self._stopping.set()
        self._inbox.put((0, "wake", None))
        worker.join()
        self._worker = None

    def launch(self, requests: Iterable[LaunchRequest]) -> None:
        added = 0
        invalid: list[tuple[str, str]] = []
        with self._lock:
            for req in requests:
                if req.task_id in self._pending:
                    continue
                group = req.group or self._group_of(req.task_id) or req.task_id
                try:
                    needs = task_request(req.template, req.task_id, group)
                except ValueError as exc:
                    invalid.append((req.task_id, str(exc)))
                    continue
                self._pending[req.task_id] = (req, needs)
                added += 1
            metrics.PENDING_LAUNCHES.set(len(self._pending))
        for task_id, message in invalid:
            self._launch_failed(task_id, message)
        if added:
            self._inbox.put((0, "revive", None))

    def cancel(self, task_id: str) -> bool:
        with self._lock:
            found = self._pending.pop(task_id, None) is not None
            metrics.PENDING_LAUNCHES.set(len(self._pending))
        return found

    def kill(self, task_id: str, agent_id: str | None = None,
             grace_seconds: float | None = None) -> None:
        self._inbox.put((0, "kill", (task_id, agent_id, grace_seconds)))

    def reconcile(self, known: Iterable[tuple[str, str | None]]) -> None:
        self._inbox.put((0, "reconcile", list(known)))

    def acknowledge(self, update: TaskUpdate) -> None:
        if update.uuid and update.agent_id:
            if self._ackers:
                self._acks.put(update)
            else:
                self._inbox.put((0, "ack", update))

    # --- from pymesos' thread: never block, never raise -------------------------------------
    def _from_stream(self, generation: int, kind: str, event: dict[str, Any]) -> None:
        self._inbox.put((generation, kind, event))

    # --- the worker ------------------------------------------------------------------------
    def _load_framework_id(self) -> bool:
        """Read the persisted FrameworkID, retrying until it can be read: subscribing without
        it while one exists would register a second framework and orphan every task."""
        while not self._stopping.is_set():
            try:
                self._framework_id = self._framework_ids.get() or None
                return True
            except Exception as exc:
                log.warning("cannot read the framework id; retrying", error=str(exc))
                self._stopping.wait(self.config.reconnect_delay_seconds)
        return False

    def _run(self) -> None:
        if not self._load_framework_id():
            return
        self._start_driver()
        try:
            while not self._stopping.is_set():
                try:
                    item = self._inbox.get(timeout=self.config.tick_seconds)
                except queue.Empty:
                    item = None
                while item is not None:
                    try:
                        self._handle(*item)
                    except Exception:
                        log.exception("mesos adapter step failed", kind=item[1])
                    if self._stopping.is_set():
                        break  # what is left is flushed below
                    try:
                        item = self._inbox.get_nowait()
                    except queue.Empty:
                        item = None
                try:
                    self._supervise()
                except Exception:
                    log.exception("mesos adapter supervision failed")
        finally:
            self._flush_commands()
            self._stop_ackers()
            self._stop_driver(join=True)
            self._set_connected(False, "stopped")

    def _flush_commands(self) -> None:
        """At stop: send the kills and acknowledgements already asked for (an ack lost here
        only means Mesos resends the update; a kill lost means a task runs on)."""
        while True:
            try:
                generation, kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind in ("kill", "ack"):
                try:
                    self._handle(generation, kind, payload)
                except Exception:
                    log.exception("mesos adapter step failed", kind=kind)

    def _handle(self, generation: int, kind: str, payload: Any) -> None:
        if generation and generation != self._generation:
            return  # from a driver we replaced
        if generation:
            self._last_event = self._clock()
        if kind == "SUBSCRIBED":
            self._on_subscribed(payload.get("subscribed", {}))
        elif kind == "OFFERS":
            self._on_offers(payload.get("offers", {}).get("offers", []))
        elif kind == "UPDATE":
            self._on_update(payload.get("update", {}).get("status", {}))
        elif kind == "RESCIND":
            metrics.OFFERS_RESCINDED.inc()
        elif kind == "ERROR":
            message = str(payload.get("error", {}).get("message", ""))
            log.error("mesos master reported an error", message=message)
            if not self._connected and "removed" in message.lower():
                # Our FrameworkID is dead (failover timeout passed, or torn down by an
                # operator) and so are its tasks: register anew; reconciliation of the known
                # tasks then reports them gone.
                log.error("framework removed by mesos; registering a new one",
                          framework_id=self._framework_id)
                self._framework_id = None
                self._restart("framework_removed")
        elif kind == "CLOSED":
            self._set_connected(False, "stream closed")
        elif kind == "FAILURE":
            log.warning("mesos agent or executor failure", failure=payload.get("failure"))
        elif kind == "revive":
            self._want_revive = True
        elif kind == "kill":
            self._send_kill(*payload)
        elif kind == "reconcile":
            self._send_reconcile(payload)
        elif kind == "ack":
            self._send_ack(payload)

    def _supervise(self) -> None:
        now = self._clock()
        driver = self._driver
        if not self._fid_saved and self._framework_id:
            self._save_framework_id()
        if driver is None:
            if not self._stopping.is_set() and now >= self._next_start:
                self._start_driver()
            return
        if driver.aborted:
            # Its thread gave up (master unreachable past the call timeout, or SUBSCRIBE
            # refused): start another after a growing delay rather than spin.
            self._restart("driver_died", wait=True)
        elif self._connected and self._heartbeat_seconds:
            if now - self._last_event > self._heartbeat_seconds * self.config.heartbeat_misses:
                self._restart("heartbeat")
        elif not self._connected and \
                now - self._last_event > self.config.subscribe_timeout_seconds:
            # Reconnect attempts by pymesos count as events; this is a silence, e.g. a
            # SUBSCRIBE that was never answered.
            self._restart("subscribe_timeout")
        driver = self._driver
        if driver is None:
            return
        if self._connected and now >= self._next_reconcile:
            self._reconcile_all()
        if self._connected:
            with self._lock:
                pending = bool(self._pending)
            if pending:
                self._idle_since = None
                # Suppressed: no offer comes at all, revive at once. Otherwise offers keep
                # coming (declined agents return after refuse_seconds): coalesce the wish.
                due = now - self._last_revive >= self.config.revive_interval_seconds
                if (self._suppressed or (self._want_revive and due)) and \
                        self._scheduler_call("REVIVE", {}):
                    self._suppressed = False
                    self._want_revive = False
                    self._last_revive = now
                    metrics.SUPPRESSED.set(0)
            else:
                self._want_revive = False
                if self._idle_since is None:
                    self._idle_since = now
                if (not self._suppressed
                        and now - self._idle_since >= self.config.suppress_after_seconds
                        and self._scheduler_call("SUPPRESS", {})):
                    self._suppressed = True
                    metrics.SUPPRESSED.set(1)

    # --- driver lifecycle ------------------------------------------------------------------
    def _framework_info(self) -> dict[str, Any]:
        c = self.config
        caps = [{"type": "PARTITION_AWARE"}, {"type": "TASK_KILLING_STATE"}]
        info: dict[str, Any] = {
            "name": c.name,
            "user": c.user or getpass.getuser(),
            "checkpoint": True,
            "failover_timeout": c.failover_timeout_seconds,
        }
        if c.roles:
            info["roles"] = list(c.roles)
            caps.append({"type": "MULTI_ROLE"})
        elif c.role:
            info["role"] = c.role
        if c.principal:
            info["principal"] = c.principal
        if c.gpu_resources:
            caps.append({"type": "GPU_RESOURCES"})
        info["capabilities"] = caps
        if self._framework_id:
            info["id"] = {"value": self._framework_id}
        return info

    def _start_driver(self) -> None:
        self._generation += 1
        master = self.config.master
        for prefix in ("http://", "https://"):
            if master.startswith(prefix):
                master = master[len(prefix):].rstrip("/")
        driver = _Driver(self, self._generation, self._framework_info(), master, self.config)
        self._driver = driver
        self._last_event = self._clock()
        self._heartbeat_seconds = None
        try:
            driver.start()
        except Exception:
            log.exception("mesos driver failed to start")

    def _stop_driver(self, join: bool) -> None:
        driver, self._driver = self._driver, None
        if driver is None:
            return
        try:
            driver.stop(failover=True)  # never TEARDOWN: the tasks must outlive us
            thread = getattr(driver, "_io_thread", None)
            if join and thread is not None:
                # Bounded: the thread may sleep in pymesos' connect backoff (up to 15 s).
                thread.join(timeout=5.0)
        except Exception:
            log.exception("mesos driver failed to stop")

    def _restart(self, reason: str, wait: bool = False) -> None:
        log.warning("reconnecting to mesos", reason=reason)
        metrics.RECONNECTS.labels(reason).inc()
        self._set_connected(False, reason)
        # The old driver's thread may be asleep in a connect backoff; its events are ignored
        # from now on (new generation), so there is no need to wait for it.
        self._stop_driver(join=False)
        if wait:
            self._next_start = self._clock() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, 30.0)
        else:
            self._start_driver()

    def _set_connected(self, connected: bool, reason: str = "") -> None:
        was, self._connected = self._connected, connected
        metrics.CONNECTED.set(1 if connected else 0)
        if was and not connected:
            log.warning("disconnected from mesos", reason=reason)
            self._events.put(Disconnected(reason))

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> bool:
        try:
            fn(*args, **kw)
            return True
        except Exception as exc:
            log.warning("mesos call failed", call=what, error=str(exc))
            return False

    def _save_framework_id(self) -> None:
        assert self._framework_id is not None
        try:
            if self._framework_ids.get() != self._framework_id:
                self._framework_ids.set(self._framework_id)
            self._fid_saved = True
        except Exception as exc:
            self._fid_saved = False
            log.warning("could not persist the framework id; will retry", error=str(exc))

    # --- events ----------------------------------------------------------------------------
    def _reconcile_all(self) -> None:
        """Explicitly the tasks our records say may exist, then implicitly all of Mesos'."""
        try:
            known = list(self._known_tasks())
        except Exception:
            log.exception("could not list known tasks for reconciliation")
            known = []
        if known:
            self._send_reconcile(known)
        self._send_reconcile([])  # implicit: every task Mesos has for us, orphans included
        self._next_reconcile = self._clock() + self.config.reconcile_interval_seconds
        metrics.RECONCILIATIONS.inc()

    def _on_subscribed(self, info: Mapping[str, Any]) -> None:
        fid = str(info.get("framework_id", {}).get("value", ""))
        interval = info.get("heartbeat_interval_seconds")
        self._heartbeat_seconds = float(interval) if interval else None
        self._framework_id = fid
        self._save_framework_id()
        self._connected = True
        self._retry_delay = self.config.reconnect_delay_seconds
        metrics.CONNECTED.set(1)
        metrics.SUBSCRIPTIONS.inc()
        log.info("subscribed to mesos", framework_id=fid, heartbeat=self._heartbeat_seconds)
        self._events.put(Subscribed(fid))
        # Before reconciling: the answers name agents, and constraints need the hostname and
        # attributes of the agents our running tasks are on, offers or not.
        self._refresh_agents()
        self._reconcile_all()
        # Offers of the previous connection are gone; the suppression state is unknown.
        self._suppressed = False
        self._want_revive = True
        self._last_revive = -1e18

    def _on_update(self, status: Mapping[str, Any]) -> None:
        if "task_id" not in status:
            return
        agent_id = (status.get("agent_id") or {}).get("value")
        task_id = str(status["task_id"]["value"])
        placement = self._placements.get(task_id)
        hostname = placement[1][0] if placement else None
        if hostname is None and agent_id in self._agents:
            hostname = self._agents[agent_id][0]
        if hostname is None and agent_id and agent_id not in self._agents:
            self._refresh_agents(min_interval=self.config.agent_refresh_seconds)
            if agent_id in self._agents:
                hostname = self._agents[agent_id][0]
        update = TaskUpdate.from_status(status, hostname)
        metrics.STATUS_UPDATES.labels(update.state).inc()
        if update.terminal or update.state == "TASK_UNKNOWN":
            self._placements.remove(task_id)
        elif placement is None and agent_id in self._agents:
            group = self._group_of(task_id)
            if group is not None:
                host, attrs = self._agents[agent_id]
                self._placements.add(task_id, group, host, attrs)
        _task_log(task_id).debug("task update", state=update.state, reason=update.reason)
        self._events.put(update)

    def _on_offers(self, raw_offers: Sequence[Mapping[str, Any]]) -> None:
        driver = self._driver
        if driver is None:
            return
        metrics.OFFERS_RECEIVED.inc(len(raw_offers))
        offers = []
        for raw in raw_offers:
            try:
                offer = Offer.parse(raw)
            except (KeyError, TypeError, ValueError):
                log.warning("unreadable offer declined", offer=raw.get("id"))
                continue
            offers.append(offer)
            self._agents[offer.agent_id] = (offer.hostname, offer.attributes)
        with self._lock:
            requests = [needs for _, needs in self._pending.values()]
            constrained = {needs.group for needs in requests if needs.constraints}
            result = match(offers, requests, self._placements.of_groups(constrained))
            templates = {a.task_id: self._pending.pop(a.task_id)[0] for a in result.assignments}
            metrics.PENDING_LAUNCHES.set(len(self._pending))
        filters = {"refuse_seconds": self.config.accept_refuse_seconds}
        declined: list[dict[str, str]] = []
        for offer_id, assignments in result.by_offer.items():
            infos = []
            for a in assignments:
                req = templates[a.task_id]
                try:
                    infos.append(task_info(req.template, a, name=req.name,
                                           extra_env=req.extra_env,
                                           max_completion_seconds=req.max_completion_seconds))
                except ValueError as exc:
                    self._launch_failed(a.task_id, str(exc))
            if not infos:
                declined.append({"value": offer_id})
                continue
            ok = self._scheduler_call("ACCEPT", {"accept": {
                "offer_ids": [{"value": offer_id}],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": infos}}],
                "filters": filters,
            }})
            if not ok:
                # Mesos may or may not have them: ask, and let the answer decide.
                metrics.LAUNCH_ERRORS.inc(len(infos))
                self._send_reconcile([(i["task_id"]["value"], i["agent_id"]["value"])
                                      for i in infos])
                continue
            metrics.OFFERS_USED.inc()
            metrics.TASKS_LAUNCHED.inc(len(infos))
            launched = {i["task_id"]["value"] for i in infos}
            for a in assignments:
                if a.task_id not in launched:
                    continue
                group = a.request.group
                self._placements.add(a.task_id, group, a.offer.hostname, a.offer.attributes)
                _task_log(a.task_id).info("task launched", agent_id=a.offer.agent_id,
                         hostname=a.offer.hostname)
                self._events.put(TaskLaunched(a.task_id, a.offer.agent_id, a.offer.hostname,
                                              offer_id, a.ports))
        unused = [{"value": o.id} for o in result.unused]
        parsed = {o.id for o in offers}
        unreadable = [{"value": str(r["id"]["value"])} for r in raw_offers
                      if "value" in (r.get("id") or {}) and str(r["id"]["value"]) not in parsed]
        declined += unused + unreadable
        if declined:
            metrics.OFFERS_DECLINED.inc(len(declined))
            self._scheduler_call("DECLINE", {"decline": {
                "offer_ids": declined,
                "filters": {"refuse_seconds": self.config.refuse_seconds},
            }})

    def _refresh_agents(self, min_interval: float = 0.0) -> None:
        """Learn every agent's hostname and attributes from the master's read endpoints."""
        now = self._clock()
        if now - self._agents_fetched < min_interval:
            return
        self._agents_fetched = now
        driver = self._driver
        master = driver.master if driver is not None else None
        if not master:
            return
        agents = None
        for path in ("/master/slaves", "/master/state"):
            try:
                agents = self._get_json(f"http://{master}{path}").get("slaves")
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    log.warning("cannot list mesos agents", error=str(exc))
                    return
            except Exception as exc:
                log.warning("cannot list mesos agents", error=str(exc))
                return
        for agent in agents or []:
            attrs = {str(k): _attribute_text(v) for k, v in (agent.get("attributes") or {}).items()}
            self._agents[str(agent["id"])] = (str(agent.get("hostname", "")), attrs)

    def _get_json(self, url: str) -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        c = self.config
        if c.principal and c.secret:
            token = base64.b64encode(f"{c.principal}:{c.secret}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=c.call_timeout_seconds) as resp:
            body = json.loads(resp.read().decode("utf-8"))
        return body if isinstance(body, dict) else {}

    def _launch_failed(self, task_id: str, message: str) -> None:
        metrics.LAUNCH_ERRORS.inc()
        _task_log(task_id).error("task cannot be launched", error=message)
        self._events.put(TaskUpdate(task_id=task_id, state="TASK_ERROR",
                                    reason="REASON_TASK_INVALID", message=message,
                                    source="SOURCE_FRAMEWORK", timestamp=time.time()))

    # --- calls -----------------------------------------------------------------------------
    def _scheduler_call(self, what: str, body: dict[str, Any]) -> bool:
        driver = self._driver
        if driver is None or not self._connected or not driver.framework_id:
            log.info("mesos call skipped while disconnected", call=what)
            return False
        body = {"type": what, "framework_id": {"value": driver.framework_id}, **body}
        # One path for every call: pymesos' helpers return silently when the stream is down
        # (an ACCEPT would seem sent) and drop agent_id and kill_policy from KILL/RECONCILE.
        return self._call(what, driver._send, body)

    def _send_kill(self, task_id: str, agent_id: str | None, grace: float | None) -> None:
        with self._lock:
            if self._pending.pop(task_id, None) is not None:
                metrics.PENDING_LAUNCHES.set(len(self._pending))
        kill: dict[str, Any] = {"task_id": {"value": task_id}}
        if agent_id:
            kill["agent_id"] = {"value": agent_id}
        if grace is not None:
            kill["kill_policy"] = {"grace_period": {"nanoseconds": round(grace * 1e9)}}
        _task_log(task_id).info("killing task", agent_id=agent_id)
        self._scheduler_call("KILL", {"kill": kill})

    def _send_reconcile(self, known: Sequence[tuple[str, str | None]]) -> None:
        if not known:
            self._scheduler_call("RECONCILE", {"reconcile": {"tasks": []}})
            return
        step = max(1, self.config.reconcile_batch)
        for i in range(0, len(known), step):
            tasks = []
            for task_id, agent_id in known[i:i + step]:
                item: dict[str, Any] = {"task_id": {"value": task_id}}
                if agent_id:
                    item["agent_id"] = {"value": agent_id}
                tasks.append(item)
            self._scheduler_call("RECONCILE", {"reconcile": {"tasks": tasks}})

    def _stop_ackers(self) -> None:
        """At stop, before the driver goes: the acks already asked for are sent (bounded)."""
        for _ in self._ackers:
            self._acks.put(None)
        for t in self._ackers:
            t.join(timeout=self.config.call_timeout_seconds)
        self._ackers = []

    def _ack_loop(self) -> None:
        """One ack sender: its own keep-alive connection to the current master, with the
        current subscription's stream id. Whatever acks are waiting go out together, HTTP/1.1
        pipelined (written at once, answered in order: libprocess serves a connection's
        requests in order), so a backlog costs a few writes and reads instead of a round trip
        each. An ack that cannot be sent is dropped: Mesos sends the update again and it is
        acknowledged then."""
        conn: _AckConnection | None = None
        while (update := self._acks.get()) is not None:
            batch = [update]
            stopping = False
            while len(batch) < ACK_PIPELINE:
                try:
                    more = self._acks.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            driver = self._driver
            stream_id = driver.stream_id if driver is not None else None
            master = driver.master if driver is not None else None
            if (driver is None or not self._connected or not driver.framework_id
                    or not stream_id or not master):
                log.info("mesos call skipped while disconnected", call="ACKNOWLEDGE",
                         count=len(batch))
            else:
                headers = {"Content-Type": "application/json", "Mesos-Stream-Id": stream_id}
                credential = getattr(driver, "_basic_credential", None)
                if credential:
                    headers["Authorization"] = credential
                bodies = [json.dumps({"type": "ACKNOWLEDGE",
                                      "framework_id": {"value": driver.framework_id},
                                      **_ack_body(u)}).encode() for u in batch]
                try:
                    if conn is None or conn.master != master:
                        if conn is not None:
                            conn.close()
                        conn = _AckConnection(master, self.config.call_timeout_seconds)
                    for status, text in conn.post_all("/api/v1/scheduler", headers, bodies):
                        if not 200 <= status < 300:
                            log.warning("mesos call failed", call="ACKNOWLEDGE",
                                        error=f"{status}: {text[:200]!r}")
                except Exception as exc:
                    if conn is not None:
                        conn.close()
                    conn = None
                    log.warning("mesos call failed", call="ACKNOWLEDGE", count=len(batch),
                                error=str(exc))
            if stopping:
                break
        if conn is not None:
            conn.close()

    def _send_ack(self, update: TaskUpdate) -> None:
        self._scheduler_call("ACKNOWLEDGE", _ack_body(update))
