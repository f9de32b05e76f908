"""`docket get -l SELECTOR`, `-o name` and `-w` against a real etcd. The watch runs as a user
runs it, as a process ended by Ctrl-C (SIGINT), and must exit 0; every wait is bounded."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from controller.api import JobPhase, JobStatus
from controller.cli.main import main
from controller.store import EtcdServer, Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def job(name: str, labels: dict[str, str] | None = None, namespace: str = "default") -> bytes:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return json.dumps({"apiVersion": "docket.dev/v1", "kind": "Job", "metadata": meta,
                       "spec": {"template": {"command": "echo hi"}}}).encode()


def put_job(store: Store, name: str, labels: dict[str, str] | None = None,
            namespace: str = "default") -> None:
    store.put_raw(store.keys.object("jobs", namespace, name), job(name, labels, namespace))


@pytest.fixture
def run(store: Store, etcd_server: EtcdServer, capsys: pytest.CaptureFixture[str]) -> Any:
    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, "--etcd", etcd_server.endpoint, "--prefix", store.keys.prefix])
        out, err = capsys.readouterr()
        return code, out, err
    return call


def _names(out: str) -> list[str]:
    return [line.split()[0] for line in out.strip().splitlines()[1:]]


def test_label_selector_and_output_name(store: Store, run: Any) -> None:
    put_job(store, "api", {"team": "a", "tier": "web"})
    put_job(store, "worker", {"team": "a", "tier": "batch"})
    put_job(store, "report", {"team": "b"})
    put_job(store, "bare")
    put_job(store, "elsewhere", {"team": "a"}, namespace="team-a")
    store.put_raw(store.keys.object("jobs", "default", "broken"), b"kind: [")

    code, out, err = run("get", "jobs", "-l", "team=a")
    assert code == 0, err
    assert _names(out) == ["api", "worker"]
    assert _names(run("get", "jobs", "-l", "team=a,tier!=web")[1]) == ["worker"]
    assert _names(run("get", "jobs", "-l", "team==a, tier=web")[1]) == ["api"]
    # != also holds where the label is absent (kubectl's meaning); never for an invalid spec
    assert _names(run("get", "jobs", "-l", "team!=a")[1]) == ["bare", "report"]
    assert _names(run("get", "jobs", "-l", "!team")[1]) == ["bare"]
    assert _names(run("get", "jobs", "-l", "tier")[1]) == ["api", "worker"]
    assert _names(run("get", "jobs", "-A", "-l", "team=a")[1]) == ["default", "default",
                                                                   "team-a"]
    code, out, _ = run("get", "jobs", "-l", "team=nobody")
    assert code == 0 and "No jobs matching team=nobody found in namespace default." in out
    code, _, err = run("get", "jobs", "-l", "team in (a,b)")
    assert code == 1 and "label selector" in err

    code, out, err = run("get", "jobs", "-o", "name", "-l", "team=a")
    assert (code, out) == (0, "job/default/api\njob/default/worker\n"), err
    code, out, _ = run("get", "job", "-A", "-o", "name", "-l", "team=a")
    assert out.splitlines() == ["job/default/api", "job/default/worker",
                                "job/team-a/elsewhere"]
    code, out, err = run("get", "jobs", "-o", "name", "-n", "empty")
    assert (code, out) == (0, "") and "No jobs found" in err
    code, out, _ = run("get", "jobs", "-o", "json", "-l", "team=b")
    assert [i["metadata"]["name"] for i in json.loads(out)["items"]] == ["report"]


def test_watch_with_timeout_prints_the_table_and_exits_0(store: Store, run: Any) -> None:
    put_job(store, "hello")
    started = time.monotonic()
    code, out, err = run("get", "jobs", "-w", "--timeout", "0.3")
    assert code == 0, err
    assert time.monotonic() - started < 10
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["EVENT", "NAME", "PHASE"]
    assert lines[1].split()[:3] == ["ADDED", "hello", "Pending"]
    code, _, err = run("get", "jobs", "--timeout", "1")
    assert code == 1 and "--timeout is for -w" in err


class _Lines:
    """A process' stdout, line by line, read by a thread so that waits can be bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self._q.put(line.rstrip("\n"))
            self._q.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, *words: str, timeout: float = 20.0) -> list[str]:
        """The first line holding every word (as whitespace-separated fields)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if all(w in line.split() for w in words):
                    self.seen.remove(line)
                    return line.split()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line with {words} within {timeout}s: {self.seen}")
            try:
                got = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if got is None:
                raise AssertionError(f"output ended without {words}: {self.seen}")
            self.seen.append(got)


def test_watch_shows_puts_status_changes_and_deletes_until_sigint(
        store: Store, etcd_server: EtcdServer) -> None:
    put_job(store, "before", {"team": "a"})
    put_job(store, "unlabelled")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli.main", "get", "jobs", "-w", "-l", "team=a",
         "--etcd", etcd_server.endpoint, "--prefix", store.keys.prefix],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = _Lines(proc)
        lines.wait_for("EVENT", "NAME")
        assert lines.wait_for("ADDED", "before")[2] == "Pending"

        put_job(store, "during", {"team": "a"})
        assert lines.wait_for("ADDED", "during")[2] == "Pending"
        stored = store.get("jobs", "default", "during")
        assert stored is not None
        store.put_status("jobs", "default", "during",
                         JobStatus(phase=JobPhase.RUNNING, active=1, uid=stored.uid), None)
        assert lines.wait_for("MODIFIED", "during")[2] == "Running"
        put_job(store, "not-selected", {"team": "b"})
        store.delete_object("jobs", "default", "during")
        lines.wait_for("DELETED", "during")
        # a label edit takes an object out of the view
        put_job(store, "before", {"team": "b"})
        lines.wait_for("DELETED", "before")
        assert not any("not-selected" in line or "unlabelled" in line for line in lines.seen)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert code == 0, err
    assert "Traceback" not in err
