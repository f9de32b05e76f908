"""`docket up` as a user runs it: starts, serves etcdctl, stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from controller.store.etcd_server import free_port

BIN = Path(sys.executable).parent


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"never saw {needle!r}; output so far:\n{''.join(seen)}")


def test_up_serves_etcd_and_stops_cleanly(tmp_path: Path) -> None:
    port, peer = free_port(), free_port()
    proc = subprocess.Popen(
        [str(BIN / "docket"), "up", "--data-dir", str(tmp_path / "data"),
         "--etcd-port", str(port), "--etcd-peer-port", str(peer)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        banner = _wait_for_line(proc, "Press Ctrl-C")
        assert f"127.0.0.1:{port}" in banner and "put /docket/jobs/default/hello" in banner
        put = subprocess.run(
            [str(BIN / "etcdctl"), "--endpoints", f"127.0.0.1:{port}", "put",
             "/docket/jobs/default/hello", "x"], capture_output=True, text=True, timeout=20)
        assert put.returncode == 0 and "OK" in put.stdout, put.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with socket.socket() as s:  # etcd is gone: nothing listens on its port any more
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [str(BIN / "docket"), "up", "--data-dir", str(tmp_path / "d"), "--etcd-port",
             str(port), "--etcd-peer-port", str(free_port())],
            capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"port {port} is already in use" in out.stderr and "--etcd-port" in out.stderr
