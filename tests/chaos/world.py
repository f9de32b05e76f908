"""`World`: everything a chaos scenario runs against, started from the project's own code and
broken on demand — a real etcd (`EtcdServer`), a real Redis (`RedisServer`), an in-process
`LocalMesos` with simulated agents, and N `docket run` controller processes on one injected
wall clock that runs `clock_speed` times faster than real time, so cron minutes take seconds.

Every server listens on 127.0.0.1 only. The World also keeps the timeline scenarios need for
their checks: the faults injected (counted by kind) and the windows, in the controllers' own
(injected) time, during which no controller could act — a CronJob slot that falls in one is
excused from running when a later slot also fell in it (docs: "after downtime only the most
recent missed slot runs"). Scenarios open a window when they break something and `wait_ready`
closes it when a controller answers /readyz 200 again.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.localmesos import LocalMesos, LocalMesosConfig
from controller.queues.redis_server import RedisServer
from controller.store import EtcdServer, Store
from controller.store.etcd_server import free_port
from tests.e2e.harness import Process, controller_env


@dataclass
class WorldConfig:
    agents: int = 3
    agent_cpus: float = 4.0
    controllers: int = 1
    # Injected seconds per real second: 15 makes a cron minute 4 s. Planners' delays (job
    # and queue backoff, a Service's unreachable strategy) run this much faster too.
    clock_speed: float = 15.0
    redis: bool = True
    prefix: str = "/docket-chaos"
    # etcd's minimum lease: a controller killed with SIGKILL is replaced within ~2 s.
    lease_seconds: int = 2
    # The injected clock moves while nothing is due: the resync is what notices a cron slot.
    resync_seconds: float = 0.5
    # How soon the master resends an unacknowledged status update (Mesos' agent: 10 s).
    status_update_retry_seconds: float = 0.5
    controller_env: dict[str, str] = field(default_factory=dict)
    start_controllers: bool = True


@dataclass
class Window:
    """A span of injected time in which no controller could act (down, or etcd away)."""

    start: datetime
    end: datetime | None
    what: str


class Controller:
    """One `docket run` process of the World, on a fixed metrics port so that /readyz keeps
    its address across restarts."""

    def __init__(self, name: str, env: dict[str, str], log: Path, port: int) -> None:
        self.name = name
        self.port = port
        self.log = log
        self.process = Process({**env, "DOCKET_METRICS_ADDRESS": f"127.0.0.1:{port}"}, log)
        self.should_run = False  # False after a deliberate kill or stop
        self.starts = 0

    @property
    def pid(self) -> int | None:
        proc = self.process.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def identity(self) -> str | None:
        """What it writes into the leader key when it leads (LeaderElector's identity)."""
        pid = self.pid
        return f"{socket.gethostname()}:{pid}" if pid is not None else None

    def exited(self) -> int | None:
        """The exit code of a process that ended on its own (None: running, or killed)."""
        proc = self.process.proc
        if not self.should_run or proc is None:
            return None
        return proc.poll()

    def start(self) -> None:
        self.process.start()
        self.should_run = True
        self.starts += 1

    def kill(self) -> None:
        self.should_run = False
        if self.pid is not None:
            self.process.kill()

    def signal(self, sig: signal.Signals) -> None:
        if self.pid is not None:
            os.kill(self.pid, sig)

    def stop(self) -> int | None:
        """SIGTERM and wait: the exit code (0 after a clean shutdown)."""
        self.should_run = False
        if self.pid is None:
            return None
        self.signal(signal.SIGCONT)  # a frozen process cannot shut down
        return self.process.terminate()

    def cleanup(self) -> None:
        self.should_run = False
        with contextlib.suppress(ProcessLookupError):
            self.signal(signal.SIGCONT)
        self.process.cleanup()

    def readyz(self, timeout: float = 8.0) -> tuple[int, str]:
        """(HTTP status, body) of /readyz; (0, why) when nothing answers within `timeout`."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz",
                                        timeout=timeout) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            return 0, f"no answer: {exc}"

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"\n--- {self.name} log (tail) ---\n{text[-chars:]}"


class FastClock:
    """The injected wall clock (DOCKET_TEST_TIME_FILE): t0 + speed x real seconds elapsed,
    rewritten atomically every 20 ms so a controller never reads half a timestamp."""

    def __init__(self, path: Path, speed: float, t0: datetime | None = None) -> None:
        self.path = path
        self.speed = speed
        if t0 is None:
            # Half a minute past the next whole minute: a little ahead of real time (Mesos'
            # timestamps are real), and the first cron slot comes 30 injected seconds in.
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            t0 = now + timedelta(minutes=1, seconds=30)
        self.t0 = t0
        self._m0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write()

    def now(self) -> datetime:
        return self.t0 + timedelta(seconds=self.speed * (time.monotonic() - self._m0))

    def real_seconds(self, injected: float) -> float:
        return injected / self.speed

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(self.now().isoformat())
        os.replace(tmp, self.path)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError):  # a full disk must not kill the ticker
                self._write()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class World:
    """etcd, Redis, the embedded Mesos and the controllers of one scenario run. Use as a
    context manager: everything it started is stopped at exit, whatever happened."""

    def __init__(self, workdir: Path, config: WorldConfig | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = config or WorldConfig()
        self.etcd = EtcdServer(data_dir=self.workdir / "etcd")
        self.redis: RedisServer | None = (RedisServer(data_dir=self.workdir / "redis")
                                          if self.config.redis else None)
        self.lm = LocalMesos(LocalMesosConfig(
            port=0, agent_port=0, agents=self.config.agents, cpus=self.config.agent_cpus,
            simulate=True, heartbeat_interval=1.0, allocation_interval=0.05,
            status_update_retry_min=self.config.status_update_retry_seconds,
            default_refuse_seconds=0.2, work_dir=self.workdir / "mesos"))
        self.clock = FastClock(self.workdir / "now", self.config.clock_speed)
        self.store: Store | None = None
        self.controllers: list[Controller] = []
        self.faults: collections.Counter[str] = collections.Counter()
        self.windows: list[Window] = []
        self.events: list[tuple[float, str, str]] = []  # (real s since start, injected, what)
        self._m0 = time.monotonic()
        self.etcd_frozen = False

    # --- life --------------------------------------------------------------------------------
    def __enter__(self) -> World:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.etcd.start()
        if self.redis is not None:
            self.redis.start()
        self.lm.start()
        self.clock.start()
        self.store = Store(self.etcd.endpoint, prefix=self.config.prefix, retry_seconds=10)
        env = controller_env(
            self.etcd.endpoint, self.config.prefix, self.lm,
            DOCKET_RESYNC_SECONDS=str(self.config.resync_seconds),
            DOCKET_LEADER_LEASE_SECONDS=str(self.config.lease_seconds),
            DOCKET_TEST_TIME_FILE=str(self.clock.path), **self.config.controller_env)
        for n in range(self.config.controllers):
            self.controllers.append(Controller(f"controller-{n}", env,
                                               self.workdir / f"controller-{n}.log",
                                               free_port()))
        if self.config.start_controllers:
            self.mark_down("starting")
            for c in self.controllers:
                c.start()
            self.wait_ready(60)
        self.note("world started")

    def stop(self) -> None:
        for c in self.controllers:
            c.cleanup()
        if self.etcd_frozen:
            self.thaw_etcd()
        if self.store is not None:
            self.store.close()
        self.clock.stop()
        self.lm.stop()
        if self.redis is not None:
            self.redis.stop()
        self.etcd.stop()

    # --- timeline ----------------------------------------------------------------------------
    def now(self) -> datetime:
        """The controllers' (injected) wall clock."""
        return self.clock.now()

    def elapsed(self) -> float:
        return time.monotonic() - self._m0

    def note(self, what: str) -> None:
        self.events.append((round(self.elapsed(), 3), self.now().isoformat(), what))

    def mark_down(self, what: str) -> None:
        """No controller can act from now on (until `mark_up`)."""
        if not self.windows or self.windows[-1].end is not None:
            self.windows.append(Window(self.now(), None, what))

    def mark_up(self) -> None:
        if self.windows and self.windows[-1].end is None:
            self.windows[-1].end = self.now()

    # --- controllers -------------------------------------------------------------------------
    @property
    def user(self) -> Store:
        """A Store under the World's prefix, for what users (and the checks) read and write."""
        assert self.store is not None, "the World is not started"
        return self.store

    def leader(self) -> Controller | None:
        found = self.user.get_raw(self.user.keys.controller("leader"))
        identity = found[0].decode() if found is not None else None
        return next((c for c in self.controllers if c.identity == identity), None)

    def start_controller(self, n: int = 0) -> None:
        self.controllers[n].start()
        self.note(f"started {self.controllers[n].name}")

    def kill_controller(self, n: int = 0) -> None:
        """SIGKILL. Opens a window when no other controller is running to take over."""
        c = self.controllers[n]
        try:
            leading = self.leader() in (c, None)
        except Exception:  # etcd away: assume the worst
            leading = True
        c.kill()
        self.faults["controller_kill"] += 1
        if leading or not any(o.should_run for o in self.controllers):
            self.mark_down(f"{c.name} killed")
        self.note(f"killed {c.name}")

    def freeze_controller(self, n: int = 0) -> None:
        self.controllers[n].signal(signal.SIGSTOP)
        self.faults["controller_freeze"] += 1
        self.note(f"froze {self.controllers[n].name}")

    def thaw_controller(self, n: int = 0) -> None:
        self.controllers[n].signal(signal.SIGCONT)
        self.note(f"thawed {self.controllers[n].name}")

    def readyz(self, n: int = 0, timeout: float = 8.0) -> tuple[int, str]:
        return self.controllers[n].readyz(timeout)

    def ready_within(self, timeout: float) -> float | None:
        """Poll until a running controller answers /readyz 200 (leader, Mesos subscribed,
        caches synced), at most `timeout` s; then close the open window and return the
        seconds it took. None if none was ready in time."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            for c in self.controllers:
                if c.pid is not None and c.readyz(timeout=2.0)[0] == 200:
                    self.mark_up()
                    return time.monotonic() - start
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)  # poll interval of a bounded wait

    def wait_ready(self, timeout: float = 30.0) -> float:
        """`ready_within`, failing with every controller's /readyz and log when it times
        out."""
        took = self.ready_within(timeout)
        if took is None:
            raise AssertionError(
                f"no controller ready within {timeout}s: "
                + "; ".join(f"{c.name}: {c.readyz(2.0)}" for c in self.controllers)
                + "".join(c.tail() for c in self.controllers))
        return took

    def unexpected_exits(self) -> list[tuple[str, int]]:
        """Controllers that ended although nothing stopped them."""
        return [(c.name, code) for c in self.controllers
                if (code := c.exited()) is not None]

    # --- etcd --------------------------------------------------------------------------------
    def kill_etcd(self) -> None:
        self.etcd.kill()
        self.faults["etcd_kill"] += 1
        self.mark_down("etcd killed")
        self.note("killed etcd")

    def restart_etcd(self) -> None:
        """Start etcd again on the same ports and data; returns once it is healthy."""
        self.etcd.start()
        self.note("etcd back")

    def freeze_etcd(self) -> None:
        """SIGSTOP: connections stay open and hang instead of failing."""
        pid = self.etcd.pid
        assert pid is not None, "etcd is not running"
        os.kill(pid, signal.SIGSTOP)
        self.etcd_frozen = True
        self.faults["etcd_freeze"] += 1
        self.mark_down("etcd frozen")
        self.note("froze etcd")

    def thaw_etcd(self) -> None:
        pid = self.etcd.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self.etcd_frozen = False
        self.note("thawed etcd")

    # --- Redis -------------------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        assert self.redis is not None, "this World has no Redis"
        return self.redis.url

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.faults["redis_kill"] += 1
        self.note("killed redis")

    def restart_redis(self) -> None:
        assert self.redis is not None
        self.redis.start()
        self.note("redis back")

    # --- agents ------------------------------------------------------------------------------
    def agent_ids(self) -> list[str]:
        with self.lm.master.lock:
            return list(self.lm.master.agents)

    def agent_state(self, agent_id: str) -> str:
        with self.lm.master.lock:
            return str(self.lm.master.agents[agent_id].state)

    def partition_agent(self, agent_id: str) -> None:
        self.lm.partition_agent(agent_id)
        self.faults["agent_partition"] += 1
        self.note(f"partitioned {agent_id}")

    def heal_agent(self, agent_id: str) -> None:
        self.lm.heal_agent(agent_id)
        self.note(f"healed {agent_id}")

    def tasks_on(self, agent_id: str) -> list[str]:
        """Ids of the tasks Mesos has on an agent and that are not terminal."""
        from controller.localmesos import TERMINAL_STATES

        return [t.task_id for t in self.lm.tasks()
                if t.agent_id == agent_id and t.state not in TERMINAL_STATES]

    def describe(self) -> dict[str, Any]:
        return {"clock_speed": self.config.clock_speed, "agents": self.config.agents,
                "controllers": self.config.controllers}
