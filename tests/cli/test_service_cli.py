"""The Service commands as a user runs them, against a real etcd: `docket get services` and
`describe service` over statuses and execution records written by hand (as the controller
writes them), `docket scale service` and `docket rollout restart service` editing JSON and YAML
documents by compare-and-swap, and `docket rollout status service` exiting 0 (complete), 1
(stuck) and 2 (timed out). The edits' text rules are also checked without a server, on the
in-memory etcd."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.api import (
    Condition,
    Endpoint,
    ExecutionRecord,
    Service,
    ServiceStatus,
    decode_object,
    kind_by_plural,
    parse_document,
)
from controller.cli._output import CommandError, Entry
from controller.cli._spec_edit import load, write
from controller.cli.main import main
from controller.cli.rollout import (
    RESTARTED_AT,
    Progress,
    parse_duration,
    restart_stamp,
    rollout_progress,
)
from controller.reconcile.service import service_version
from controller.store import EtcdServer, MemoryEtcd, Store, StoredObject

integration = pytest.mark.integration

T0 = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
TEMPLATE: dict[str, Any] = {"command": "python3 -m http.server $PORT0",
                            "ports": [{"name": "http"}, {"name": "admin"}]}
HEALTH = {"type": "HTTP", "portName": "http", "path": "/health", "gracePeriodSeconds": 30}


def service_doc(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "docket.dev/v1", "kind": "Service",
            "spec": {"instances": 3, "template": TEMPLATE, "healthCheck": HEALTH, **spec}}


YAML = """\
# the web tier
apiVersion: docket.dev/v1
kind: Service
metadata:
  labels: {team: web}

spec:   # what it keeps
  instances: 3  # three for now
  upgradeStrategy:
    minimumHealthCapacity: 1
    maximumOverCapacity: 0.34
  template:
    # serves the files
    command: python3 -m http.server $PORT0
    ports:
      - name: http
"""


def version_of(raw: bytes) -> str:
    obj = decode_object(raw, plural="services", namespace="default", name="web")
    assert isinstance(obj, Service)
    return service_version(obj.spec)


class Cli:
    def __init__(self, store: Store, endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.store, self.endpoint, self.capsys = store, endpoint, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, "--etcd", self.endpoint, "--prefix", self.store.keys.prefix])
        out, err = self.capsys.readouterr()
        return code, out, err

    def put(self, name: str, doc: dict[str, Any] | bytes | str, namespace: str = "default"
            ) -> StoredObject:
        """Write a spec as a user would; the object as stored."""
        raw = doc.encode() if isinstance(doc, str) else (
            doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        self.store.put_raw(self.store.keys.object("services", namespace, name), raw)
        stored = self.store.get("services", namespace, name)
        assert stored is not None
        return stored

    def raw(self, name: str, namespace: str = "default") -> tuple[bytes, int]:
        found = self.store.get_raw(self.store.keys.object("services", namespace, name))
        assert found is not None
        return found[0], found[1]

    def status(self, name: str, status: ServiceStatus, namespace: str = "default") -> None:
        self.store.put_status("services", namespace, name, status, None)

    def record(self, name: str, record: ExecutionRecord, namespace: str = "default") -> None:
        self.store.put_execution("services", namespace, name, record)


@pytest.fixture
def cli(store: Store, etcd_server: EtcdServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(store, etcd_server.endpoint, capsys)


def rows(out: str) -> list[dict[str, str]]:
    """Rows of a table as {header: cell}, cut at the headers' columns."""
    import re

    lines = out.rstrip("\n").splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = lines[0].split()
    return [dict(zip(names, [line[a:b].strip() for a, b in
                             zip(starts, [*starts[1:], None], strict=True)], strict=True))
            for line in lines[1:]]


