"""Starting and stopping a real redis-server as a child process.

Used by `docket up` (a local Redis for Redis-backed Queues, beside the embedded etcd) and by the
test fixtures (tests/fixtures/redis.py). The binary is Debian's `redis-server`, which
scripts/install.sh installs; nothing here downloads or builds one.

The server is run as a Queue's messages need it to be: bound to one address, persistence by
the append-only file only (`--appendonly yes`, no RDB snapshots), fsynced on every write
(`--appendfsync always`), so a message acknowledged by Redis survives a SIGKILL of the server
and a restart on the same directory finds every list as it was. That is the durability the
claim protocol of controller/queues/redis_source.py relies on.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from controller.store import server_process
from controller.store.etcd_server import free_port, port_in_use

INSTALL_HINT = ("run `bash scripts/install.sh` as root (it installs Debian's redis-server "
                "package), or `apt-get install redis-server`")


class RedisServerError(RuntimeError):
    """redis-server could not be started; the message says why and what to do."""


def redis_binary() -> Path:
    """The redis-server executable on PATH, or an error saying how to install it."""
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerError(f"redis-server is not installed (not on PATH); {INSTALL_HINT}")
    return Path(found)


def redis_installed() -> bool:
    return shutil.which("redis-server") is not None


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Redis on host:port answers PING with PONG.

    A raw socket rather than redis-py: this must tell "not listening yet" and "still loading the
    append-only file" (`-LOADING`) from "ready" without a client's retries or pools in the way.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(256)
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"+PONG")


@dataclass
class RedisServer:
    """One redis-server on `host` with its own data dir; restartable on the same port and
    directory, keeping its data through the append-only file."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.port:
            self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return [
            str(redis_binary()),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            # Durability by the AOF alone, fsynced before each reply: a claimed batch is on
            # disk before the controller writes the intent that refers to it.
            "--appendonly", "yes",
            "--appendfsync", "always",
            # No RDB snapshots: they would only duplicate the AOF and fork at random moments.
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "notice",
        ]

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until PING answers PONG (the AOF is loaded); raise
        RedisServerError saying why otherwise."""
        if self.running:
            return
        cmd = self.command()  # raises first if redis-server is not installed
        if port_in_use(self.port, self.host):
            raise RedisServerError(f"Redis port {self.endpoint} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or self.data_dir.parent / f"{self.data_dir.name}.redis.log"
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            # A session of its own: a Ctrl-C in `docket up`'s terminal must not reach Redis
            # before the controller has stopped.
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise RedisServerError(f"cannot run {cmd[0]}: {exc}; {INSTALL_HINT}") from None
        finally:
            log.close()
        self.log_path = log_path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RedisServerError(
                    f"redis-server exited with status {code} while starting on "
                    f"{self.endpoint}; last log lines:\n{self.log_tail()}")
            if ping(self.host, self.port):
                return
            time.sleep(0.02)  # polling interval of a bounded wait, not a synchronisation
        self.kill()
        raise RedisServerError(
            f"redis-server did not answer PING on {self.endpoint} within {timeout:.0f}s; "
            f"last log lines:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis fsyncs the AOF and exits), SIGKILL if it does not within timeout."""
        proc, self._proc = self._proc, None
        server_process.terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: only what the AOF already holds survives."""
        proc, self._proc = self._proc, None
        server_process.kill(proc)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and directory."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 15) -> str:
        return server_process.log_tail(self.log_path, lines)
