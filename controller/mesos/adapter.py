"""`MesosAdapter`: the real `MesosBackend`, over pymesos' v1 HTTP scheduler driver.

With driver.py (pymesos' driver as used here, and how it finds the master), the only module
in Docket that imports pymesos. Import it from the main thread: pymesos installs a SIGINT
handler on import (driver.py puts the previous one back right away).

Threads. pymesos reads the event stream on its own thread and calls back from there; those
callbacks only time-stamp the event and put it on an inbox, never block, never raise (an
exception there kills pymesos' thread). One worker thread of ours takes the inbox and the
controller's commands and makes every call to the master, so calls are serialised and a slow
master never stalls the event stream's reader.

Connection health. pymesos does not watch heartbeats, and its thread dies (and would interrupt
the main thread) when the master stays unreachable past its timeout or answers SUBSCRIBE with
an error. The worker supervises: no event for `heartbeat_misses` heartbeat intervals (2: a
half-open stream is given up two intervals after its last event, timed from the event's
arrival on pymesos' thread and checked at that deadline, not at the next tick), no SUBSCRIBED
within `subscribe_timeout_seconds`, or a dead driver thread, and it stops that driver (with
failover, so nothing is torn down) and starts a new one that subscribes again with the same
FrameworkID. Events of a replaced driver are ignored.

Masters in HA (`--mesos-master` as a list or a `zk://` URL, masters.py): the driver follows
the leader (driver.py); read endpoints go to the master the driver is subscribed to.

On every (re)subscription: the FrameworkID is persisted, the tasks the controller knows are
reconciled explicitly, then all tasks implicitly (orphans come back as TaskUpdates; killing
them is the controller's decision), and offers are revived or suppressed depending on what is
pending.

Roles (docs/architecture.md §10): `set_roles` gives the roles the policy names; with any
beyond the configured one the framework is MULTI_ROLE (calls.framework_roles), and a change
while subscribed goes out at once as UPDATE_FRAMEWORK (and into the driver's FrameworkInfo).

Throttles (issue 16): `set_throttle_source` gives the policy's limits across objects; launches
applies them at each offer round (throttle.py decides), and the worker asks it on its ticks
whether held launches got room, to REVIVE for them (the offers declined meanwhile are
filtered).

Beside it: `launches` (pending launches, ACCEPT/DECLINE, agents, placements, each task's host
ports for its updates, the throttle gate), `revive` (when to REVIVE or SUPPRESS, pure), `acks`
(the ack sender threads and their pipelined HTTP client), `calls` (the calls' JSON) and
`config`. This module wires them to the driver and makes every call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from controller.clock import Clock, RealClock
from controller.mesos import metrics
from controller.mesos.acks import ACK_PIPELINE, AckSenders, AckTarget
from controller.mesos.acks import AckConnection as _AckConnection
from controller.mesos.backend import (
    Disconnected,
    LaunchRequest,
    MesosEvent,
    Subscribed,
    TaskUpdate,
    ThrottleSource,
    docket_group,
)
from controller.mesos.calls import (
    ack_body,
    framework_info,
    framework_roles,
    kill_body,
    reconcile_bodies,
    revive_body,
    update_framework_body,
)
from controller.mesos.config import (
    WEEK_SECONDS,
    FrameworkIdStore,
    MemoryFrameworkIdStore,
    MesosConfig,
)
from controller.mesos.driver import Driver
from controller.mesos.launches import Launches, task_log
from controller.mesos.masters import parse_masters
from controller.mesos.revive import ReviveSuppress

# Names that lived here before the split, still importable from here.
__all__ = ["ACK_PIPELINE", "WEEK_SECONDS", "FrameworkIdStore", "MemoryFrameworkIdStore",
           "MesosAdapter", "MesosConfig", "_AckConnection"]

log = structlog.get_logger("docket.mesos")


def call_error(exc: BaseException) -> str:
    """A failed call's error for the log: its first line only. pymesos puts the whole request
    body after the status line ("Failed to send request 400: ...\\n{body}"), and an ACCEPT's
    body carries its tasks' SECRET environment values (base64 is not a secret's protection)."""
    first = str(exc).split("\n", 1)[0]
    return first[:500]


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
        clock: Clock | None = None,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        # Whether this process may talk to Mesos at all (the controller: "still leading").
        # Mesos calls are not fenced the way etcd writes are: a leader frozen past its lease
        # and thawed would otherwise subscribe again on its missed heartbeats — taking the
        # framework from the new leader — and accept offers for launches it still holds,
        # which the new leader relaunches under new ids. Checked before every subscription,
        # call and offer.
        self._may_act = may_act
        self._framework_ids = framework_ids
        self._known_tasks = known_tasks
        self._clock = (clock or RealClock()).now
        self._events: queue.Queue[MesosEvent] = queue.Queue()
        self._inbox: queue.SimpleQueue[tuple[int, str, Any]] = queue.SimpleQueue()
        # Acknowledgements go out on their own connections (see acks.py), each still only
        # once the controller asks for it (after the update is recorded).
        self._acks = AckSenders(self._ack_target, config.call_timeout_seconds)
        # Read when scraped: nothing on the hot path.
        metrics.UPDATES_PENDING.set_function(self._events.qsize)
        metrics.ACKS_PENDING.set_function(self._acks.qsize)
        self._launches = Launches(config, self._events, call=self._scheduler_call,
                                  reconcile=self._send_reconcile, master=self._master,
                                  group_of=group_of, clock=self._clock)
        self._offer_calls = ReviveSuppress(config.revive_interval_seconds,
                                           config.suppress_after_seconds)
        self._driver: Driver | None = None
        self._generation = 0
        self._master_index = -1
        self._framework_id: str | None = None
        self._fid_saved = True
        self._connected = False
        self._last_event = 0.0
        self._heartbeat_seconds: float | None = None
        self._next_reconcile = float("inf")  # set on subscription
        self._next_start = 0.0
        self._roles_unsent = False
        self._retry_delay = config.reconnect_delay_seconds
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None

    # --- MesosBackend ----------------------------------------------------------------------
    @property
    def events(self) -> queue.Queue[MesosEvent]:
        return self._events

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def pending_count(self) -> int:
        return self._launches.pending_count

    @property
    def framework_id(self) -> str | None:
        return self._framework_id

    def start(self) -> None:
        if self._worker is not None:
            return
        self._stopping.clear()
        self._worker = threading.Thread(target=self._run, name="docket-mesos", daemon=True)
        self._worker.start()
        self._acks.start(self.config.ack_senders)

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
        if self._launches.add(requests):
            self._inbox.put((0, "revive", None))

    def cancel(self, task_id: str) -> bool:
        return self._launches.cancel(task_id)

    def pending_ids(self) -> list[str]:
        return self._launches.pending_ids()

    def set_throttle_source(self, source: ThrottleSource | None) -> None:
        """Where the policy's throttles come from (any thread; None: no throttles)."""
        self._launches.throttle_source = source
        self._inbox.put((0, "wake", None))  # held launches may go now

    def set_roles(self, roles: Iterable[str]) -> None:
        """The roles the admission policy names (any thread); see the module docstring."""
        self._inbox.put((0, "roles", tuple(sorted(set(roles)))))

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles the framework subscribes (or subscribed) with."""
        return framework_roles(self.config, self._launches.extra_roles)[0]

    def kill(self, task_id: str, agent_id: str | None = None,
             grace_seconds: float | None = None) -> None:
        self._inbox.put((0, "kill", (task_id, agent_id, grace_seconds)))

    def reconcile(self, known: Iterable[tuple[str, str | None]]) -> None:
        self._inbox.put((0, "reconcile", list(known)))

    def acknowledge(self, update: TaskUpdate) -> None:
        if update.uuid and update.agent_id:
            if self._acks.running:
                self._acks.put(update)
            else:
                self._inbox.put((0, "ack", update))

    # --- from pymesos' thread: never block, never raise -------------------------------------
    def _from_stream(self, generation: int, kind: str, event: dict[str, Any]) -> None:
        if generation == self._generation and kind != "CLOSED":
            # Timed on arrival: the worker may be busy, and a silence is measured from here.
            self._last_event = self._clock()
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
                    item = self._inbox.get(timeout=self._wait_seconds())
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
            self._acks.stop()
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
        if generation and kind == "CLOSED":
            # pymesos' reconnection attempts count as signs of life for the subscribe
            # timeout; stream events were timed on arrival (_from_stream).
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
            self._offer_calls.launched()
        elif kind == "roles":
            self._change_roles(payload)
        elif kind == "kill":
            self._send_kill(*payload)
        elif kind == "reconcile":
            self._send_reconcile(payload)
        elif kind == "ack":
            self._send_ack(payload)

    def _wait_seconds(self) -> float:
        """Until the next tick, or sooner if the stream's silence deadline comes first."""
        wait = self.config.tick_seconds
        if self._connected:
            wait = min(wait, self._launches.next_room_check - self._clock())
        if self._connected and self._heartbeat_seconds:
            deadline = self._last_event + self._heartbeat_seconds * self.config.heartbeat_misses
            wait = min(wait, deadline - self._clock() + 0.001)
        return max(0.0, wait)

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
            if now - self._last_event >= self._heartbeat_seconds * self.config.heartbeat_misses:
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
        if self._connected and self._launches.throttle_room():
            self._offer_calls.launched()  # held launches got room: their offers are filtered
        if self._connected:
            # Which of REVIVE and SUPPRESS, and when, is revive.py's decision; the call is ours.
            call = self._offer_calls.decide(now, self._launches.pending_count)
            if call is not None and self._scheduler_call(call, self._offer_call_body(call)):
                self._offer_calls.sent(call, now)
                metrics.SUPPRESSED.set(1 if call == "SUPPRESS" else 0)

    # --- driver lifecycle ------------------------------------------------------------------
    def _start_driver(self) -> None:
        if not self._may_act():
            # Not now (see may_act); the worker's next tick tries again.
            self._next_start = self._clock() + self.config.tick_seconds
            return
        self._generation += 1
        spec = parse_masters(self.config.master)
        masters: tuple[str, ...]
        if spec.zk:
            master, masters = spec.zk, ()  # pymesos' detector follows ZooKeeper
        else:
            # Round robin from the master after the last one used (driver.py goes on round).
            masters = spec.addresses
            self._master_index = (self._master_index + 1) % len(masters)
            master = masters[self._master_index]
        info = framework_info(self.config, self._framework_id, self._launches.extra_roles)
        driver = Driver(self, self._generation, info, master, self.config, masters,
                        may_act=self._may_act)
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

    def _save_framework_id(self) -> None:
        assert self._framework_id is not None
        try:
            if self._framework_ids.get() != self._framework_id:
                self._framework_ids.set(self._framework_id)
            self._fid_saved = True
        except Exception as exc:
            self._fid_saved = False
            log.warning("could not persist the framework id; will retry", error=str(exc))

    # --- roles -----------------------------------------------------------------------------
    def _change_roles(self, extra: tuple[str, ...]) -> None:
        before = framework_roles(self.config, self._launches.extra_roles)
        self._launches.extra_roles = extra
        after = framework_roles(self.config, extra)
        if after == before:
            return
        log.info("framework roles changed", roles=list(after[0]), multi_role=after[1])
        driver = self._driver
        if driver is None:
            return  # the next subscription carries them
        info = framework_info(self.config, driver.framework_id or None, extra)
        driver.update_info(info)  # its own re-subscriptions carry them from now on
        if not self._connected or not driver.framework_id:
            # A SUBSCRIBE may be on its way with the old roles: update once it is answered.
            self._roles_unsent = True
            return
        self._send_roles(driver)

    def _send_roles(self, driver: Driver) -> None:
        self._roles_unsent = False
        if self._scheduler_call("UPDATE_FRAMEWORK", update_framework_body(driver.framework)):
            # The master now offers every role again (no suppressed role was sent).
            self._offer_calls.subscribed()
            metrics.SUPPRESSED.set(0)
        else:
            # Not known to have reached the master: subscribe again with the new roles.
            self._restart("roles_changed")

    def _offer_call_body(self, call: str) -> dict[str, Any]:
        if call != "REVIVE":
            return {}
        return revive_body(self.config, self._launches.extra_roles,
                           self._launches.pending_roles())

    # --- events ----------------------------------------------------------------------------
    def _reconcile_all(self) -> None:
        """Explicitly the tasks our records say may exist, then implicitly all of Mesos'."""
        try:
            known = list(self._known_tasks())
        except Exception:
            log.exception("could not list known tasks for reconciliation")
            known = []
        # Tasks of an ACCEPT that failed: still counted as handed over (so not in `known`),
        # and their first reconciliation may have failed with it.
        listed = {task_id for task_id, _ in known}
        known += [t for t in self._launches.uncertain() if t[0] not in listed]
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
        self._launches.refresh_agents()
        self._reconcile_all()
        # Offers of the previous connection are gone; the suppression state is unknown.
        self._offer_calls.subscribed()
        if self._roles_unsent and self._driver is not None:
            self._send_roles(self._driver)

    def _on_update(self, status: Mapping[str, Any]) -> None:
        if "task_id" not in status:
            return
        update = self._launches.on_update(status)
        task_log(update.task_id).debug("task update", state=update.state, reason=update.reason)
        self._events.put(update)

    def _on_offers(self, raw_offers: Sequence[Mapping[str, Any]]) -> None:
        if self._driver is None or not self._may_act():
            return  # left alone: the master rescinds them when this subscription ends
        self._launches.on_offers(raw_offers)

    # --- calls -----------------------------------------------------------------------------
    def _scheduler_call(self, what: str, body: dict[str, Any]) -> bool:
        driver = self._driver
        if driver is None or not self._connected or not driver.framework_id \
                or not self._may_act():
            log.info("mesos call skipped while disconnected", call=what)
            return False
        body = {"type": what, "framework_id": {"value": driver.framework_id}, **body}
        # One path for every call: pymesos' helpers return silently when the stream is down
        # (an ACCEPT would seem sent) and drop agent_id and kill_policy from KILL/RECONCILE.
        try:
            driver._send(body)
            return True
        except Exception as exc:
            log.warning("mesos call failed", call=what, error=call_error(exc))
            return False

    def _send_kill(self, task_id: str, agent_id: str | None, grace: float | None) -> None:
        self._launches.forget(task_id)
        task_log(task_id).info("killing task", agent_id=agent_id)
        self._scheduler_call("KILL", kill_body(task_id, agent_id, grace))

    def _send_reconcile(self, known: Sequence[tuple[str, str | None]]) -> None:
        for body in reconcile_bodies(known, self.config.reconcile_batch):
            self._scheduler_call("RECONCILE", body)

    def _master(self) -> str | None:
        """The current driver's master (`host:port`), for the read endpoints."""
        driver = self._driver
        return driver.master if driver is not None else None

    def _ack_target(self) -> AckTarget | None:
        """Called by the ack senders before each batch, from their threads."""
        driver = self._driver
        stream_id = driver.stream_id if driver is not None else None
        master = driver.master if driver is not None else None
        if (driver is None or not self._connected or not driver.framework_id
                or not stream_id or not master):
            return None
        return AckTarget(master, stream_id, driver.framework_id,
                         getattr(driver, "_basic_credential", None))

    def _send_ack(self, update: TaskUpdate) -> None:
        self._scheduler_call("ACKNOWLEDGE", ack_body(update))
