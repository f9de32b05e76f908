"""`docket up`: the whole system on one machine — embedded etcd, a local Redis, embedded Mesos,
controller.

Ports are the ones each tool's users expect (etcd 2379, Redis 6379, Mesos master 5050, its
agent 5051, metrics 9102), so a bare `etcdctl` or `redis-cli` works. State lives in a data dir
so a restart keeps every object and every Redis list (Redis keeps an append-only file there).
Ctrl-C or SIGTERM stops everything cleanly, newest first: the controller, then Mesos (which
kills its tasks), then Redis, then etcd.

Redis is only for Redis-backed Queues, so it is started only when Debian's `redis-server` is
installed (scripts/install.sh installs it); without it `up` says so in one line and runs the
rest.

etcd, Redis and the controller run as child processes in sessions of their own, so a Ctrl-C in
the terminal reaches only this process and the shutdown order above holds. The controller is
`docket run` pointed at the embedded parts; its log goes to a file in the data dir. The
embedded Mesos runs in this process: its tasks are this process's children.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from controller.localmesos import LocalMesos
    from controller.queues.redis_server import RedisServer
    from controller.store import EtcdServer

NAME = "up"
HELP = ("Start embedded etcd, a local Redis (when redis-server is installed), the embedded "
        "Mesos and the controller in one command.")

HELLO_JOB = {"apiVersion": "docket.dev/v1", "kind": "Job",
             "spec": {"completions": 3, "template": {"command": "echo hello"}}}
CONTROLLER_STOP_SECONDS = 20.0


class UpError(Exception):
    """Something `up` cannot start; one line for the user, exit 1."""


def default_data_dir() -> Path:
    """./.docket-data where the current directory is writable (a checkout), else the
    per-user data dir, so `docket up` works from anywhere."""
    if os.access(Path.cwd(), os.W_OK):
        return Path(".docket-data")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "docket"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="Where etcd and Redis data, task sandboxes and logs live (default: "
             "./.docket-data if the current directory is writable, else "
             "~/.local/share/docket).")
    parser.add_argument("--etcd-port", type=int, default=2379, help="etcd client port.")
    parser.add_argument("--etcd-peer-port", type=int, default=2380,
                        help="etcd peer port.")
    parser.add_argument("--redis-port", type=int, default=6379,
                        help="Local Redis port for Redis-backed Queues, started only when "
                             "redis-server is installed.")
    parser.add_argument("--mesos-port", type=int, default=5050,
                        help="Embedded Mesos master port.")
    parser.add_argument("--agent-port", type=int, default=5051,
                        help="First embedded Mesos agent's port; the next count up.")
    parser.add_argument("--metrics-port", type=int, default=9102,
                        help="Controller metrics and health port.")
    parser.add_argument("--agents", type=int, default=1, help="Number of Mesos agents.")
    parser.add_argument("--simulate", action="store_true",
                        help="Simulated agents: tasks run no process (for scale tests).")


def _shown(path: Path) -> str:
    """A command path as the user should type it: relative when it is under the current
    directory (`.venv/bin/etcdctl`), the bare name when that is what PATH finds."""
    if shutil.which(path.name) == str(path):
        return path.name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _bin(name: str) -> Path:
    return Path(sys.executable).parent / name


def controller_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("controller.cli.run") is not None


def _check_ports(args: argparse.Namespace, with_controller: bool, with_redis: bool) -> None:
    from controller.store.etcd_server import port_in_use

    wanted = [(args.etcd_port, "etcd", "--etcd-port"),
              (args.etcd_peer_port, "etcd peer", "--etcd-peer-port"),
              (args.mesos_port, "Mesos master", "--mesos-port")]
    if with_redis:
        wanted.append((args.redis_port, "Redis", "--redis-port"))
    if not args.simulate:
        wanted += [(args.agent_port + i, "Mesos agent", "--agent-port")
                   for i in range(args.agents)]
    if with_controller:
        wanted.append((args.metrics_port, "controller metrics", "--metrics-port"))
    seen: dict[int, str] = {}
    for port, what, flag in wanted:
        if port in seen:
            raise UpError(f"port {port} is asked for twice ({seen[port]} and {what}); "
                          f"change one with {flag}")
        seen[port] = what
        if port_in_use(port):
            raise UpError(f"port {port} ({what}) is already in use — is another etcd, Redis, "
                          f"Mesos or docket up running? Change it with {flag}")


def run(args: argparse.Namespace) -> int:
    if args.agents < 1:
        print("docket up: --agents must be at least 1", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    up = _Up(args, stop)
    try:
        return up.run()
    except UpError as exc:
        print(f"docket up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        up.shutdown()


class _Up:
    def __init__(self, args: argparse.Namespace, stop: threading.Event) -> None:
        self.args = args
        self.stop = stop
        self.data = (args.data_dir or default_data_dir()).resolve()
        self.etcd: EtcdServer | None = None
        self.redis: RedisServer | None = None
        self.mesos: LocalMesos | None = None
        self.controller: subprocess.Popen[bytes] | None = None
        self.controller_log = self.data / "controller.log"

    def run(self) -> int:
        from controller.queues.redis_server import redis_installed
        from controller.store import EtcdServer, EtcdServerError

        with_controller = controller_available()
        with_redis = redis_installed()
        _check_ports(self.args, with_controller, with_redis)
        self.data.mkdir(parents=True, exist_ok=True)
        self.etcd = EtcdServer(data_dir=self.data / "etcd", client_port=self.args.etcd_port,
                               peer_port=self.args.etcd_peer_port,
                               log_path=self.data / "etcd.log")
        try:
            self.etcd.start()
        except EtcdServerError as exc:
            raise UpError(str(exc)) from None
        print(f"etcd        {self.etcd.endpoint}  (data {self.etcd.data_dir}, "
              f"log {self.etcd.log_path})", flush=True)
        self._start_redis(with_redis)
        self._start_mesos()
        if with_controller:
            self._start_controller()
        else:
            print("controller  not available in this version (no `docket run`): not started; "
                  "objects can be stored, validated and read", flush=True)
        self._banner()
        return self._watch()

    def _start_redis(self, installed: bool) -> None:
        from controller.queues.redis_server import INSTALL_HINT, RedisServer, RedisServerError

        if not installed:
            print(f"redis       not started: Redis-backed Queues need redis-server, which is "
                  f"not installed; {INSTALL_HINT}", flush=True)
            return
        self.redis = RedisServer(data_dir=self.data / "redis", port=self.args.redis_port,
                                 log_path=self.data / "redis.log")
        try:
            self.redis.start()
        except RedisServerError as exc:
            raise UpError(str(exc)) from None
        print(f"redis       {self.redis.url}  (data {self.redis.data_dir}, "
              f"log {self.redis.log_path})", flush=True)

    def _start_mesos(self) -> None:
        from controller.localmesos import LocalMesos, LocalMesosConfig

        a = self.args
        try:
            self.mesos = LocalMesos(LocalMesosConfig(
                port=a.mesos_port, agent_port=a.agent_port, agents=a.agents,
                simulate=a.simulate, work_dir=self.data / "mesos")).start()
        except OSError as exc:  # a port taken between the check and the bind
            raise UpError(f"cannot start the embedded Mesos: {exc}") from None
        mode = "simulated" if a.simulate else "real"
        print(f"mesos       {self.mesos.master_url}  ({a.agents} {mode} agent(s), "
              f"sandboxes in {self.mesos.work_dir})", flush=True)

    def _start_controller(self) -> None:
        assert self.etcd is not None and self.mesos is not None
        cmd = [sys.executable, "-m", "controller.cli.main", "run",
               "--etcd-endpoints", self.etcd.endpoint, "--key-prefix", "/docket",
               "--mesos-master", self.mesos.master_url,
               "--metrics-address", f":{self.args.metrics_port}", "--log-format", "json"]
        log: IO[bytes] = open(self.controller_log, "ab")  # noqa: SIM115 - child keeps it
        try:
            self.controller = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL,
                                               start_new_session=True)
        finally:
            log.close()
        health = f"http://127.0.0.1:{self.args.metrics_port}"
        ready = self._wait_ready(health, timeout=30.0)
        state = "ready" if ready else "started, not ready yet (see /readyz)"
        print(f"controller  {state}: metrics {health}/metrics, health {health}/readyz "
              f"(log {self.controller_log})", flush=True)

    def _wait_ready(self, base: str, timeout: float) -> bool:
        assert self.controller is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.controller.poll() is not None:
                raise UpError(f"the controller exited with status {self.controller.returncode}; "
                              f"last lines of {self.controller_log}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return True
            except OSError:
                pass
            self.stop.wait(0.2)
        return False

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self.controller_log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _banner(self) -> None:
        assert self.etcd is not None
        etcdctl = _shown(_bin("etcdctl"))
        if self.args.etcd_port != 2379:
            etcdctl += f" --endpoints {self.etcd.endpoint}"
        docket = _shown(_bin("docket"))
        etcd_flag = f" --etcd {self.etcd.endpoint}" if self.args.etcd_port != 2379 else ""
        print()
        print("Submit a Job (3 runs of `echo hello`) and watch it:")
        print(f"  {etcdctl} put /docket/jobs/default/hello '{json.dumps(HELLO_JOB)}'")
        print(f"  {docket} get jobs{etcd_flag}")
        print(f"  {docket} describe job default/hello{etcd_flag}")
        print("Press Ctrl-C to stop.", flush=True)

    def _watch(self) -> int:
        while not self.stop.wait(0.5):
            if self.etcd is not None and not self.etcd.running:
                raise UpError(f"etcd exited unexpectedly; see {self.etcd.log_path}")
            if self.redis is not None and not self.redis.running:
                raise UpError(f"redis-server exited unexpectedly; see {self.redis.log_path}")
            if self.controller is not None and self.controller.poll() is not None:
                raise UpError(f"the controller exited with status "
                              f"{self.controller.returncode}; last lines of "
                              f"{self.controller_log}:\n{self._log_tail()}")
        return 0

    def shutdown(self) -> None:
        """Newest first; each step runs even if an earlier one failed."""
        if self.controller is not None and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)
            try:
                self.controller.wait(timeout=CONTROLLER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"docket up: the controller did not stop within "
                      f"{CONTROLLER_STOP_SECONDS:.0f}s; killed", file=sys.stderr)
                self.controller.kill()
                self.controller.wait()
        if self.mesos is not None:
            self.mesos.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.etcd is not None:
            self.etcd.stop()
        if self.etcd is not None or self.mesos is not None:
            print("stopped", flush=True)
