"""`docket wait` and `docket delete --wait` against a real etcd and the embedded Mesos (with
simulated agents) driven by the in-process controller: each exit code of `wait` (0 the phase
is reached, 1 another terminal phase or no such object, 2 timeout), and `delete --wait`
returning once the controller has removed the status and the executions (or 2 when nothing
cleans up)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.api import JobStatus
from controller.cli.main import main
from controller.localmesos import LocalMesos
from controller.store import EtcdServer, Store
from tests.e2e.harness import Docket, sim, wait_for

pytestmark = pytest.mark.integration


class Cli:
    def __init__(self, store: Store, endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.store, self.endpoint, self.capsys = store, endpoint, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, "--etcd", self.endpoint, "--prefix", self.store.keys.prefix])
        out, err = self.capsys.readouterr()
        return code, _without_logs(out), _without_logs(err)


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def _without_logs(text: str) -> str:
    """What the command printed, without the lines the in-process controller logged."""
    return "".join(line for line in text.splitlines(keepends=True) if not LOG_LINE.match(line))


@pytest.fixture
def cli(store: Store, etcd_server: EtcdServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(store, etcd_server.endpoint, capsys)


@pytest.fixture
def docket(store: Store, local_mesos: Callable[..., LocalMesos]) -> Iterator[Docket]:
    d = Docket(store, local_mesos(simulate=True)).start()
    yield d
    d.stop()


def _running(docket: Docket, name: str) -> None:
    """Until the Job's task runs on an agent, so `delete --wait` waits for a real kill. (A Job
    deleted while its launch still waits for an offer is cleaned up too:
    tests/core/test_manager.py.)"""
    wait_for(lambda: [r for r in docket.executions(name) if r.state == "TASK_RUNNING"], 30,
             lambda: f"job {name} has no running task: {docket.executions(name)}")


def _leftovers(store: Store, name: str) -> tuple[bool, int]:
    status = store.get_raw(store.keys.status("jobs", "default", name)) is not None
    return status, len(store.list_executions("jobs", "default", name))


def test_wait_exits_0_when_the_job_succeeds(cli: Cli, docket: Docket) -> None:
    docket.put_job("ok", {"completions": 2, "template": sim(duration=0.3)})
    code, out, err = cli("wait", "job/ok", "--for", "phase=Succeeded", "--timeout", "30s")
    assert (code, err) == (0, ""), err
    assert out == "job default/ok: phase Succeeded\n"
    status = docket.status("ok")
    assert status is not None and status.phase == "Succeeded" and status.succeeded == 2
    # KIND NS/NAME, and any case for the phase, once it is there: at once.
    code, out, _ = cli("wait", "jobs", "default/ok", "--for", "phase=succeeded")
    assert (code, out) == (0, "job default/ok: phase Succeeded\n")


def test_wait_exits_1_when_the_job_fails_instead(cli: Cli, docket: Docket) -> None:
    docket.put_job("bad", {"backoffLimit": 0, "template": sim(duration=0.1, exit_code=1)})
    code, out, err = cli("wait", "job/bad", "-n", "default", "--for", "phase=Succeeded",
                         "--timeout", "30s")
    assert code == 1, (out, err)
    assert err.startswith("docket wait: job default/bad is Failed, not Succeeded"), err
    status = docket.status("bad")
    assert status is not None and status.phase == "Failed"
    # Waiting for the phase it did reach succeeds.
    assert cli("wait", "job/bad", "--for", "phase=Failed")[0] == 0


def test_wait_exits_2_on_timeout(cli: Cli, docket: Docket) -> None:
    docket.put_job("long", {"template": sim(duration=60)})
    docket.wait_phase("long", "Running")
    started = time.monotonic()
    code, out, err = cli("wait", "job/long", "--for", "phase=Succeeded", "--timeout", "500ms")
    assert code == 2, (out, err)
    assert time.monotonic() - started < 5
    assert "timed out after 0.5s waiting for job default/long to be Succeeded (phase Running)" \
        in err, err


def test_wait_for_a_missing_object_or_a_bad_phase_is_an_error(cli: Cli) -> None:
    code, _, err = cli("wait", "job/nope", "--for", "phase=Succeeded")
    assert code == 1
    assert err.startswith("docket wait: job default/nope not found"), err
    cli.store.put_raw(cli.store.keys.object("queues", "default", "q"), json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "Queue",
        "spec": {"source": {"type": "etcd"}, "template": {"command": "true"}}}).encode())
    code, _, err = cli("wait", "queue/q", "--for", "phase=Succeeded")
    assert code == 1
    assert "a queue has no phase 'Succeeded'; its phases: Pending, Active, Idle" in err, err
    code, _, err = cli("wait", "queue/q", "--for", "condition=Ready")
    assert code == 1 and "only phase=PHASE is supported" in err, err
    code, _, err = cli("wait", "queue", "--for", "phase=Idle")
    assert code == 1 and "KIND/NAME" in err, err


def test_wait_ends_with_1_on_an_invalid_object(cli: Cli) -> None:
    """Invalid is terminal for every kind: only a new spec changes it."""
    cli.store.put_raw(cli.store.keys.object("services", "default", "web"),
                      b'{"apiVersion": "docket.dev/v1", "kind": "Service", "spec": {}}')
    code, _, err = cli("wait", "service/web", "--for", "phase=Running", "--timeout", "10s")
    assert code == 1
    assert err.startswith("docket wait: service default/web is Invalid, not Running"), err


def test_delete_wait_returns_once_the_controller_cleaned_up(
        cli: Cli, docket: Docket, tmp_path: Path) -> None:
    docket.put_job("long", {"template": sim(duration=60)})
    _running(docket, "long")
    assert _leftovers(cli.store, "long") == (True, 1)
    code, out, err = cli("delete", "job", "default/long", "--wait", "--timeout", "30s")
    assert (code, err) == (0, ""), err
    assert out.splitlines()[-1] == "job default/long cleaned up", out
    assert _leftovers(cli.store, "long") == (False, 0)

    # The same from a manifest file.
    manifest = tmp_path / "short.json"
    manifest.write_text(json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "Job",
        "metadata": {"name": "short", "namespace": "default"},
        "spec": {"template": sim(duration=60)}}))
    assert cli("apply", "-f", str(manifest))[0] == 0
    _running(docket, "short")
    code, out, err = cli("delete", "-f", str(manifest), "--wait", "--timeout", "30s")
    assert (code, err) == (0, ""), err
    assert "job default/short deleted" in out and "job default/short cleaned up" in out, out
    assert _leftovers(cli.store, "short") == (False, 0)


def test_delete_wait_exits_2_when_nothing_cleans_up(cli: Cli) -> None:
    """No controller runs: the status stays, and --wait gives up after its timeout."""
    store = cli.store
    store.put_raw(store.keys.object("jobs", "default", "orphan"), json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "Job",
        "spec": {"template": {"command": "true"}}}).encode())
    stored = store.get("jobs", "default", "orphan")
    assert stored is not None
    store.put_status("jobs", "default", "orphan", JobStatus(uid=stored.uid), None)
    code, out, err = cli("delete", "job", "orphan", "--wait", "--timeout", "300ms")
    assert code == 2, (out, err)
    assert "job default/orphan deleted" in out
    assert "timed out after 0.3s waiting for the controller to clean up: job default/orphan " \
           "still has status" in err, err
    assert store.get("jobs", "default", "orphan") is None
    wait_for(lambda: _leftovers(store, "orphan") == (True, 0), 1)


def test_delete_needs_objects_named_one_way(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("delete", "job")
    assert code == 1 and "name the objects" in err, err
    code, _, err = cli("delete", "job", "x", "-f", str(tmp_path))
    assert code == 1 and "not both" in err, err
