"""`docket logs` against a real etcd and the embedded Mesos with a real agent: Jobs are run by
the in-process controller, and their output is read back the way Mesos' tools read it — the
master's agent list, the agent's `/state`, the agent's `/files/read` — never from disk."""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.api import ExecutionRecord
from controller.cli.logs import tail_start
from controller.cli.main import main
from controller.localmesos import LocalMesos
from controller.reconcile.tasks import TERMINAL_STATES
from controller.store import EtcdServer, Store
from controller.store.etcd_server import free_port
from tests.e2e.harness import Docket, template

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Env:
    def __init__(self, store: Store, endpoint: str, lm: LocalMesos, docket: Docket,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.store, self.endpoint, self.lm, self.docket = store, endpoint, lm, docket
        self.capsys = capsys

    def flags(self) -> list[str]:
        return ["--etcd", self.endpoint, "--prefix", self.store.keys.prefix,
                "--mesos-master", self.lm.master_url]

    def logs(self, *argv: str, master: str | None = None) -> tuple[int, str, str]:
        self.capsys.readouterr()
        flags = self.flags()
        if master is not None:
            flags[-1] = master
        code = main(["logs", *argv, *flags])
        out, err = self.capsys.readouterr()
        # The controller runs in this process too, and its log lines (structlog's console
        # format) can land in the same captured stdout while the command runs.
        out = "".join(line for line in out.splitlines(keepends=True)
                      if not _CONTROLLER_LOG.match(line))
        return code, out, err

    def record(self, job: str, index: int = 0) -> ExecutionRecord:
        return max((r for r in self.docket.executions(job) if r.index == index),
                   key=lambda r: r.attempt)


_CONTROLLER_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\w+\s*\] ")


@pytest.fixture
def env(store: Store, etcd_server: EtcdServer, local_mesos: Callable[..., LocalMesos],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Env]:
    lm = local_mesos(work_dir=tmp_path / "mesos")
    docket = Docket(store, lm, resync_seconds=300).start()
    try:
        yield Env(store, etcd_server.endpoint, lm, docket, capsys)
    finally:
        docket.stop()


