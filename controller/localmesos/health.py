"""Health checks of one task, as Mesos 1.11's built-in command executor runs them
(src/checks/health_checker.cpp, src/checks/checker_process.cpp, src/launcher/executor.cpp,
docs/health-checks.md). This module owns what a health check *is* (the HealthCheck message
with its proto defaults), how its results are *interpreted* (`HealthState`), how a real
agent *probes* a task (`HealthChecker`) and how a simulated agent plays the same results on
its timers (`simulated_verdicts`); agents.py owns what the executor then does with a verdict
(the status update, the kill).

Mesos' rules, followed here:
- Defaults (mesos.proto HealthCheck): delay_seconds 15, interval_seconds 10,
  timeout_seconds 20 (0 means no timeout), consecutive_failures 3, grace_period_seconds 10.
- The checker is created when the executor launches the task, just before TASK_RUNNING; the
  first probe runs `delay_seconds` later, and each next one `interval_seconds` after the
  previous result (not at a fixed rate). A probe that outlives `timeout_seconds` is aborted
  and is a failure.
- HTTP: GET `<scheme>://127.0.0.1:<port><path>` (`[::1]` for IPv6) as `curl -L -k` does:
  redirects followed, certificates not verified, status 200..399 healthy, anything else
  (including no answer) a failure; `statuses` is ignored by the built-in executors. TCP: a
  connection to 127.0.0.1:<port> can be established (1.11 probes IPv4 even when the TCP
  check says IPv6: checker_process.cpp does not pass the protocol on). COMMAND: the command
  exits 0, run in the executor's environment (the task's, in its sandbox) plus the check's
  own variables, its output going to the sandbox's stderr as the executor's does.
- Interpretation: a failure is ignored while the task has never been healthy and is within
  `grace_period_seconds` of its launch (a grace period of 0 ignores nothing); otherwise it
  counts, and *every* counted failure is reported unhealthy, the one reaching
  `consecutive_failures` with "kill the task". A success is reported only when it is the
  first one or follows failures; it resets the count.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import math
import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import structlog

if TYPE_CHECKING:
    from controller.localmesos.timers import Timer, Timers

log = structlog.get_logger("docket.localmesos.health")

HEALTH_REASON = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"

# mesos.proto HealthCheck's declared defaults.
DEFAULTS: dict[str, float | int] = {
    "delay_seconds": 15.0, "interval_seconds": 10.0, "timeout_seconds": 20.0,
    "consecutive_failures": 3, "grace_period_seconds": 10.0,
}
CHECK_TYPES = ("UNKNOWN", "COMMAND", "HTTP", "TCP")
# curl's default limit on followed redirects (`--max-redirs`); curl -L gives up past it.
MAX_REDIRECTS = 50
# How often a connect in progress looks whether its probe was aborted, and what connect_ex
# answers while it is in progress.
_CONNECT_SLICE = 0.05
_CONNECTING = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY})
# A simulated probe takes no time; an interval of 0 would then probe endlessly at one
# instant, so simulated time advances by this much per probe instead (a real one takes
# about that long).
SIM_MIN_INTERVAL = 0.001


def _number(value: Any, default: float) -> float:
    """A proto number as Mesos' JSON parser takes it: a JSON number or a numeric string."""
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def canonical_health_check(raw: dict[str, Any]) -> dict[str, Any]:
    """TaskInfo.health_check as Mesos holds it once parsed (stout's JSON-to-protobuf) and writes
    it back (stout's JSON::Protobuf, which writes unset fields that have a declared default):
    numbers as numbers, an unknown `type` name dropped (an optional enum), and the defaults
    of HealthCheck, of HTTPCheckInfo/TCPCheckInfo (`protocol` IPv4) and of CommandInfo
    (`shell` true; a variable's `type` VALUE) filled in."""
    out: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        value = _number(raw.get(name), float(default))
        # consecutive_failures is a uint32: stout's parser stores a negative one wrapped.
        out[name] = int(value) % 2**32 if isinstance(default, int) else value
    if raw.get("type") in CHECK_TYPES:
        out["type"] = raw["type"]
    http = raw.get("http")
    if isinstance(http, dict):
        out["http"] = {**http, "protocol": http.get("protocol", "IPv4"),
                       "port": int(_number(http.get("port"), 0))}
        if "statuses" in http:
            out["http"]["statuses"] = [int(_number(s, 0)) for s in http["statuses"] or []]
    tcp = raw.get("tcp")
    if isinstance(tcp, dict):
        out["tcp"] = {**tcp, "protocol": tcp.get("protocol", "IPv4"),
                      "port": int(_number(tcp.get("port"), 0))}
    command = raw.get("command")
    if isinstance(command, dict):
        cmd = {**command, "shell": command.get("shell", True)}
        env = command.get("environment")
        if isinstance(env, dict) and env.get("variables"):
            cmd["environment"] = {"variables": [
                {**v, "type": v.get("type", "VALUE")} for v in env["variables"]]}
        cmd["uris"] = [{**u, "extract": u.get("extract", True)}
                       for u in command.get("uris") or []]
        if not cmd["uris"]:
            del cmd["uris"]
        out["command"] = cmd
    return out


