"""pymesos' scheduler driver as the adapter (adapter.py) uses it: every stream event handed raw
to the adapter, and the way it finds a master when the one it talks to is gone.

With adapter.py, the only module in Docket that imports pymesos. Import it from the main
thread: pymesos installs a SIGINT handler on import (the previous one is put back right away,
so a Ctrl-C stays a KeyboardInterrupt), and its IO thread's `interrupt_main()` on death is
disarmed (the adapter notices a dead driver and replaces it).

Finding the master (controller/mesos/masters.py has the forms):
- `zk://`: pymesos' MasterDetector follows the leader in ZooKeeper and moves the driver to it;
- a list of masters: a master that cannot be reached is left for the next one in the list
  (round robin). A standby answers SUBSCRIBE with a 307 to the leader, which pymesos follows
  itself (`Connection.read`), so a list naming any live master reaches the leader.
pymesos' own reconnection sleeps 1.5 to 2.5 s after the first refused connection, and doubles;
a master failover would wait that long for nothing. Here the first retry comes after 0.1 s,
doubling per round through the list up to 15 s (Mesos' advice: exponential, at most 15 s).
A SUBSCRIBE answered without a stream (503 while no master is elected or the leader is still
recovering, or a redirect) is retried after 0.1 s, where pymesos would retry at once, in a
tight loop.
A SUBSCRIBE refused outright (401: wrong or missing credentials; 400, 403) is logged as one
error naming the master, without pymesos' traceback; the driver then gives up and the adapter
starts another after a growing delay.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import pymesos
import pymesos.process
import structlog

from controller.mesos.config import MesosConfig

log = structlog.get_logger("docket.mesos")

RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 15.0
PAUSE_AFTER_REFUSAL_SECONDS = 0.1


class StreamSink(Protocol):
    def _from_stream(self, generation: int, kind: str, event: dict[str, Any]) -> None: ...


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


class SubscribeRefused(RuntimeError):
    """The master answered SUBSCRIBE with an error status (already logged)."""


class _Connection(pymesos.process.Connection):  # type: ignore[misc]
    """pymesos' connection, which raises a bare RuntimeError on any error status."""

    def read(self) -> bool:
        try:
            return bool(super().read())
        except RuntimeError as exc:
            text = str(exc)
            if not text.startswith("Failed with HTTP "):
                raise
            master = f"{self._addr[0]}:{self._addr[1]}"
            if text.startswith("Failed with HTTP 401"):
                log.error("mesos master refused the framework's credentials (401 "
                          "Unauthorized): check the framework principal and secret file",
                          master=master)
            else:
                log.error("mesos master refused the subscription", master=master,
                          answer=text.removeprefix("Failed with "))
            raise SubscribeRefused(text) from None


class _DropRefusalTraceback(logging.Filter):
    """pymesos logs its IO thread's end with a traceback; for a refusal, logged above, that is
    noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is SubscribeRefused)


_restore_sigint()
pymesos.process.thread = _NoInterrupt
pymesos.process.Connection = _Connection
logging.getLogger("pymesos.process").addFilter(_DropRefusalTraceback())


class Driver(pymesos.MesosSchedulerDriver):  # type: ignore[misc]
    """pymesos' driver, with every stream event handed raw to the adapter.

    Only SUBSCRIBED still goes through pymesos (it records the FrameworkID it must send on
    every call); updates are not acknowledged implicitly because they never reach pymesos'
    own handler. `masters` is the list to go round when the current master is unreachable
    (empty or one: pymesos' single master, or its ZooKeeper detector).
    """

    def __init__(self, adapter: StreamSink, generation: int, framework: dict[str, Any],
                 master: str, config: MesosConfig, masters: tuple[str, ...] = (),
                 may_act: Callable[[], bool] = lambda: True) -> None:
        super().__init__(_Callbacks(adapter, generation), framework, master,
                         use_addict=False, implicit_acknowledgements=False,
                         principal=config.principal, secret=config.secret,
                         failover=True, timeout=config.call_timeout_seconds)
        self._adapter = adapter
        self._generation = generation
        self._gpu_resources = config.gpu_resources
        self._masters = masters
        self._failed_connects = 0
        self._may_act = may_act

    def update_info(self, info: dict[str, Any]) -> None:
        """A new FrameworkInfo (new roles) for every later SUBSCRIBE of this driver, keeping
        the FrameworkID it holds (pymesos re-subscribes by itself when a stream closes)."""
        with self._lock:
            framework: dict[str, Any] = self._framework
            framework_id = framework.get("id")
            framework.clear()
            framework.update(info)
            if framework_id:
                framework["id"] = framework_id

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
                self._failed_connects = 0
                super().on_event(event)
            self._adapter._from_stream(self._generation, kind, event)
        except Exception:  # an exception here would kill pymesos' thread
            log.exception("mesos event handling failed")

    # --- pymesos' IO thread: reconnection ---------------------------------------------------
    def _backoff(self, num_conn_retry: int) -> float:
        """Called by pymesos when a connection to the master was refused, before it sleeps
        the delay returned. pymesos resets its count whenever the master changes, so the
        failures are counted here, until the next SUBSCRIBED."""
        self._failed_connects += 1
        masters = self._masters
        rounds = self._failed_connects - 1
        if len(masters) > 1:
            failed = self.master
            following = masters[(masters.index(failed) + 1) % len(masters)] \
                if failed in masters else masters[0]
            log.info("mesos master unreachable; trying the next", failed=failed,
                     next=following)
            # As change_master does, without its blocking GET /version (the masters of one
            # cluster run one version): the IO loop switches when it wakes.
            with self._lock:
                self._new_master = following
            self._notify()
            rounds //= len(masters)
        return float(min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** min(rounds, 10)))

    def on_close(self) -> None:
        # No stream id yet: the SUBSCRIBE was answered without a stream (503, 307) or the
        # connection failed. pymesos would reconnect at once; pause a little first.
        refused = self.stream_id is None
        super().on_close()
        if refused and not self.aborted:
            time.sleep(PAUSE_AFTER_REFUSAL_SECONDS)
        # pymesos subscribes again by itself as soon as a stream closes (the master closes a
        # deposed leader's when the new leader subscribes). Not while this process may not act
        # (see MesosAdapter's may_act): the IO thread waits here until it may, or until the
        # adapter stops this driver.
        while not self._may_act() and self._started:
            time.sleep(0.05)


class _Callbacks(pymesos.Scheduler):  # type: ignore[misc]
    def __init__(self, adapter: StreamSink, generation: int) -> None:
        self._adapter = adapter
        self._generation = generation

    def disconnected(self, driver: Any) -> None:
        try:
            self._adapter._from_stream(self._generation, "CLOSED", {})
        except Exception:
            log.exception("mesos disconnect handling failed")
