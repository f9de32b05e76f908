"""`docket up` as a user runs it: the README quickstart end to end (etcd, the embedded Mesos
and the controller), a clean stop on Ctrl-C, and a clear refusal of a port in use."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from controller.store.etcd_server import free_port

BIN = Path(sys.executable).parent
HELLO = {"apiVersion": "docket.dev/v1", "kind": "Job",
         "spec": {"completions": 3, "template": {"command": "echo hello"}}}


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
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


def _docket(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "docket"), *argv], capture_output=True, text=True,
                          timeout=30)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_quickstart_runs_a_job_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {"--etcd-port": free_port(), "--etcd-peer-port": free_port(),
             "--mesos-port": free_port(), "--agent-port": free_port(),
             "--metrics-port": free_port()}
    argv = [str(BIN / "docket"), "up", "--data-dir", str(tmp_path / "data")]
    for flag, port in ports.items():
        argv += [flag, str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    etcd = f"127.0.0.1:{ports['--etcd-port']}"
    try:
        banner = _wait_for_line(proc, "Press Ctrl-C")
        assert "controller  ready" in banner, banner
        assert f"--endpoints {etcd} put /docket/jobs/default/hello" in banner, banner
        put = subprocess.run(
            [str(BIN / "etcdctl"), "--endpoints", etcd, "put", "/docket/jobs/default/hello",
             json.dumps(HELLO)], capture_output=True, text=True, timeout=20)
        assert put.returncode == 0 and "OK" in put.stdout, put.stderr
        deadline = time.monotonic() + 60
        table = ""
        while time.monotonic() < deadline:
            table = _docket("get", "jobs", "--etcd", etcd).stdout
            if "Succeeded" in table:
                break
            time.sleep(0.5)
        assert "hello" in table and "Succeeded" in table and "3/3" in table, table
        described = _docket("describe", "job", "default/hello", "--etcd", etcd)
        assert described.returncode == 0, described.stderr
        assert "Executions (3):" in described.stdout, described.stdout
        for index in range(3):
            assert "job.default.hello." in described.stdout
            assert f".{index}.0 " in described.stdout, described.stdout
        assert described.stdout.count("TASK_FINISHED") == 3, described.stdout
        # What the task printed is in its sandbox under the data dir.
        outs = list((tmp_path / "data" / "mesos").rglob("stdout"))
        assert len(outs) == 3 and all(p.read_text() == "hello\n" for p in outs), outs
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for flag, port in ports.items():  # everything it started is gone
        assert not _listening(port), f"something still listens on {flag} {port}"


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
    assert f"port {port} (etcd) is already in use" in out.stderr and "--etcd-port" in out.stderr
    assert not (tmp_path / "d").exists(), "nothing is created when up refuses to start"