@dataclass(frozen=True)
class HealthCheckSpec:
    """A validated TaskInfo.health_check, with Mesos' defaults applied."""

    type: str
    delay: float
    interval: float
    timeout: float  # 0: no timeout
    consecutive_failures: int
    grace_period: float
    port: int = 0
    path: str = ""
    scheme: str = "http"
    ipv6: bool = False
    # The CommandInfo as JSON text, so that specs are hashable: the simulated agent groups
    # tasks by their check.
    command_json: str = "{}"

    @classmethod
    def from_task(cls, info: dict[str, Any]) -> HealthCheckSpec | None:
        """The task's health check, or None when it has none. Call it on a TaskInfo the
        master has validated (validation.py `validate_health_check`)."""
        raw = info.get("health_check")
        if not isinstance(raw, dict):
            return None
        hc = canonical_health_check(raw)
        kind = str(hc.get("type", "UNKNOWN"))
        http = hc.get("http") or {}
        tcp = hc.get("tcp") or {}
        port = int(http.get("port", 0)) if kind == "HTTP" else int(tcp.get("port", 0))
        return cls(
            type=kind, delay=hc["delay_seconds"], interval=hc["interval_seconds"],
            timeout=hc["timeout_seconds"], consecutive_failures=hc["consecutive_failures"],
            grace_period=hc["grace_period_seconds"], port=port,
            path=str(http.get("path", "")), scheme=str(http.get("scheme") or "http"),
            # Only HTTP checks honour the protocol in 1.11 (see the module docstring).
            ipv6=kind == "HTTP" and http.get("protocol") == "IPv6",
            command_json=json.dumps(hc.get("command") or {}, sort_keys=True))

    @property
    def name(self) -> str:
        return f"{self.type} health check"  # as Mesos names it in its logs


@dataclass(frozen=True)
class Verdict:
    """What the checker tells the executor (Mesos' TaskHealthStatus)."""

    healthy: bool
    consecutive_failures: int = 0
    kill_task: bool = False


class HealthState:
    """HealthChecker::success/failure of health_checker.cpp: turns probe results into the
    verdicts the executor must hear, or None when it hears nothing. Pure, so the real
    checker (wall-clock time) and the simulated agent (its own time) share it."""

    def __init__(self, spec: HealthCheckSpec) -> None:
        self.spec = spec
        self.initializing = True  # no success yet
        self.failures = 0

    def success(self) -> Verdict | None:
        report = self.initializing or self.failures > 0
        self.initializing = False
        self.failures = 0
        return Verdict(healthy=True) if report else None

    def failure(self, since_launch: float) -> Verdict | None:
        """`since_launch`: seconds since the checker was created (the task's launch)."""
        grace = self.spec.grace_period
        if self.initializing and grace > 0 and since_launch <= grace:
            return None
        self.failures += 1
        return Verdict(healthy=False, consecutive_failures=self.failures,
                       kill_task=self.failures >= self.spec.consecutive_failures)


