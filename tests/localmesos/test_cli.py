"""`docket local-mesos` as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from controller.store.etcd_server import free_port

pytestmark = pytest.mark.integration

DOCKET = str(Path(sys.executable).parent / "docket")


def test_local_mesos_serves_version_and_health_and_stops() -> None:
    port = free_port()
    proc = subprocess.Popen([DOCKET, "local-mesos", "--port", str(port), "--agent-port", "0",
                             "--agents", "2", "--attribute", "rack=r1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/version") as r:
                    assert json.loads(r.read())["version"] == "1.11.0"
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/state") as r:
            state = json.loads(r.read())
        assert len(state["slaves"]) == 2
        assert state["slaves"][0]["attributes"] == {"rack": "r1"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_local_mesos_port_in_use() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([DOCKET, "local-mesos", "--port", str(port)], capture_output=True,
                             text=True, timeout=20)
    assert out.returncode == 1 and f"port {port} is already in use" in out.stderr