def section(out: str, title: str) -> list[dict[str, str]]:
    """The table under a `title` line of describe's output (indented by two spaces)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("  ") or line.startswith("  ("):
            break
        body.append(line[2:])
    return rows("\n".join(body))


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def progressing(status: str, reason: str, message: str = "") -> Condition:
    return Condition(type="Progressing", status=status,
                     reason=reason, message=message, last_transition_time=T0)


def endpoint(index: int, task: str, version: str, healthy: bool | None = True,
             port: int = 31000) -> Endpoint:
    return Endpoint(index=index, task_id=task, host=f"agent-{index}",
                    ports={"http": port + index, "admin": port + 100 + index},
                    healthy=healthy, version=version)


# --- get ----------------------------------------------------------------------------------------
@integration
def test_get_services_columns_and_wide(cli: Cli) -> None:
    web = cli.put("web", service_doc())
    since = datetime.now(UTC) - timedelta(hours=2, seconds=5)
    cli.status("web", ServiceStatus(
        uid=web.uid, observed_revision=web.mod_revision, phase="Degraded", instances=3,
        running=3, healthy=2, updated=3, unavailable=1, version="aaaa1111bbbb",
        consecutive_failures=3, backoff_delay_seconds=1.32, next_launch_at=T0,
        conditions=[
            Condition(type="Available", status="True", reason="MinimumHealthy",
                      message="2 healthy, at least 2 wanted", last_transition_time=since),
            Condition(type="Progressing", status="True", reason="RolloutComplete",
                      message="version aaaa1111bbbb",
                      last_transition_time=since + timedelta(minutes=1))]))
    cli.put("fresh", service_doc(instances=2))
    cli.put("broken", service_doc(instances=-1))

    code, out, err = cli("get", "services")
    assert code == 0, err
    table = rows(out)
    assert list(table[0]) == ["NAME", "PHASE", "INSTANCES", "RUNNING", "HEALTHY", "UPDATED",
                              "AGE"]
    by_name = {r["NAME"]: r for r in table}
    assert [r["NAME"] for r in table] == ["broken", "fresh", "web"]
    web_row = by_name["web"]
    assert web_row["AGE"].startswith("2h"), web_row
    assert {k: v for k, v in web_row.items() if k != "AGE"} == {
        "NAME": "web", "PHASE": "Degraded", "INSTANCES": "2/3", "RUNNING": "3",
        "HEALTHY": "2", "UPDATED": "3"}
    assert by_name["fresh"] == {"NAME": "fresh", "PHASE": "Pending", "INSTANCES": "0/2",
                                "RUNNING": "0", "HEALTHY": "0", "UPDATED": "0", "AGE": "-"}
    assert by_name["broken"]["PHASE"] == "Invalid"
    assert by_name["broken"]["INSTANCES"] == "-/-"

    code, out, err = cli("get", "svc", "web", "-o", "wide")
    assert code == 0, err
    (row,) = rows(out)
    assert list(row)[-5:] == ["VERSION", "UNAVAILABLE", "BACKOFF", "COMMAND", "REASON"]
    assert (row["VERSION"], row["UNAVAILABLE"], row["BACKOFF"]) == ("aaaa1111bbbb", "1", "1.3s")
    assert row["COMMAND"] == "python3 -m http.server $PORT0"
    # Degraded: what explains it is the availability, not the completed rollout.
    assert row["REASON"] == "MinimumHealthy: 2 healthy, at least 2 wanted"

    code, out, err = cli("get", "services", "-o", "json")
    assert code == 0, err
    items = {i["metadata"]["name"]: i for i in json.loads(out)["items"]}
    assert items["web"]["status"]["healthy"] == 2
    assert items["web"]["status"]["backoffDelaySeconds"] == 1.32


# --- describe -----------------------------------------------------------------------------------
@integration
def test_describe_service_spec_status_and_instances(cli: Cli) -> None:
    web = cli.put("web", service_doc(upgradeStrategy={"minimumHealthCapacity": 0.5,
                                                      "maximumOverCapacity": 0.34},
                                     unreachableStrategy={"inactiveAfterSeconds": 60,
                                                          "expungeAfterSeconds": 600}))
    uid = web.uid
    current = version_of(cli.raw("web")[0])
    old = "0123456789ab"
    task = f"service.default.web.{uid}"
    cli.status("web", ServiceStatus(
        uid=uid, observed_revision=web.mod_revision, phase="Deploying", instances=3,
        running=3, healthy=2, updated=2, unavailable=1, version=current,
        rollout_started_at=T0, last_progress_at=T0 + timedelta(minutes=2),
        consecutive_failures=2, backoff_delay_seconds=1.15,
        next_launch_at=T0 + timedelta(minutes=3),
        conditions=[progressing("True", "RollingOut", f"1 of 3 instances of version "
                                                      f"{current} healthy")],
        endpoints=[endpoint(0, f"{task}.0.0", old), endpoint(1, f"{task}.1.1", current),
                   endpoint(2, f"{task}.2.0", current, healthy=False)]))
    records = [
        # Slot 0: still the old version, being replaced.
        ExecutionRecord(task_id=f"{task}.0.0", index=0, attempt=0, state="TASK_RUNNING",
                        hostname="agent-0", host_ports=[31000, 31100], healthy=True,
                        version=old, started_at=T0 - timedelta(hours=1)),
        # Slot 1: attempt 0 failed its health check, attempt 1 runs.
        ExecutionRecord(task_id=f"{task}.1.0", index=1, attempt=0, state="TASK_KILLED",
                        healthy=False, exit_code=137, version=current, started_at=T0,
                        finished_at=T0 + timedelta(minutes=1)),
        ExecutionRecord(task_id=f"{task}.1.1", index=1, attempt=1, state="TASK_RUNNING",
                        hostname="agent-1", host_ports=[31001, 31101], healthy=True,
                        version=current, started_at=T0 + timedelta(minutes=1)),
        ExecutionRecord(task_id=f"{task}.2.0", index=2, attempt=0, state="TASK_RUNNING",
                        hostname="agent-2", host_ports=[31002, 31102], version=current,
                        started_at=T0 + timedelta(minutes=2)),
        # Slot 3: an extra launch waiting for an offer (no host, no ports yet).
        ExecutionRecord(task_id=f"{task}.3.0", index=3, attempt=0, state="LAUNCHING",
                        version=current),
        # Of an earlier Service of the same name.
        ExecutionRecord(task_id="service.default.web.1.0.0", index=0, attempt=0,
                        state="TASK_KILLED", kill_reason="Superseded"),
    ]
    for rec in records:
        cli.record("web", rec)

    code, out, err = cli("describe", "service", "default/web")
    assert code == 0, err
    for line in (
        "Kind:       Service",
        "  Instances:    3 (kill selection YoungestFirst)",
        f"  Version:      {current} (digest of the template and health check)",
        "  Command:      python3 -m http.server $PORT0",
        "  Ports:        http (PORT0, tcp), admin (PORT1, tcp)",
        "  Health check: HTTP GET /health on port http; every 60s (timeout 20s) from 15s after "
        "the start; failures ignored for 30s until the first success; killed after 3 failures "
        "in a row",
        "  Upgrade:      minimumHealthCapacity 0.5 (at least 2 healthy), maximumOverCapacity "
        "0.34 (at most 4 instances); progress deadline 600s; old instances killed with 10s "
        "grace",
        "  Backoff:      1s x1.15 per consecutive failure, up to 300s",
        "  Unreachable:  replaced after 60s, written off (killed if it returns) after 600s",
        "  Phase:        Deploying",
        "  Instances:    3 wanted, 3 running, 2 healthy, 2 updated, 1 unavailable",
        f"  Version:      {current}",
        "  Rollout:      started 2026-11-23T08:00:00Z (",
        "last progress 2026-11-23T08:02:00Z (",
        "  Backoff:      1.1s after 2 consecutive failure(s); next launch not before "
        "2026-11-23T08:03:00Z (",
        f"  Observed:     spec revision {web.mod_revision}",
        "Instances (4):",
        "Ended instances (1):",
        "(1 execution record(s) of an earlier Service of this name, being cleaned up)",
    ):
        assert line in out, f"{line!r} not in:\n{out}"
    assert "RollingOut" in out  # the conditions table
    instances = section(out, "Instances (4):")
    assert [r["INDEX"] for r in instances] == ["0", "1", "2", "3"]
    assert instances[0] == {
        "INDEX": "0", "TASK": f"{task}.0.0", "STATE": "TASK_RUNNING", "HOST": "agent-0",
        "PORTS": "http=31000,admin=31100", "HEALTH": "healthy", "VERSION": f"{old} (old)",
        "STARTED": "2026-11-23T07:00:00Z"}
    assert instances[1]["TASK"] == f"{task}.1.1" and instances[1]["VERSION"] == current
    assert instances[2]["HEALTH"] == "unknown"  # running, no health reported yet
    assert instances[2]["PORTS"] == "http=31002,admin=31102"
    assert instances[3] == {
        "INDEX": "3", "TASK": f"{task}.3.0", "STATE": "LAUNCHING", "HOST": "-", "PORTS": "-",
        "HEALTH": "unknown", "VERSION": current, "STARTED": "-"}
    (ended,) = section(out, "Ended instances (1):")
    assert (ended["TASK-ID"], ended["STATE"], ended["EXIT"]) == (f"{task}.1.0", "TASK_KILLED",
                                                                 "137")


@integration
def test_describe_service_without_status_or_health_check(cli: Cli) -> None:
    cli.put("plain", {"apiVersion": "docket.dev/v1", "kind": "Service",
                      "spec": {"template": {"command": "sleep 3600"}}})
    code, out, err = cli("describe", "svc", "plain")
    assert code == 0, err
    for line in ("  Health check: none (an instance is healthy once RUNNING)",
                 "  Ports:        none",
                 "  Phase:        Pending (the controller has not written any yet)",
                 "Instances:\n  <none>", "Ended instances:\n  <none>"):
        assert line in out, f"{line!r} not in:\n{out}"


# --- scale --------------------------------------------------------------------------------------
@integration
def test_scale_json_keeps_its_layout(cli: Cli) -> None:
    doc = service_doc()
    cli.put("web", json.dumps(doc, indent=4) + "\n")
    before, revision = cli.raw("web")
    code, out, err = cli("scale", "service", "default/web", "--instances", "5")
    assert code == 0, err
    after, new_revision = cli.raw("web")
    assert out.strip() == (f"service default/web scaled from 3 to 5 instance(s) "
                           f"(spec.instances, json document, revision {revision} -> "
                           f"{new_revision})")
    doc["spec"]["instances"] = 5
    assert after.decode() == json.dumps(doc, indent=4) + "\n"
    assert version_of(after) == version_of(before)  # scaling is not a new version

    code, out, err = cli("scale", "svc", "web", "--instances", "5")
    assert code == 0 and "already has 5 instance(s)" in out, err
    assert cli.raw("web")[1] == new_revision  # nothing written

    # 0 keeps the Service.
    code, out, err = cli("scale", "service", "web", "-n", "default", "--instances", "0")
    assert code == 0, err
    assert json.loads(cli.raw("web")[0])["spec"]["instances"] == 0


@integration
def test_scale_yaml_edits_one_line_and_keeps_comments(cli: Cli) -> None:
    cli.put("web", YAML)
    code, out, err = cli("scale", "service", "default/web", "--instances", "7")
    assert code == 0 and "yaml document" in out, err
    assert cli.raw("web")[0].decode() == YAML.replace("instances: 3  # three for now",
                                                      "instances: 7  # three for now")
    # No `instances:` yet (the default, 1): it is added as spec's first key.
    without = YAML.replace("  instances: 3  # three for now\n", "")
    cli.put("api", without)
    code, out, err = cli("scale", "service", "default/api", "--instances", "2")
    assert code == 0 and "scaled from 1 to 2" in out, err
    assert cli.raw("api")[0].decode() == without.replace(
        "spec:   # what it keeps\n", "spec:   # what it keeps\n  instances: 2\n")


@integration
def test_scale_errors_name_the_object_and_write_nothing(cli: Cli,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cli.put("web", service_doc())
    cli.put("broken", service_doc(instances=-1))
    raw, revision = cli.raw("web")
    for argv, message in [
        (["scale", "service", "default/nope", "--instances", "2"],
         "service default/nope not found (no key "),
        (["scale", "service", "default/broken", "--instances", "2"],
         "service default/broken is invalid"),
        (["scale", "job", "default/web", "--instances", "2"], "a job cannot be scaled"),
        (["scale", "service", "default/web", "--instances", "1000001"],
         "service default/web: spec.instances cannot be 1000001"),
    ]:
        code, _, err = cli(*argv)
        assert code == 1, (argv, err)
        line = one_error_line(err)
        assert line.startswith("docket scale: ") and message in line, line
    assert cli.raw("web") == (raw, revision)

    with pytest.raises(SystemExit) as usage:
        main(["scale", "service", "default/web", "--instances", "-1"])
    assert usage.value.code == 2

    # Someone changes the spec between the command's read and its write: theirs is kept.
    theirs = json.dumps(service_doc(instances=4)).encode()
    real = Store.get_raw

    def read_then_someone_writes(self: Store, key: str) -> Any:
        found = real(self, key)
        if key.endswith("/services/default/web"):
            self.put_raw(key, theirs)
        return found

    monkeypatch.setattr(Store, "get_raw", read_then_someone_writes)
    code, _, err = cli("scale", "service", "default/web", "--instances", "9")
    monkeypatch.undo()
    assert code == 1
    line = one_error_line(err)
    assert "service default/web changed while it was being scaled" in line
    assert "nothing was written" in line
    assert cli.raw("web")[0] == theirs


# --- rollout restart ----------------------------------------------------------------------------
@integration
def test_rollout_restart_sets_the_label_and_makes_a_new_version(cli: Cli) -> None:
    cli.put("web", service_doc())
    before = cli.raw("web")[0]
    code, out, err = cli("rollout", "restart", "service", "default/web")
    assert code == 0, err
    after = cli.raw("web")[0]
    labels = json.loads(after)["spec"]["template"]["labels"]
    stamp = labels[RESTARTED_AT]
    assert abs(datetime.fromisoformat(stamp) - datetime.now(UTC)) < timedelta(minutes=5)
    assert version_of(after) != version_of(before)
    assert f"version {version_of(before)} -> {version_of(after)}" in out
    assert "json document" in out
    # Nothing else changed.
    doc = json.loads(before)
    doc["spec"]["template"]["labels"] = {RESTARTED_AT: stamp}
    assert json.loads(after) == doc

    # Again, within the same second or not: another new version.
    code, out, err = cli("rollout", "restart", "svc", "web")
    assert code == 0, err
    again = cli.raw("web")[0]
    assert version_of(again) not in (version_of(before), version_of(after))


@integration
def test_rollout_restart_yaml_keeps_comments(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.put("web", YAML)
    code, out, err = cli("rollout", "restart", "service", "default/web")
    assert code == 0 and "yaml document" in out, err
    text = cli.raw("web")[0].decode()
    stamp = parse_document(text)["spec"]["template"]["labels"][RESTARTED_AT]
    assert text == YAML.replace(
        "  template:\n", f'  template:\n    labels:\n      {RESTARTED_AT}: "{stamp}"\n')

    theirs = YAML.replace("python3", "python3.11").encode()
    real = Store.get_raw

    def read_then_someone_writes(self: Store, key: str) -> Any:
        found = real(self, key)
        if key.endswith("/services/default/web"):
            self.put_raw(key, theirs)
        return found

    monkeypatch.setattr(Store, "get_raw", read_then_someone_writes)
    code, _, err = cli("rollout", "restart", "service", "default/web")
    monkeypatch.undo()
    assert code == 1
    assert "service default/web changed while it was being restarted" in one_error_line(err)
    assert cli.raw("web")[0] == theirs


# --- rollout status -----------------------------------------------------------------------------
def _rolling(stored: StoredObject, version: str, *, healthy_new: int, old: int = 0,
             revision: int | None = None, stuck: bool = False) -> ServiceStatus:
    task = f"service.default.{stored.name}.{stored.uid}"
    endpoints = [endpoint(i, f"{task}.{i}.1", version) for i in range(healthy_new)]
    endpoints += [endpoint(10 + i, f"{task}.{10 + i}.0", "0123456789ab") for i in range(old)]
    condition = (progressing("False", "ProgressDeadlineExceeded",
                             f"no progress for 600s: {healthy_new} of 3 instances of version "
                             f"{version} healthy") if stuck else
                 progressing("True", "RollingOut"))
    return ServiceStatus(uid=stored.uid, phase="Deploying",
                         observed_revision=stored.mod_revision if revision is None else revision,
                         instances=3, running=healthy_new + old, healthy=healthy_new + old,
                         updated=healthy_new, version=version, endpoints=endpoints,
                         conditions=[condition], rollout_started_at=T0, last_progress_at=T0)


def _complete(stored: StoredObject, version: str) -> ServiceStatus:
    status = _rolling(stored, version, healthy_new=3)
    return status.model_copy(update={"phase": "Running", "rollout_started_at": None,
                                     "conditions": [progressing("True", "RolloutComplete")]})


@integration
def test_rollout_status_exit_codes(cli: Cli) -> None:
    web = cli.put("web", service_doc())
    version = version_of(cli.raw("web")[0])

    cli.status("web", _complete(web, version))
    code, out, err = cli("rollout", "status", "service", "default/web", "--timeout", "5s")
    assert code == 0, err
    assert out.strip() == (f"service default/web successfully rolled out: 3 of 3 instances of "
                           f"version {version} healthy")

    cli.status("web", _rolling(web, version, healthy_new=1, old=2, stuck=True))
    code, out, err = cli("rollout", "status", "service", "default/web")
    assert code == 1
    assert out.strip() == (f"Waiting for service default/web rollout to finish: 1 of 3 "
                           f"updated instances healthy (version {version})...")
    assert one_error_line(err) == (
        f"docket rollout status: service default/web rollout is stuck (ProgressDeadlineExceeded"
        f": no progress for 600s: 1 of 3 instances of version {version} healthy); the "
        "controller goes on trying")

    # Complete, but for an earlier revision of the spec: not this rollout; it times out.
    cli.status("web", _complete(web, version).model_copy(
        update={"observed_revision": web.mod_revision - 1}))
    code, out, err = cli("rollout", "status", "svc", "web", "--timeout", "0.3s",
                         "--interval", "0.1s")
    assert code == 2
    assert out.strip() == (f"Waiting for the controller to act on revision {web.mod_revision} "
                           f"of service default/web (its status is of revision "
                           f"{web.mod_revision - 1})...")
    assert one_error_line(err) == ("docket rollout status: timed out after 0.3s waiting for "
                                   "service default/web to roll out")

    code, _, err = cli("rollout", "status", "service", "default/nope", "--timeout", "1s")
    assert code == 1 and "service default/nope not found" in one_error_line(err)
    code, _, err = cli("rollout", "status", "job", "default/web")
    assert code == 1 and "a job has no rollout" in one_error_line(err)


@integration
def test_rollout_status_follows_progress_until_complete(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The status moves on between two reads (written where the command waits, so no test
    timing is involved): each new progress is printed once, then success."""
    import controller.cli.rollout as rollout

    web = cli.put("web", service_doc())
    version = version_of(cli.raw("web")[0])
    steps = [_rolling(web, version, healthy_new=1, old=2),
             _rolling(web, version, healthy_new=2, old=1),
             _rolling(web, version, healthy_new=2, old=1),  # no progress: no new line
             _rolling(web, version, healthy_new=3, old=1),
             _complete(web, version)]
    cli.status("web", ServiceStatus(uid=web.uid, observed_revision=web.mod_revision - 1))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        cli.status("web", steps.pop(0))

    monkeypatch.setattr(rollout, "pause", sleep)
    code, out, err = cli("rollout", "status", "service", "default/web", "--interval", "2s")
    assert code == 0, err
    assert out.splitlines() == [
        f"Waiting for the controller to act on revision {web.mod_revision} of service "
        f"default/web (its status is of revision {web.mod_revision - 1})...",
        f"Waiting for service default/web rollout to finish: 1 of 3 updated instances healthy "
        f"(version {version})...",
        f"Waiting for service default/web rollout to finish: 2 of 3 updated instances healthy "
        f"(version {version})...",
        "Waiting for service default/web rollout to finish: 1 old instance(s) pending "
        "termination...",
        f"service default/web successfully rolled out: 3 of 3 instances of version {version} "
        "healthy"]
    assert len(waits) == 5 and all(0 < w <= 2 for w in waits)


