"""The examples of deploy/examples/client/, run as a user runs them (subprocesses with
`--etcd host:port`) against the test's etcd and an embedded Mesos with a real agent, driven
by the in-process controller."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.localmesos import LocalMesos
from controller.store import EtcdServer, Store
from tests.e2e.harness import Docket

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "client"


@pytest.fixture
def example(store: Store, etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path,
            local_mesos: Callable[..., LocalMesos]
            ) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    d = Docket(store, local_mesos(work_dir=tmp_path / "mesos")).start()

    def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(EXAMPLES / script), "--etcd", etcd_server.endpoint,
             "--prefix", etcd_prefix, *args],
            capture_output=True, text=True, timeout=60)

    yield run
    d.stop()


def test_run_hello_then_subscribe_replays_its_events(
        example: Callable[..., subprocess.CompletedProcess[str]], store: Store) -> None:
    _, start = store.list_raw(store.keys.status_prefix("jobs"))
    hello = example("run_hello.py", "--completions", "2")
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.splitlines()[0] == "job default/hello: Succeeded"
    assert hello.stdout.count("TASK_FINISHED exit 0") == 2

    failed = example("run_hello.py", "--name", "oops", "--command", "exit 3",
                     "--completions", "1")
    assert failed.returncode == 1
    assert "job default/oops failed" in failed.stderr and "exit codes [3]" in failed.stderr

    sub = example("subscribe.py", "--kind", "Job", "--name", "hello",
                  "--from-revision", str(start + 1), "--until-ended", "hello")
    assert sub.returncode == 0, sub.stderr
    lines = [json.loads(line) for line in sub.stdout.splitlines()]
    assert {line["name"] for line in lines} == {"hello"}
    assert lines[-1]["event"] == "status" and lines[-1]["phase"] == "Succeeded"
    finished = [line for line in lines if line.get("state") == "TASK_FINISHED"]
    assert len(finished) == 2 and all(line["exit"] == 0 for line in finished)
    revisions = [line["revision"] for line in lines]
    assert revisions == sorted(revisions)


def test_submit_many(example: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = example("submit_many.py", "-n", "3", "--fail", "1")
    assert out.returncode == 1, out.stderr
    lines = sorted(out.stdout.splitlines())
    assert lines[0] == "batch-0: Succeeded (1 execution(s))"
    assert lines[1].startswith("batch-1: Failed (job default/batch-1 failed")
    assert "exit codes [1]" in lines[1]
    assert lines[2] == "batch-2: Succeeded (1 execution(s))"


def test_async_events(example: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = example("async_events.py", "--completions", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "done: Succeeded, 2 execution(s)"
    assert sum(1 for line in lines if line.endswith("TASK_FINISHED exit 0")) == 2
    assert "phase Succeeded" in lines
