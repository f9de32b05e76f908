"""`docket up` as a user runs it: the README quickstart end to end (etcd, the embedded Mesos
and the controller; the Job, then the CronJob), a clean stop on Ctrl-C, and a clear refusal of
a port in use.

The CronJob's minutes are real minutes of the controller's wall clock, which is the one test
seam used here (DOCKET_TEST_TIME_FILE, inherited by the controller `up` starts): it runs at
real speed and, when the CronJob is put, jumps ahead to 3 s before the next whole minute, so
the first slot comes in seconds rather than in up to a minute of waiting."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.manager import TIME_FILE_ENV
from controller.store.etcd_server import free_port, free_ports
from tests.chaos.world import FastClock

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
HELLO = {"apiVersion": "docket.dev/v1", "kind": "Job",
         "spec": {"completions": 3, "template": {"command": "echo hello"}}}
TICK = {"apiVersion": "docket.dev/v1", "kind": "CronJob",
        "spec": {"schedule": "* * * * *",
                 "jobTemplate": {"spec": {"template": {"command": "echo tick"}}}}}


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
    ports = dict(zip(("--etcd-port", "--etcd-peer-port", "--mesos-port", "--agent-port",
                      "--metrics-port", "--redis-port"), free_ports(6), strict=True))
    argv = [str(BIN / "docket"), "up", "--data-dir", str(tmp_path / "data")]
    for flag, port in ports.items():
        argv += [flag, str(port)]
    clock = FastClock(tmp_path / "now", speed=1.0, t0=datetime.now(UTC))
    clock.start()
    env = {**os.environ, TIME_FILE_ENV: str(tmp_path / "now")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    etcd = f"127.0.0.1:{ports['--etcd-port']}"
    try:
        banner = _wait_for_line(proc, "Press Ctrl-C")
        assert "controller  ready" in banner, banner
        assert f"--endpoints {etcd} put /docket/jobs/default/hello" in banner, banner
        cron_put_at = _put_quickstart_cronjob(etcd, clock)
        put = subprocess.run(
            [str(BIN / "etcdctl"), "--endpoints", etcd, "put", "/docket/jobs/default/hello",
             json.dumps(HELLO)], capture_output=True, text=True, timeout=20)
        assert put.returncode == 0 and "OK" in put.stdout, put.stderr
        deadline = time.monotonic() + 60
        table = ""
        hello_done = re.compile(r"^hello\s+Succeeded\s+3/3", re.MULTILINE)
        while time.monotonic() < deadline:
            table = _docket("get", "jobs", "--etcd", etcd).stdout
            if hello_done.search(table):
                break
            time.sleep(0.5)
        assert hello_done.search(table), table
        described = _docket("describe", "job", "default/hello", "--etcd", etcd)
        assert described.returncode == 0, described.stderr
        assert "Executions (3):" in described.stdout, described.stdout
        for index in range(3):
            assert "job.default.hello." in described.stdout
            assert f".{index}.0 " in described.stdout, described.stdout
        assert described.stdout.count("TASK_FINISHED") == 3, described.stdout
        # What the task printed is in its sandbox under the data dir.
        outs = [p for p in (tmp_path / "data" / "mesos").rglob("stdout")
                if "/executors/job.default.hello." in str(p)]  # the tick Jobs run there too
        assert len(outs) == 3 and all(p.read_text() == "hello\n" for p in outs), outs
        _quickstart_cronjob(etcd, cron_put_at)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
    finally:
        clock.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for flag, port in ports.items():  # everything it started is gone
        assert not _listening(port), f"something still listens on {flag} {port}"


def _put_quickstart_cronjob(etcd: str, clock: FastClock) -> float:
    """The README's CronJob, put first: its first slot (the next minute of the controller's
    clock, 3 s away) comes while the Job part of the quickstart runs. Returns when it was put,
    by the controller's clock."""
    now = clock.now()
    clock.t0 += timedelta(seconds=(57 - now.second - now.microsecond / 1e6) % 60)
    put_at = clock.now().timestamp()
    put = subprocess.run(
        [str(BIN / "etcdctl"), "--endpoints", etcd, "put", "/docket/cronjobs/default/tick",
         json.dumps(TICK)], capture_output=True, text=True, timeout=20)
    assert put.returncode == 0 and "OK" in put.stdout, put.stderr
    return put_at


def _quickstart_cronjob(etcd: str, put_at: float) -> None:
    """Within two minutes of the put a `tick-<minutes>` Job has Succeeded, and `docket get
    cronjobs` shows LAST and NEXT; then a manual run and a suspension."""
    deadline = time.monotonic() + 120
    done: list[str] = []
    table = ""
    while time.monotonic() < deadline and not done:
        table = _docket("get", "jobs", "--etcd", etcd).stdout
        done = re.findall(r"^(tick-(\d+))\s+Succeeded\s+1/1", table, re.MULTILINE)
        if not done:
            time.sleep(0.5)
    assert done, f"no tick Job succeeded within two minutes:\n{table}"
    minutes = int(done[0][1])
    assert put_at // 60 < minutes <= put_at // 60 + 2, (put_at, table)  # a slot after the put

    cronjobs = _docket("get", "cronjobs", "--etcd", etcd).stdout
    header, row = cronjobs.splitlines()[:2]
    assert header.split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST",
                              "NEXT", "AGE"], cronjobs
    assert re.fullmatch(r"tick\s+\* \* \* \* \*\s+UTC\s+false\s+[01]\s+[\d.]+m?s\s+"
                        r"in \d+s\s+\S+", row), cronjobs

    created = _docket("create", "job", "tick-by-hand", "--from", "cronjob/tick", "--etcd", etcd)
    assert created.returncode == 0, created.stderr
    deadline = time.monotonic() + 60
    described = ""
    while time.monotonic() < deadline:
        described = _docket("describe", "cronjob", "default/tick", "--etcd", etcd).stdout
        if re.search(r"tick-by-hand\s+Succeeded\s+1/1\s+manual", described):
            break
        time.sleep(0.5)
    assert re.search(r"tick-by-hand\s+Succeeded\s+1/1\s+manual", described), described
    assert re.search(rf"tick-{minutes}\s+Succeeded\s+1/1\s+schedule", described), described

    suspended = _docket("suspend", "cronjob", "tick", "--etcd", etcd)
    assert suspended.returncode == 0 and "suspended" in suspended.stdout, suspended.stderr
    row = _docket("get", "cronjobs", "--etcd", etcd).stdout.splitlines()[1]
    assert re.search(r"\sUTC\s+true\s.*<suspended>", row), row


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