# --- without a server ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [
    ("600", 600), ("600s", 600), ("10m", 600), ("1h30m", 5400), ("1.5s", 1.5),
    ("500ms", 0.5), ("0", 0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "10x", "-5", "5s10", "nan", "inf"])
def test_parse_duration_refuses(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_restart_stamp_is_rfc3339_and_always_new() -> None:
    now = datetime(2026, 11, 23, 8, 0, 0, 123456, tzinfo=UTC)
    assert restart_stamp(now, None) == "2026-11-23T08:00:00Z"
    assert restart_stamp(now, "2026-11-23T08:00:00Z") == "2026-11-23T08:00:00.123456Z"
    assert datetime.fromisoformat(restart_stamp(now, None)) == now.replace(microsecond=0)


def _entry(status: ServiceStatus | None, mod_revision: int = 5) -> Entry:
    obj = decode_object(json.dumps(service_doc()).encode(), plural="services",
                        namespace="default", name="web")
    return Entry(StoredObject("services", "default", "web", obj, "/docket/services/default/web",
                              mod_revision, 3, 1), status)


def test_rollout_progress_without_a_server() -> None:
    stored = _entry(None).stored
    assert rollout_progress(_entry(None))[0] is Progress.WAITING
    assert "no status yet" in rollout_progress(_entry(None))[1]
    # No health check reported (None) counts as healthy: a Service without one.
    status = _rolling(stored, "v1", healthy_new=2).model_copy(update={"endpoints": [
        endpoint(0, "t0", "v1", healthy=None), endpoint(1, "t1", "v1", healthy=False)]})
    progress, line = rollout_progress(_entry(status))
    assert progress is Progress.WAITING and "1 of 3 updated instances healthy" in line
    stuck = _rolling(stored, "v1", healthy_new=0, stuck=True)
    assert rollout_progress(_entry(stuck))[0] is Progress.STUCK
    # Stuck, but on an earlier revision: the new spec's rollout is only waited for.
    assert rollout_progress(_entry(stuck, mod_revision=6))[0] is Progress.WAITING
    assert rollout_progress(_entry(_complete(stored, "v1")))[0] is Progress.COMPLETE


@pytest.fixture
def memory_store() -> Iterator[Store]:
    s = MemoryEtcd().store(prefix="/docket")
    yield s
    s.close()


@pytest.mark.parametrize("original", [
    YAML,
    YAML.replace("\n", "\r\n"),
    # Flow style: written again in block style (comments cannot be kept there).
    "apiVersion: docket.dev/v1\nkind: Service\nspec: {instances: 3, template: {command: x}}\n",
    # A label mapping already there, with a quoted key.
    YAML.replace("  template:\n", "  template:\n    labels:\n      'tier': web\n"),
])
def test_edits_read_back_as_exactly_the_edited_document(memory_store: Store,
                                                        original: str) -> None:
    kind = kind_by_plural("services")
    key = memory_store.keys.object("services", "default", "web")
    memory_store.put_raw(key, original.encode())
    for path, value in ((("spec", "instances"), 4),
                        (("spec", "template", "labels", RESTARTED_AT), "2026-11-23T08:00:00Z")):
        loaded = load(memory_store, kind, "default", "web")
        expected = json.loads(json.dumps(loaded.doc))
        node = expected
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        done = write(memory_store, kind, loaded, path, value, verb="edited")
        text = memory_store.get_raw(key)[0]  # type: ignore[index]
        assert done.fmt == "yaml" and parse_document(text) == expected
        if "#" in original:
            assert "# what it keeps" in text.decode() and "# serves the files" in text.decode()
    assert isinstance(done.obj.spec.template.labels[RESTARTED_AT], str)  # type: ignore[union-attr]


def test_a_write_after_someone_else_is_refused(memory_store: Store) -> None:
    kind = kind_by_plural("services")
    key = memory_store.keys.object("services", "default", "web")
    memory_store.put_raw(key, json.dumps(service_doc()).encode())
    loaded = load(memory_store, kind, "default", "web")
    memory_store.delete_raw(key)
    with pytest.raises(CommandError, match="service default/web changed while it was being "
                                           "scaled"):
        write(memory_store, kind, loaded, ("spec", "instances"), 2, verb="scaled")
    assert memory_store.get_raw(key) is None
