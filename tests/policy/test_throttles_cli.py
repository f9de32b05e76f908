"""`docket policy throttles` against a real etcd: RUNNING counts live execution records (every
kind, neither ended nor LAUNCHING) whose object matches, WAITING the LAUNCHING ones, with
labels from the stored object and its template; an invalid or absent policy is said so."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.api import ExecutionRecord, decode_object
from controller.cli.main import main
from controller.store import Store

pytestmark = pytest.mark.integration

POLICY = """
apiVersion: docket.dev/v1
kind: Policy
spec:
  throttles:
    - {name: mail, match: {name: "mail-.*"}, maxRunning: 10}
    - {name: growth, match: {kinds: [Job], labels: {team: growth}}, maxRunning: 3}
    - {name: idle, match: {namespaces: [nobody]}, maxRunning: 1}
"""


def put(store: Store, doc: dict[str, Any]) -> None:
    store.put_object(decode_object({"apiVersion": "docket.dev/v1", **doc}))


def record(store: Store, plural: str, name: str, index: int, state: str) -> None:
    kind = {"jobs": "job", "queues": "queue", "services": "service"}[plural]
    rec = ExecutionRecord(task_id=f"{kind}.default.{name}.5.{index}.0", index=index,
                          attempt=0, state=state)
    store.put_raw(store.keys.execution(plural, "default", name, rec.task_id),
                  rec.model_dump_json().encode())


def run(store: Store, capsys: pytest.CaptureFixture[str], *extra: str
        ) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["policy", "throttles", "--etcd", store.client.endpoints[0],
                 "--prefix", store.keys.prefix, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_throttles_count_live_and_launching_records(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    key = f"{store.keys.prefix}/policy"
    code, _, err = run(store, capsys)
    assert code == 0 and f"No throttles: no policy at {key}." in err

    template = {"command": "true"}
    put(store, {"kind": "Job", "metadata": {"name": "mail-a", "labels": {"team": "growth"}},
                "spec": {"template": template}})
    put(store, {"kind": "Queue", "metadata": {"name": "mail-q"},
                "spec": {"source": {"type": "etcd"}, "template": template}})
    # growth through its template's labels, which win over the object's.
    put(store, {"kind": "Job", "metadata": {"name": "report", "labels": {"team": "other"}},
                "spec": {"template": {**template, "labels": {"team": "growth"}}}})
    put(store, {"kind": "Service", "metadata": {"name": "web"},
                "spec": {"instances": 1, "template": template}})
    for index, state in enumerate(["TASK_RUNNING", "TASK_STAGING", "LAUNCHING",
                                   "TASK_FINISHED", "TASK_FAILED", "TASK_UNREACHABLE"]):
        record(store, "jobs", "mail-a", index, state)  # 3 live, 1 launching, 2 ended
    record(store, "queues", "mail-q", 0, "TASK_RUNNING")
    record(store, "queues", "mail-q", 1, "LAUNCHING")
    record(store, "jobs", "report", 0, "TASK_STARTING")
    record(store, "services", "web", 0, "TASK_RUNNING")  # matches no throttle
    store.put_raw(store.keys.execution("jobs", "default", "mail-a", "corrupt"), b"{")

    store.put_raw(key, POLICY.encode())
    code, out, _ = run(store, capsys)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "MATCH", "RUNNING", "LIMIT", "WAITING"]
    assert rows[1:] == [["mail", "name=mail-.*", "4", "10", "2"],
                        ["growth", "kinds=Job", "labels=team=growth", "4", "3", "1"],
                        ["idle", "namespaces=nobody", "0", "1", "0"]]

    code, out, _ = run(store, capsys, "-o", "json")
    assert code == 0 and json.loads(out)[0] == {
        "name": "mail", "match": "name=mail-.*", "running": 4, "limit": 10, "waiting": 2}

    # `docket policy` lists them too, with the pools; `validate` counts them.
    store.put_raw(key, (POLICY + "  pools:\n    - {name: email, match: {name: \"mail-.*\"}, "
                        "constraints: [[pool, IS, email], [hostname, UNIQUE]]}\n").encode())
    capsys.readouterr()
    assert main(["policy", "--etcd", store.client.endpoints[0],
                 "--prefix", store.keys.prefix]) == 0
    out = capsys.readouterr().out
    assert ["growth", "kinds=Job", "labels=team=growth", "3"] in [
        line.split() for line in out.splitlines()]
    assert ["email", "name=mail-.*", "pool,IS,email", "hostname,UNIQUE"] in [
        line.split() for line in out.splitlines()]

    # Tasks ending: counted no more.
    record(store, "jobs", "mail-a", 0, "TASK_FINISHED")
    record(store, "queues", "mail-q", 1, "TASK_RUNNING")
    code, out, _ = run(store, capsys, "-o", "yaml")
    assert code == 0 and "running: 4\n  limit: 10\n  waiting: 1" in out

    store.put_raw(key, POLICY.replace("maxRunning: 10", "maxRunning: 0").encode())
    code, out, err = run(store, capsys)
    assert code == 1 and out == ""
    assert "spec.throttles[0].maxRunning: must be at least 1, not 0" in err

    store.put_raw(key, b"apiVersion: docket.dev/v1\nkind: Policy\n")
    code, _, err = run(store, capsys)
    assert code == 0 and f"No throttles found in {key}." in err