def simulated_verdicts(spec: HealthCheckSpec, unhealthy_from: float | None
                       ) -> Iterator[tuple[float, Verdict]]:
    """The verdicts a simulated task's checker reports and when (seconds after its launch),
    in order, for a task whose probes pass before `unhealthy_from` and fail from then on
    (None: they always pass; 0: they never do). Lazy: a check that never kills
    (consecutive_failures near 2**32) reports a failure every interval for as long as the
    task runs, and the agent only ever asks for the next one."""
    state = HealthState(spec)
    interval = max(spec.interval, SIM_MIN_INTERVAL)
    t = spec.delay
    if unhealthy_from is None or t < unhealthy_from:
        verdict = state.success()
        if verdict is not None:
            yield t, verdict
        if unhealthy_from is None:
            return  # healthy for good: nothing more is ever reported
        # Passing probes report nothing; skip to the first one that fails (the epsilon
        # keeps a probe due exactly then from being rounded past).
        t += max(0, math.ceil((unhealthy_from - t) / interval - 1e-9)) * interval
        while t < unhealthy_from - 1e-9:
            t += interval
    elif spec.grace_period > 0 and t <= spec.grace_period:
        # Never healthy: the failures inside the grace period are ignored; skip them.
        t += (math.floor((spec.grace_period - t) / interval) + 1) * interval
    while True:
        verdict = state.failure(t)
        if verdict is not None:
            yield t, verdict
            if verdict.kill_task:
                return  # the executor kills the task and stops checking
        t += interval


class _ProbeAborted(Exception):
    """The probe was cut short: timed out, or the checker was stopped."""


