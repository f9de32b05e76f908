"""`docket get/describe/delete/apply` against a real etcd: objects and status are written with
the store, the commands run as the user runs them, and their output is read back."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from controller.api import Condition, ExecutionRecord, JobPhase, JobStatus, decode_object
from controller.cli.main import main
from controller.store import EtcdServer, Store
from controller.store.etcd_server import free_port

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
T0 = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)


def job(name: str, namespace: str = "default", completions: int = 3) -> bytes:
    return json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"completions": completions, "parallelism": 2,
                 "template": {"command": "echo hello", "resources": {"cpus": 0.1, "mem": 32}}},
    }).encode()


class Cli:
    def __init__(self, store: Store, endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.store, self.endpoint, self.capsys = store, endpoint, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, "--etcd", self.endpoint, "--prefix", self.store.keys.prefix])
        out, err = self.capsys.readouterr()
        return code, out, err

    def put_job(self, name: str, namespace: str = "default", completions: int = 3,
                status: JobStatus | None = None) -> int:
        key = self.store.keys.object("jobs", namespace, name)
        self.store.put_raw(key, job(name, namespace, completions))
        stored = self.store.get("jobs", namespace, name)
        assert stored is not None
        if status is not None:
            status.uid = stored.uid
            self.store.put_status("jobs", namespace, name, status, None)
        return stored.uid


@pytest.fixture
def cli(store: Store, etcd_server: EtcdServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(store, etcd_server.endpoint, capsys)


def _succeeded(succeeded: int = 3) -> JobStatus:
    return JobStatus(
        phase=JobPhase.SUCCEEDED, succeeded=succeeded, start_time=T0,
        completion_time=T0 + timedelta(seconds=4), observed_revision=1,
        conditions=[Condition(type="Complete", status="True", reason="CompletionsReached",
                              message="3 of 3 succeeded",
                              last_transition_time=T0 + timedelta(seconds=4))],
    )


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_get_jobs_table_joins_spec_and_status(cli: Cli) -> None:
    cli.put_job("hello", status=_succeeded())
    cli.put_job("pending-one", completions=5)
    cli.store.put_raw(cli.store.keys.object("jobs", "default", "broken"),
                      b'{"apiVersion": "docket.dev/v1", "kind": "Job", "spec": {"completionz": 1}}')
    cli.put_job("elsewhere", namespace="team-a")

    code, out, err = cli("get", "jobs")
    assert code == 0, err
    rows = _rows(out)
    assert rows[0] == ["NAME", "PHASE", "COMPLETIONS", "ACTIVE", "FAILED", "AGE"]
    by_name = {r[0]: r for r in rows[1:]}
    assert set(by_name) == {"hello", "pending-one", "broken"}  # default namespace only
    assert by_name["hello"][1:5] == ["Succeeded", "3/3", "0", "0"]
    assert by_name["hello"][5].endswith(("d", "h", "m", "s"))
    assert by_name["pending-one"][1:3] == ["Pending", "0/5"]
    assert by_name["broken"][1] == "Invalid"

    code, out, _ = cli("get", "job", "-A", "-o", "wide")
    rows = _rows(out)
    assert rows[0][:2] == ["NAMESPACE", "NAME"] and "REASON" in rows[0]
    assert rows[-1][:2] == ["team-a", "elsewhere"]  # sorted by namespace, then name
    broken = next(line for line in out.splitlines() if " broken " in line)
    assert "spec.completionz" in broken  # the problem is named under -o wide
    hello = next(line for line in out.splitlines() if " hello " in line)
    assert "CompletionsReached" in hello and "4s" in hello and "echo hello" in hello

    code, out, _ = cli("get", "jobs", "-n", "team-a")
    assert code == 0 and [r[0] for r in _rows(out)[1:]] == ["elsewhere"]
    code, out, _ = cli("get", "jobs", "-n", "nobody-here")
    assert code == 0 and "No jobs found in namespace nobody-here" in out


def test_get_json_and_yaml_round_trip(cli: Cli) -> None:
    cli.put_job("hello", status=_succeeded())
    cli.store.put_raw(cli.store.keys.object("jobs", "default", "broken"), b"kind: [")

    code, out, err = cli("get", "jobs", "-o", "json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["kind"] == "List"
    items = {i["metadata"]["name"]: i for i in listed["items"]}
    hello = items["hello"]
    assert hello["status"]["phase"] == "Succeeded" and hello["status"]["succeeded"] == 3
    # the spec part is a valid manifest again: it decodes to the object that was written
    spec_only = {k: v for k, v in hello.items() if k != "status"}
    assert decode_object(spec_only).spec.completions == 3  # type: ignore[union-attr]
    assert items["broken"]["status"]["phase"] == "Invalid"
    assert items["broken"]["invalid"]["problems"]

    code, out, _ = cli("get", "job", "default/hello", "-o", "yaml")
    doc = yaml.safe_load(out)
    assert code == 0 and doc["kind"] == "Job" and doc["status"]["completionTime"]
    assert doc["spec"]["parallelism"] == 2


def test_status_of_an_earlier_object_under_the_same_key_is_ignored(cli: Cli) -> None:
    cli.put_job("again", status=_succeeded())
    cli.store.delete_object("jobs", "default", "again")
    cli.store.put_raw(cli.store.keys.object("jobs", "default", "again"), job("again"))
    code, out, _ = cli("get", "jobs", "again")
    assert code == 0 and _rows(out)[1][1:3] == ["Pending", "0/3"]


def test_describe_job_shows_spec_status_conditions_and_executions(cli: Cli) -> None:
    uid = cli.put_job("hello", status=_succeeded())
    for index in (2, 0, 1):  # written out of order; shown in the order they ran
        start = T0 + timedelta(seconds=index)
        cli.store.put_execution("jobs", "default", "hello", ExecutionRecord(
            task_id=f"job.default.hello.{uid}.{index}.0", index=index, attempt=0,
            state="TASK_FINISHED", hostname="127.0.0.1", exit_code=0,
            submitted_at=start, started_at=start, finished_at=start + timedelta(seconds=1.5),
            duration_seconds=1.5))

    for ref in (["default/hello"], ["hello", "-n", "default"]):
        code, out, err = cli("describe", "job", *ref)
        assert code == 0, err
    assert "Name:       hello" in out and "Command:      echo hello" in out
    assert "Completions:  3 (NonIndexed), parallelism 2" in out
    assert "Resources:    cpus 0.1, mem 32 MiB" in out and "backoffLimit 6" in out
    assert "Phase:        Succeeded" in out
    assert "Started:      2026-11-23T08:00:00Z" in out
    assert "Completed:    2026-11-23T08:00:04Z" in out
    assert "Complete   True     CompletionsReached" in out
    assert "Executions (3):" in out
    ids = [line.split()[0] for line in out.splitlines() if line.strip().startswith("job.")]
    assert ids == [f"job.default.hello.{uid}.{i}.0" for i in (0, 1, 2)]
    first = next(line for line in out.splitlines() if f"{uid}.0.0" in line).split()
    assert first[1:6] == ["0", "0", "TASK_FINISHED", "-", "0"]
    assert first[6:] == ["127.0.0.1", "2026-11-23T08:00:00Z", "2026-11-23T08:00:01Z", "1.5s"]

    code, out, _ = cli("describe", "job", "default/hello", "--executions", "1")
    assert "Executions (latest 1 of 3):" in out and f"{uid}.2.0" in out and f"{uid}.0.0" not in out


def test_describe_an_invalid_job_names_the_problem(cli: Cli) -> None:
    cli.store.put_raw(cli.store.keys.object("jobs", "default", "typo"),
                      b'{"apiVersion": "docket.dev/v1", "kind": "Job", '
                      b'"spec": {"template": {"command": "true", "resources": {"cpus": -1}}}}')
    code, out, _ = cli("describe", "job", "default/typo")
    assert code == 0 and "Phase:        Invalid" in out
    assert "spec.template.resources.cpus" in out


def test_delete_removes_the_spec_only(cli: Cli) -> None:
    cli.put_job("hello", status=_succeeded())
    code, out, err = cli("delete", "job", "default/hello")
    assert code == 0, err
    assert "job default/hello deleted" in out
    assert cli.store.get("jobs", "default", "hello") is None
    # status is the controller's to remove once it has killed the tasks
    assert cli.store.get_status("jobs", "default", "hello") is not None

    code, out, err = cli("delete", "job", "default/hello")
    assert code == 1 and err.strip() == "docket delete: job default/hello not found"


def test_apply_writes_all_or_nothing(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, good)
    code, out, err = cli("apply", "-f", str(good))
    assert code == 0, err
    assert "job default/hello created" in out
    assert cli.store.get("jobs", "default", "hello") is not None
    assert cli.store.get("services", "default", "web") is not None

    revision = cli.store.get("jobs", "default", "hello").mod_revision  # type: ignore[union-attr]
    # one file of the directory, in the directory's apply set (named after its path)
    code, out, _ = cli("apply", "-f", str(good / "hello.yaml"), "--apply-set", str(good))
    assert code == 0 and "job default/hello unchanged" in out
    assert cli.store.get("jobs", "default", "hello").mod_revision == revision  # type: ignore[union-attr]

    (good / "hello.yaml").write_text((good / "hello.yaml").read_text().replace(
        "name: hello", "name: hello-two"))
    (good / "bad.yaml").write_text(
        "apiVersion: docket.dev/v1\nkind: Job\nmetadata: {name: bad}\n"
        "spec: {template: {command: x, resources: {cpus: 0}}}\n")
    code, out, err = cli("apply", "-f", str(good))
    assert code == 1
    assert "bad.yaml: Job default/bad: spec.template.resources.cpus:" in out
    assert "nothing written" in err
    assert cli.store.get("jobs", "default", "hello-two") is None  # the valid one was not written


@pytest.mark.parametrize("argv, message", [
    (["get", "jobs"], "unavailable"),
    (["delete", "job", "default/x"], "unavailable"),
])
def test_unreachable_etcd_is_one_clear_line(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    code = main([*argv, "--etcd", endpoint])
    _, err = capsys.readouterr()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and endpoint in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["describe", "job", "default/missing"], "job default/missing not found"),
    (["get", "job", "Bad_Name"], "name 'Bad_Name'"),
    (["get", "widgets"], "unknown kind 'widgets'"),
    (["describe", "job", "a/b", "-n", "c"], "names namespace 'a' but -n says 'c'"),
    (["get", "jobs", "-A", "-n", "x"], "either -n NAMESPACE or -A"),
])
def test_user_errors_exit_1_with_one_line(cli: Cli, argv: list[str], message: str) -> None:
    code, _, err = cli(*argv)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
