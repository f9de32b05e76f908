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
`docket run` pointed at the embedded parts; its log goes to a file in the data dir (appended
to, across restarts). The embedded Mesos runs in this process: its tasks are this process's
children.

`up` supervises the controller as a process supervisor would: once it has started, a
controller that exits (any status, or killed by a signal) is started again after a backoff
(1 s, doubling up to 30 s; back to 1 s once a controller stayed up 60 s), while etcd, Redis
and Mesos stay up, so running tasks keep running and the new controller adopts them (Mesos
keeps a framework's tasks for its failover timeout; the framework id is in etcd). Each
restart is one line on the terminal. A dead controller's leader lease would hold off its
successor for the lease's TTL; `up` revokes it, but only when the leader key names exactly the
process that `up` has just reaped, so it can never depose a live controller. A controller
that exits before it was ever ready is not restarted: that is a configuration problem, shown
with the end of its log. Ctrl-C or SIGTERM stops everything, also while a restart is pending.

`up --secure` runs etcd as production should: TLS with client certificates (made once in
`<data dir>/tls` by controller/store/certs.py) and authentication on with Docket's
least-privilege roles (controller/store/roles.py; passwords made once, 0600, in `<data
dir>/auth`): the controller connects as `docket-controller`, the printed lines as
`docket-app`. A data dir once secured is refused without `--secure`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
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
    from controller.store import EtcdSecurity, EtcdServer
    from controller.store.certs import LocalPki

NAME = "up"
HELP = ("Start embedded etcd, a local Redis (when redis-server is installed), the embedded "
        "Mesos and the controller in one command.")

HELLO_JOB = {"apiVersion": "docket.dev/v1", "kind": "Job",
             "spec": {"completions": 3, "template": {"command": "echo hello"}}}
CONTROLLER_STOP_SECONDS = 20.0
WATCH_SECONDS = 0.25
"""How often `up` checks its children (and a restarted controller's readiness)."""
RESTART_INITIAL_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_AFTER_SECONDS = 60.0
"""A controller that stayed up this long is healthy: its next restart waits the initial
delay again."""


class UpError(Exception):
    """Something `up` cannot start; one line for the user, exit 1."""


class RestartBackoff:
    """The delay before each restart of the controller: `initial`, doubling after each exit up
    to `maximum`, and back to `initial` after a run of at least `reset_after` seconds."""

    def __init__(self, initial: float = RESTART_INITIAL_SECONDS,
                 maximum: float = RESTART_MAX_SECONDS,
                 reset_after: float = RESTART_RESET_AFTER_SECONDS) -> None:
        self.initial, self.maximum, self.reset_after = initial, maximum, reset_after
        self._next = initial

    def after_exit(self, uptime: float) -> float:
        """The delay before restarting a controller that ran `uptime` seconds."""
        if uptime >= self.reset_after:
            self._next = self.initial
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay


def describe_exit(returncode: int) -> str:
    """`status 1`, or `signal SIGKILL` for a child killed by a signal (Popen's negative
    return code)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


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
    parser.add_argument("--secure", action="store_true",
                        help="etcd over TLS with client certificates and with authentication "
                             "on: certificates in <data dir>/tls, passwords in <data "
                             "dir>/auth; the controller runs as etcd user docket-controller, "
                             "the printed commands as docket-app.")


def _shown(path: Path) -> str:
    """A command path as the user should type it: relative when it is under the current
    directory (`.venv/bin/etcdctl`), the bare name when that is what PATH finds."""
    if shutil.which(path.name) == str(path):
        return path.name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _ready(base: str) -> bool:
    """True when the controller at `base` answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


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
        self.controller_started = 0.0
        self.controller_ready = False
        self.backoff = RestartBackoff()
        self.secure: bool = bool(getattr(args, "secure", False))
        self.tls_dir, self.auth_dir = self.data / "tls", self.data / "auth"
        self.pki: LocalPki | None = None

    def run(self) -> int:
        from controller.queues.redis_server import redis_installed
        from controller.store import EtcdServer, EtcdServerError

        if not self.secure and (self.auth_dir / "root.password").exists():
            raise UpError(f"{self.data} was set up by `docket up --secure` (its etcd requires "
                          "TLS and authentication): run `docket up --secure`")
        with_controller = controller_available()
        with_redis = redis_installed()
        _check_ports(self.args, with_controller, with_redis)
        self.data.mkdir(parents=True, exist_ok=True)
        pki = self.pki = self._certificates() if self.secure else None
        self.etcd = EtcdServer(data_dir=self.data / "etcd", client_port=self.args.etcd_port,
                               peer_port=self.args.etcd_peer_port,
                               log_path=self.data / "etcd.log",
                               cert_file=pki.server_cert if pki else None,
                               key_file=pki.server_key if pki else None,
                               trusted_ca_file=pki.ca if pki else None)
        try:
            self.etcd.start()
        except EtcdServerError as exc:
            raise UpError(str(exc)) from None
        how = ""
        if self.secure:
            self._secure_etcd()
            how = "TLS with client certificates, authentication on; "
        print(f"etcd        {self.etcd.endpoint}  ({how}data {self.etcd.data_dir}, "
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

    def _certificates(self) -> LocalPki:
        """The CA and certificates of `--secure`, made once in the data dir."""
        from controller.store.certs import CertError, ensure_local_pki

        try:
            pki, made = ensure_local_pki(self.tls_dir)
        except CertError as exc:
            raise UpError(f"cannot make the TLS certificates: {exc}") from None
        print(f"tls         {'made' if made else 'reusing'} a CA and certificates in "
              f"{self.tls_dir}", flush=True)
        return pki

    def _security(self, user: str | None = None) -> EtcdSecurity:
        from controller.store.roles import password_file

        assert self.pki is not None
        pw = password_file(self.auth_dir, user).read_text().strip() if user else None
        return self.pki.controller_security(user, pw)

    def _secure_etcd(self) -> None:
        from controller.store import StoreError
        from controller.store.roles import secure_local_etcd

        assert self.etcd is not None
        try:
            secure_local_etcd(self.etcd.endpoint, self._security(), self.auth_dir)
        except (StoreError, ValueError, OSError) as exc:
            raise UpError(f"cannot set up etcd's users and roles: {exc}") from None

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

    def _spawn_controller(self) -> subprocess.Popen[bytes]:
        assert self.etcd is not None and self.mesos is not None
        cmd = [sys.executable, "-m", "controller.cli.main", "run",
               "--etcd-endpoints", self.etcd.endpoint, "--key-prefix", "/docket",
               "--mesos-master", self.mesos.master_url,
               "--metrics-address", f":{self.args.metrics_port}", "--log-format", "json"]
        if self.secure:
            from controller.store.roles import CONTROLLER, password_file

            sec = self._security()
            cmd += ["--cacert", str(sec.ca_cert), "--cert", str(sec.cert), "--key",
                    str(sec.key), "--user", CONTROLLER, "--password-file",
                    str(password_file(self.auth_dir, CONTROLLER))]
        log: IO[bytes] = open(self.controller_log, "ab")  # noqa: SIM115 - child keeps it
        try:
            self.controller = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL,
                                               start_new_session=True)
        finally:
            log.close()
        self.controller_started = time.monotonic()
        self.controller_ready = False
        return self.controller

    @property
    def _health(self) -> str:
        return f"http://127.0.0.1:{self.args.metrics_port}"

    def _start_controller(self) -> None:
        proc = self._spawn_controller()
        ready = self._wait_ready(self._health, timeout=30.0)
        self.controller_ready = ready
        state = "ready" if ready else "started, not ready yet (see /readyz)"
        print(f"controller  {state} (pid {proc.pid}): metrics {self._health}/metrics, "
              f"health {self._health}/readyz (log {self.controller_log})", flush=True)

    def _wait_ready(self, base: str, timeout: float) -> bool:
        assert self.controller is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.controller.poll() is not None:
                raise UpError(f"the controller exited with status {self.controller.returncode}; "
                              f"last lines of {self.controller_log}:\n{self._log_tail()}")
            if _ready(base):
                return True
            self.stop.wait(0.2)
        return False

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self.controller_log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _banner(self) -> None:
        """The commands that work against this system (with --secure: as docket-app, over
        TLS, the password read from its file, never shown)."""
        import shlex

        from controller.store.roles import APP, CONTROLLER, password_file

        assert self.etcd is not None
        etcdctl, docket, ep = _shown(_bin("etcdctl")), _shown(_bin("docket")), self.etcd.endpoint
        flags = ""
        if self.args.etcd_port != 2379 or self.secure:
            etcdctl += f" --endpoints {ep}"
            flags = f" --etcd {ep}"
        if self.pki is not None:
            pki, pw = self.pki, password_file(self.auth_dir, APP)
            ca, cert, key, pw_file = (shlex.quote(_shown(p)) for p in (
                pki.ca, pki.client_cert, pki.client_key, pw))
            tls = f"--cacert {ca} --cert {cert} --key {key} --user {APP}"
            etcdctl = f'ETCDCTL_PASSWORD="$(cat {pw_file})" {etcdctl} {tls}'
            flags += f" {tls} --password-file {pw_file}"
        print()
        if self.secure:
            print(f"etcd requires TLS and a password; the controller runs as etcd user "
                  f"{CONTROLLER}; passwords (0600, root's too) are in {_shown(self.auth_dir)}.")
        print(f"Submit a Job (3 runs of `echo hello`){f' as {APP}' if self.secure else ''} "
              "and watch it:")
        print(f"  {etcdctl} put /docket/jobs/default/hello '{json.dumps(HELLO_JOB)}'")
        print(f"  {docket} get jobs{flags}")
        print(f"  {docket} describe job default/hello{flags}")
        print("Press Ctrl-C to stop.", flush=True)

    def _watch(self) -> int:
        while not self.stop.wait(WATCH_SECONDS):
            if self.etcd is not None and not self.etcd.running:
                raise UpError(f"etcd exited unexpectedly; see {self.etcd.log_path}")
            if self.redis is not None and not self.redis.running:
                raise UpError(f"redis-server exited unexpectedly; see {self.redis.log_path}")
            if self.controller is not None:
                self._supervise(self.controller)
        return 0

    def _supervise(self, proc: subprocess.Popen[bytes]) -> None:
        """One look at the controller: announce a restarted one once it is ready; restart
        one that has exited, after the backoff (returning early on Ctrl-C)."""
        returncode = proc.poll()
        if returncode is None:
            if not self.controller_ready and _ready(self._health):
                self.controller_ready = True
                print(f"controller  ready (pid {proc.pid})", flush=True)
            return
        uptime = time.monotonic() - self.controller_started
        delay = self.backoff.after_exit(uptime)
        released = self._release_leadership(proc.pid)
        print(f"controller  exited with {describe_exit(returncode)} after "
              f"{uptime:.1f}s; restarting in {delay:g}s (log: {self.controller_log})"
              f"{'; its leader lease revoked' if released else ''}", flush=True)
        if self.stop.wait(delay):
            return
        new = self._spawn_controller()
        print(f"controller  restarted (pid {new.pid}); waiting for it to be ready",
              flush=True)

    def _release_leadership(self, pid: int) -> bool:
        """Revoke the leader lease of the controller `pid` that `up` has just reaped, so its
        successor leads at once rather than after the lease's TTL. Only when the leader key
        names that very process (`host:pid`, the identity `docket run` campaigns with):
        any other holder is alive, or not ours. Best effort: on any failure the successor
        simply waits for the lease to expire."""
        from controller.store import Store
        from controller.store.roles import CONTROLLER

        assert self.etcd is not None
        identity = f"{socket.gethostname()}:{pid}".encode()
        try:
            store = Store(self.etcd.endpoint, prefix="/docket", timeout=2.0, retry_seconds=2.0,
                          security=self._security(CONTROLLER) if self.secure else None)
        except (ValueError, OSError):
            return False
        try:
            key = store.keys.controller("leader")
            raw = store.client.raw
            value, meta = store.client.call("get", key, lambda: raw.get(key))
            if value != identity or meta is None or not meta.lease_id:
                return False
            store.revoke_lease(int(meta.lease_id))
            return True
        except Exception:  # best effort, see the docstring
            return False
        finally:
            store.close()

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