class HealthChecker:
    """Probes one task of a real agent on a thread of its own, as Mesos' CheckerProcess does,
    and hands each verdict to `report` (on that thread).

    `stop()` ends checking at once (Mesos pauses the checker when the task is being killed
    or has terminated): a probe under way is aborted and its result dropped. It may be called
    from any thread, `report` included; `join()` then waits for the thread, and is what an
    executor does before reporting the task's end, so no checker outlives its task."""

    def __init__(self, spec: HealthCheckSpec, task_id: str, *, cwd: Path,
                 env: dict[str, str], report: Callable[[Verdict], None],
                 timers: Timers) -> None:
        self.spec = spec
        self.task_id = task_id
        self.cwd = cwd
        self.env = env
        self._report = report
        self._timers = timers
        self._state = HealthState(spec)
        # Mesos' grace period runs from the checker's creation, i.e. the task's launch.
        self._created = time.monotonic()
        self._stopped = threading.Event()
        # What aborting the current probe has to interrupt: its socket or its process.
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._aborted = False
        self._thread = threading.Thread(target=self._loop, name=f"health-{task_id[:40]}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._abort()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        if self._stopped.wait(self.spec.delay):
            return
        while True:
            ok, detail = self._probe()
            if self._stopped.is_set():
                return  # stopped while probing: Mesos ignores a paused checker's result
            if ok:
                verdict = self._state.success()
            else:
                log.warning("health check failed", task_id=self.task_id,
                            check=self.spec.name, error=detail)
                verdict = self._state.failure(time.monotonic() - self._created)
                if verdict is None:
                    log.info("health check failure ignored: still in grace period",
                             task_id=self.task_id, check=self.spec.name)
            if verdict is not None:
                self._report(verdict)
                if verdict.kill_task:
                    return  # the executor kills the task, which ends checking
            if self._stopped.wait(self.spec.interval):
                return

    def _probe(self) -> tuple[bool, str]:
        """One probe, bounded by the timeout: (passed, what went wrong)."""
        with self._lock:
            # A stop() that came before this probe began must still cut it short.
            self._aborted = self._stopped.is_set()
        timer: Timer | None = None
        if self.spec.timeout > 0:
            timer = self._timers.call_later(self.spec.timeout, self._abort)
        try:
            if self.spec.type == "HTTP":
                return self._http()
            if self.spec.type == "TCP":
                return self._tcp()
            return self._command()
        except _ProbeAborted:
            return False, self._timed_out()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if self._was_aborted():
                return False, self._timed_out()
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._sock = None
                self._proc = None

    def _timed_out(self) -> str:
        what = {"HTTP": "curl", "TCP": "mesos-tcp-connect"}.get(self.spec.type, "Command")
        return f"{what} timed out after {self.spec.timeout:g}secs"

    def _was_aborted(self) -> bool:
        with self._lock:
            return self._aborted

    def _abort(self) -> None:
        """Interrupt the probe under way (timeout or stop): shut its socket down, which wakes
        a blocked read, or kill its process group, as Mesos kills the check's process tree."""
        with self._lock:
            self._aborted = True
            sock, proc = self._sock, self._proc
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    # --- probes ------------------------------------------------------------------------------
    def _connect(self, host: str, port: int) -> socket.socket:
        """A connected socket, or an exception. The connect is made in slices so that an
        abort is seen even before the socket is connected."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self._register(sock)
        try:
            sock.setblocking(False)
            err = sock.connect_ex((host, port))
            while err in _CONNECTING:
                if self._was_aborted():
                    raise _ProbeAborted
                _, writable, _ = select.select([], [sock], [], _CONNECT_SLICE)
                if writable:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise ConnectionError(err, os.strerror(err))
            sock.setblocking(True)
            return sock
        except BaseException:
            sock.close()
            raise

    def _register(self, sock: socket.socket) -> None:
        """Make `sock` the one an abort shuts down; refuse it if the probe is aborted."""
        with self._lock:
            if self._aborted:
                sock.close()
                raise _ProbeAborted
            self._sock = sock

    def _tcp(self) -> tuple[bool, str]:
        # mesos-tcp-connect connects to 127.0.0.1 and exits 0 when it could.
        sock = self._connect("127.0.0.1", self.spec.port)
        sock.close()
        return True, ""

    def _http(self) -> tuple[bool, str]:
        host = "::1" if self.spec.ipv6 else "127.0.0.1"
        netloc = f"[{host}]" if self.spec.ipv6 else host
        url = f"{self.spec.scheme}://{netloc}:{self.spec.port}{self.spec.path}"
        for _ in range(MAX_REDIRECTS + 1):
            status, location = self._get(url)
            if 300 <= status < 400 and location:
                url = urljoin(url, location)  # curl -L follows any 3xx with a Location
                continue
            if 200 <= status < 400:
                return True, ""
            return False, f"Unexpected HTTP response code: {status}"
        return False, f"curl: Maximum ({MAX_REDIRECTS}) redirects followed"

    def _get(self, url: str) -> tuple[int, str | None]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            raise ValueError(f"curl cannot follow {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sock: socket.socket = self._connect(parts.hostname, port)
        try:
            if parts.scheme == "https":
                context = ssl.create_default_context()
                context.check_hostname = False  # curl -k
                context.verify_mode = ssl.CERT_NONE
                # Wrapping takes the socket over; the wrapped one is what an abort must
                # shut down, so it is registered before the handshake, which may block.
                sock = context.wrap_socket(sock, server_hostname=parts.hostname,
                                           do_handshake_on_connect=False)
                self._register(sock)
                sock.do_handshake()
            conn = http.client.HTTPConnection(parts.hostname, port)
            conn.sock = sock  # connected already: the request goes out on it
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", target, headers={"User-Agent": "curl", "Accept": "*/*"})
            resp = conn.getresponse()
            resp.read()  # curl reads the body (to /dev/null): a stalled one times out
            return resp.status, resp.getheader("Location")
        finally:
            sock.close()

    def _command(self) -> tuple[bool, str]:
        command: dict[str, Any] = json.loads(self.spec.command_json)
        env = dict(self.env)
        for var in ((command.get("environment") or {}).get("variables") or []):
            if var.get("name") and var.get("type", "VALUE") == "VALUE":
                env[str(var["name"])] = str(var.get("value", ""))
        value = str(command.get("value", ""))
        if command.get("shell", True):
            argv, executable = ["/bin/sh", "-c", value], "/bin/sh"
        else:
            # Mesos execs `value` with `arguments` as the whole argv (argv[0] included).
            argv = [str(a) for a in command.get("arguments") or []] or [value]
            executable = value
        with self._lock:
            if self._aborted:
                raise _ProbeAborted
            err: IO[bytes]
            with open(self.cwd / "stderr", "ab") as err:
                self._proc = proc = subprocess.Popen(
                    argv, executable=executable, cwd=self.cwd, env=env,
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        code = proc.wait()
        if self._was_aborted():
            raise _ProbeAborted
        if code < 0:
            return False, f"Command terminated with signal {signal.strsignal(-code)}"
        return code == 0, "" if code == 0 else f"Command exited with status {code}"