def test_prints_stdout_stderr_a_tail_and_picks_executions(env: Env) -> None:
    env.docket.put_job("hello", {"template": template("echo hello")})
    env.docket.put_job("multi", {
        "completions": 2, "parallelism": 2, "completionMode": "Indexed",
        "template": template("echo start $DOCKET_JOB_INDEX; echo err $DOCKET_JOB_INDEX >&2; "
                             "seq 1 5")})
    assert env.docket.wait_phase("hello", "Succeeded", "Failed").phase == "Succeeded"
    assert env.docket.wait_phase("multi", "Succeeded", "Failed").phase == "Succeeded"

    # The README's quickstart.
    assert env.logs("job", "default/hello") == (0, "hello\n", "")
    assert env.logs("job", "hello", "-n", "default")[:2] == (0, "hello\n")
    assert env.logs("job", "default/hello", "--stderr")[:2] == (0, "")

    body = {i: f"start {i}\n1\n2\n3\n4\n5\n" for i in (0, 1)}
    assert env.logs("jobs", "default/multi", "--index", "0")[:2] == (0, body[0])
    assert env.logs("job", "default/multi", "--index", "1", "--stderr")[:2] == (0, "err 1\n")
    assert env.logs("job", "default/multi", "--index", "1", "--tail", "2")[:2] == (0, "4\n5\n")
    assert env.logs("job", "default/multi", "--index", "0", "--tail", "0")[:2] == (0, "")
    assert env.logs("job", "default/multi", "--index", "0", "--tail", "99")[:2] == (0, body[0])
    task = env.record("multi", 1).task_id
    assert env.logs("job", "default/multi", "--task", task)[:2] == (0, body[1])
    # The default is the newest execution: submitted last, then highest attempt and index.
    newest = max(env.docket.executions("multi"), key=lambda r: (
        r.submitted_at or datetime.min.replace(tzinfo=UTC), r.attempt, r.index))
    assert env.logs("job", "default/multi")[:2] == (0, body[newest.index])
    # Following a task that has ended prints all of it and returns.
    assert env.logs("job", "default/multi", "--index", "0", "-f", "--tail", "1")[:2] == \
        (0, "5\n")

    # A CronJob's newest Job (here a manual run, owned as a scheduled one is).
    cron = {"apiVersion": "docket.dev/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default"},
            "spec": {"schedule": "0 0 1 1 *", "suspend": True,
                     "jobTemplate": {"spec": {"template": template("echo tock")}}}}
    env.store.put_raw(env.store.keys.object("cronjobs", "default", "tick"),
                      json.dumps(cron).encode())
    code, _, err = env.logs("cronjob", "default/tick")
    assert code == 1 and "cronjob default/tick has no Jobs" in err
    assert main(["create", "job", "tick-now", "--from", "cronjob/tick", *env.flags()[:4]]) == 0
    assert env.docket.wait_phase("tick-now", "Succeeded", "Failed").phase == "Succeeded"
    code, out, err = env.logs("cj", "default/tick")
    assert (code, out) == (0, "tock\n") and "job default/tick-now" in err

    # Mistakes and missing things: exit 1, one line naming what is missing.
    code, out, err = env.logs("job", "default/nope")
    assert (code, out) == (1, "") and "job default/nope not found" in err
    code, _, err = env.logs("job", "default/multi", "--index", "7")
    assert code == 1 and "job default/multi has no execution of index 7" in err
    assert "indexes with executions: 0,1" in err
    code, _, err = env.logs("job", "default/multi", "--task", "job.default.multi.1.0.9")
    assert code == 1 and "has no execution job.default.multi.1.0.9" in err
    code, _, err = env.logs("job", "default/hello", "--tail", "-1")
    assert code == 1 and "--tail must be 0 or more" in err
    code, _, err = env.logs("widget", "default/hello")
    assert code == 1 and "unknown kind 'widget'" in err
    with pytest.raises(SystemExit) as usage:
        main(["logs", "job", "default/multi", "--index", "0", "--task", task])
    assert usage.value.code == 2

    # Mesos is not where --mesos-master says, or not an address at all.
    code, _, err = env.logs("job", "default/hello", master=f"127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach" in err and "Mesos master" in err
    code, _, err = env.logs("job", "default/hello", master="https://mesos:5050")
    assert code == 1 and "TLS to the Mesos master is not supported" in err

    # The sandbox garbage collected under a record that still names it.
    record = env.record("hello")
    assert record.sandbox_path is not None
    sandbox = env.lm.resolve_sandbox_path(record.sandbox_path)
    assert sandbox is not None
    shutil.rmtree(sandbox.resolve())  # runs/latest links to the run's directory
    code, out, err = env.logs("job", "default/hello")
    assert (code, out) == (1, "")
    assert f"stdout of task {record.task_id} on agent {record.agent_id}" in err
    assert "garbage collected" in err


def _put_record(store: Store, job: str, record: ExecutionRecord) -> None:
    key = store.keys.execution("jobs", "default", job, record.task_id)
    store.put_raw(key, record.model_dump_json().encode())


def test_no_executions_agent_gone_and_sandbox_unknown(env: Env) -> None:
    env.docket.put_job("waiting", {"suspend": True, "template": template("echo never")})
    code, _, err = env.logs("job", "default/waiting")
    assert code == 1 and "job default/waiting has no executions yet" in err

    # Records the controller did not write (it never launched these): their agent is not
    # registered, or does not know the task.
    env.docket.stop()
    stored = env.store.get("jobs", "default", "waiting")
    assert stored is not None
    now = datetime.now(UTC)
    agent = json.loads(_get(env.lm.master_url + "/master/slaves"))["slaves"][0]["id"]
    task = f"job.default.waiting.{stored.uid}.0.0"
    _put_record(env.store, "waiting", ExecutionRecord(
        task_id=task, index=0, attempt=0, state="TASK_FINISHED", agent_id="S-gone",
        submitted_at=now))
    code, _, err = env.logs("job", "default/waiting")
    assert code == 1 and "agent S-gone is not registered with the Mesos master" in err
    _put_record(env.store, "waiting", ExecutionRecord(
        task_id=task, index=0, attempt=0, state="TASK_FINISHED", agent_id=agent,
        submitted_at=now))
    code, _, err = env.logs("job", "default/waiting")
    assert code == 1 and f"no longer lists the sandbox of task {task}" in err
    _put_record(env.store, "waiting", ExecutionRecord(
        task_id=task, index=0, attempt=0, state="TASK_KILLED", submitted_at=now))
    code, _, err = env.logs("job", "default/waiting", "-f")
    assert code == 1 and "ended (TASK_KILLED) without running on an agent" in err


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body


def test_follow_prints_a_running_task_to_its_end(env: Env, tmp_path: Path) -> None:
    go = tmp_path / "go"
    # One line, then (once the test says so) a line every 0.2 s for a second.
    env.docket.put_job("ticker", {"template": template(
        f"echo tick 1; until [ -e {go} ]; do sleep 0.05; done; "
        "for i in 2 3 4 5 6; do echo tick $i; sleep 0.2; done; echo done >&2")})
    # Started before the task is on an agent: it waits for it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli.main", "logs", "job", "default/ticker", "-f",
         *env.flags()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert lines.get(timeout=20) == "tick 1\n"
        # The task is blocked and still running: what came was followed, not read after it.
        assert proc.poll() is None
        assert env.record("ticker").state not in TERMINAL_STATES
        go.touch()
        assert proc.wait(timeout=20) == 0
        reader.join(timeout=5)
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert rest == [f"tick {i}\n" for i in range(2, 7)]
        assert proc.stderr is not None and proc.stderr.read() == ""
        assert env.record("ticker").state == "TASK_FINISHED"
        assert env.logs("job", "default/ticker", "--stderr")[:2] == (0, "done\n")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize(("data", "lines", "whole", "start"), [
    (b"a\nb\nc\n", 2, True, 2),
    (b"a\nb\nc", 2, True, 2),
    (b"a\nb\nc\n", 5, True, 0),
    (b"a\nb\nc\n", 5, False, None),
    (b"a\nb\nc\n", 0, True, 6),
    (b"", 3, True, 0),
    (b"\n\n", 1, True, 1),
])
def test_tail_start(data: bytes, lines: int, whole: bool, start: int | None) -> None:
    assert tail_start(data, lines, whole=whole) == start


def test_master_is_found_as_docket_run_finds_it(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from controller.cli._output import CommandError
    from controller.cli._sandbox import master_url

    monkeypatch.delenv("DOCKET_MESOS_MASTER", raising=False)
    monkeypatch.delenv("DOCKET_CONFIG", raising=False)
    assert master_url(None) == "http://127.0.0.1:5050"
    config = tmp_path / "docket.yaml"
    config.write_text("mesos-master: file-master:5050\n")
    monkeypatch.setenv("DOCKET_CONFIG", str(config))
    assert master_url(None) == "http://file-master:5050"
    monkeypatch.setenv("DOCKET_MESOS_MASTER", "env-master:5050")
    assert master_url(None) == "http://env-master:5050"
    assert master_url("http://flag-master:5050/") == "http://flag-master:5050"
    with pytest.raises(CommandError, match=r"'nope' \(--mesos-master\): must be host:port"):
        master_url("nope")
