"""`docket up` supervises its controller: a controller killed with SIGKILL is restarted while
etcd and the embedded Mesos stay up, and the new one adopts the running task (same task id,
still TASK_RUNNING, nothing launched again); killed again, it waits twice as long, and Ctrl-C
during that wait stops everything. Plus the restart
backoff and the exit description, which need no server."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.cli.up import RestartBackoff, describe_exit
from controller.store import Store
from controller.store.etcd_server import free_ports

BIN = Path(sys.executable).parent
SLEEPER = {"apiVersion": "docket.dev/v1", "kind": "Job",
           "spec": {"template": {"command": "sleep 60",
                                 "resources": {"cpus": 0.1, "mem": 16}}}}


class Lines:
    """The output of a process, read by a thread, so that every wait on it is bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self._lines.put(line)
            self._lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"never saw {pattern!r}; output so far:\n{''.join(self.seen)}")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status), resp.read().decode()
    except OSError:
        return 0, ""


def _until(check: Callable[[], Any], timeout: float, what: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what()}")
        time.sleep(0.1)


def _tasks(master: str) -> list[dict[str, Any]]:
    status, body = _get(f"{master}/tasks")
    assert status == 200, f"{master}/tasks answered {status}"
    tasks: list[dict[str, Any]] = json.loads(body)["tasks"]
    return tasks


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
def test_a_killed_controller_is_restarted_and_adopts_its_running_task(tmp_path: Path) -> None:
    ports = dict(zip(("--etcd-port", "--etcd-peer-port", "--mesos-port", "--agent-port",
                      "--metrics-port", "--redis-port"), free_ports(6), strict=True))
    argv = [str(BIN / "docket"), "up", "--data-dir", str(tmp_path / "data")]
    for flag, port in ports.items():
        argv += [flag, str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Lines(proc)
    master = f"http://127.0.0.1:{ports['--mesos-port']}"
    health = f"http://127.0.0.1:{ports['--metrics-port']}"
    store = Store(f"127.0.0.1:{ports['--etcd-port']}", prefix="/docket", retry_seconds=10)
    try:
        first = int(out.wait_for(r"controller  ready \(pid (\d+)\)", timeout=60).group(1))
        out.wait_for("Press Ctrl-C", timeout=10)
        store.put_raw(store.keys.object("jobs", "default", "sleeper"),
                      json.dumps(SLEEPER).encode())
        running = _until(
            lambda: [t for t in _tasks(master) if t["state"] == "TASK_RUNNING"], 20,
            lambda: f"no task running: {_tasks(master)}")
        assert len(running) == 1, running
        task_id = running[0]["id"]

        os.kill(first, signal.SIGKILL)
        exited = out.wait_for(r"controller  exited with (.*); restarting in (\S+)s \(log: ",
                              timeout=10)
        assert exited.group(1).startswith("signal SIGKILL"), exited.group(0)
        assert exited.group(2) == "1", exited.group(0)  # the first restart: the initial delay
        assert "its leader lease revoked" in exited.string, exited.string
        restarted = int(out.wait_for(r"controller  restarted \(pid (\d+)\)", 10).group(1))
        assert restarted != first
        assert int(out.wait_for(r"controller  ready \(pid (\d+)\)", 20).group(1)) == restarted
        assert _get(f"{health}/readyz")[0] == 200

        # The new controller has reconciled the Job and counts its task as running ...
        def adopted() -> bool:
            text = _get(f"{health}/metrics")[1]
            return (_metric_sum(text, "docket_reconcile_total", kind="Job", result="success") >= 1
                    and _metric_sum(text, "docket_tasks_active", state="running") >= 1)
        _until(adopted, 15, lambda: "\n".join(
            line for line in _get(f"{health}/metrics")[1].splitlines()
            if line.startswith(("docket_reconcile_total", "docket_tasks_active"))))
        # ... the very task the killed one launched: nothing was launched again.
        tasks = _tasks(master)
        assert [(t["id"], t["state"]) for t in tasks] == [(task_id, "TASK_RUNNING")], tasks
        records = store.list_executions("jobs", "default", "sleeper")
        assert [e.record.task_id for e in records] == [task_id], records

        # Killed again within a minute: the delay doubles; Ctrl-C during it stops everything.
        os.kill(restarted, signal.SIGKILL)
        again = out.wait_for(r"controller  exited with (.*); restarting in (\S+)s", 10)
        assert again.group(1).startswith("signal SIGKILL") and again.group(2) == "2", again
        pending = len(out.seen)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
        out.wait_for("^stopped$", 5)
        assert not any("restarted" in line for line in out.seen[pending:]), out.seen
    finally:
        store.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for flag, port in ports.items():  # everything it started is gone
        assert not _listening(port), f"something still listens on {flag} {port}"


def test_restart_backoff_doubles_to_the_maximum_and_resets_after_a_long_run() -> None:
    backoff = RestartBackoff(initial=1, maximum=30, reset_after=60)
    assert [backoff.after_exit(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_exit(60) == 1  # it stayed up a minute: healthy again
    assert backoff.after_exit(59) == 2


def test_exit_is_described_by_status_or_signal() -> None:
    assert describe_exit(1) == "status 1"
    assert describe_exit(0) == "status 0"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(-200) == "signal 200"
