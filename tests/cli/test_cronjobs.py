"""The CronJob commands against a real etcd, run as the user runs them: `get cronjobs`,
`describe cronjob`, `create job --from cronjob/NAME`, and `suspend`/`resume` of every kind
that has a suspended state. Objects and status are written with the store; the output and
the keys are read back."""

from __future__ import annotations

import json
import re
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from controller.api import (
    Condition,
    CronJob,
    CronJobStatus,
    Job,
    JobPhase,
    JobStatus,
    decode_object,
    parse_document,
)
from controller.cli.main import main
from controller.reconcile.cronjob import (
    CRONJOB_LABEL,
    SCHEDULED_TIME,
    CreateJob,
    CronJobInput,
    plan_cronjob,
)
from controller.store import EtcdServer, Store

pytestmark = pytest.mark.integration

TEMPLATE = {"metadata": {"labels": {"team": "data"}, "annotations": {"owner": "ops"}},
            "spec": {"completions": 2, "template": {"command": "echo tick"}}}


def cronjob_doc(schedule: str = "* * * * *", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "docket.dev/v1", "kind": "CronJob",
            "spec": {"schedule": schedule, "jobTemplate": TEMPLATE, **spec}}


class Cli:
    def __init__(self, store: Store, endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.store, self.endpoint, self.capsys = store, endpoint, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, "--etcd", self.endpoint, "--prefix", self.store.keys.prefix])
        out, err = self.capsys.readouterr()
        return code, out, err

    def put(self, plural: str, name: str, doc: dict[str, Any] | bytes,
            namespace: str = "default") -> int:
        """Write a spec as a user would; its uid."""
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.store.put_raw(self.store.keys.object(plural, namespace, name), raw)
        stored = self.store.get(plural, namespace, name)
        assert stored is not None
        return stored.uid

    def raw(self, plural: str, name: str, namespace: str = "default") -> tuple[bytes, int]:
        found = self.store.get_raw(self.store.keys.object(plural, namespace, name))
        assert found is not None
        return found[0], found[1]

    def owned_job(self, name: str, owner: str, uid: int, scheduled: datetime,
                  status: JobStatus | None = None, manual: bool = False) -> None:
        annotations = {SCHEDULED_TIME: scheduled.isoformat()}
        if manual:
            annotations["docket.dev/instantiate"] = "manual"
        self.put("jobs", name, {
            "apiVersion": "docket.dev/v1", "kind": "Job",
            "metadata": {"labels": {CRONJOB_LABEL: owner}, "annotations": annotations,
                         "ownerReferences": [{"kind": "CronJob", "name": owner, "uid": uid}]},
            "spec": TEMPLATE["spec"]})
        if status is not None:
            stored = self.store.get("jobs", "default", name)
            assert stored is not None
            status.uid = stored.uid
            self.store.put_status("jobs", "default", name, status, None)


@pytest.fixture
def cli(store: Store, etcd_server: EtcdServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(store, etcd_server.endpoint, capsys)


def table(out: str) -> list[dict[str, str]]:
    """Rows of a kubectl-like table as {header: cell}, cut at the headers' columns (cells such
    as a cron expression hold spaces)."""
    lines = out.rstrip("\n").splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def _succeeded(finished: datetime) -> JobStatus:
    return JobStatus(phase=JobPhase.SUCCEEDED, succeeded=2, start_time=finished
                     - timedelta(seconds=3), completion_time=finished)


# --- get cronjobs ---------------------------------------------------------------------------
def test_get_cronjobs_shows_schedule_zone_last_next_and_age(cli: Cli) -> None:
    now = datetime.now(UTC)
    uid = cli.put("cronjobs", "tick", cronjob_doc())
    cli.store.put_status("cronjobs", "default", "tick", CronJobStatus(
        uid=uid, phase="Active", active=["tick-2"], last_schedule_time=now - timedelta(seconds=18),
        next_schedule_time=now + timedelta(seconds=42)), None)
    # Its Jobs: the oldest one says how old the CronJob is at least.
    cli.owned_job("tick-1", "tick", uid, now - timedelta(minutes=7), _succeeded(now))
    cli.owned_job("tick-2", "tick", uid, now - timedelta(seconds=18))
    cli.owned_job("old", "tick", uid - 1, now - timedelta(days=3))  # an earlier tick's
    cli.put("cronjobs", "nightly", cronjob_doc("30 2 * * *", timeZone="Europe/Paris",
                                               suspend=True))
    cli.put("cronjobs", "late", cronjob_doc("@hourly"))
    late = cli.store.get("cronjobs", "default", "late")
    assert late is not None
    cli.store.put_status("cronjobs", "default", "late", CronJobStatus(
        uid=late.uid, phase="Active", next_schedule_time=now - timedelta(minutes=5),
        missed={"MissedDuringDowntime": 4, "TooLate": 1}), None)
    cli.put("cronjobs", "broken", cronjob_doc("61 * * * *"))
    cli.put("cronjobs", "elsewhere", cronjob_doc(), namespace="team-a")

    code, out, err = cli("get", "cronjobs")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE",
                                           "LAST", "NEXT", "AGE"]
    rows = {r["NAME"]: r for r in table(out)}
    assert set(rows) == {"tick", "nightly", "late", "broken"}  # default namespace only
    tick = rows["tick"]
    assert (tick["SCHEDULE"], tick["TIMEZONE"], tick["SUSPEND"], tick["ACTIVE"]) == (
        "* * * * *", "UTC", "false", "1")
    # Ages count on while the test runs: allow it some seconds.
    last = re.fullmatch(r"(\d+)s", tick["LAST"])
    assert last and 18 <= int(last[1]) <= 30, tick
    nxt = re.fullmatch(r"in (\d+)s", tick["NEXT"])
    assert nxt and 30 <= int(nxt[1]) <= 42, tick
    assert re.fullmatch(r"7m(\d+s)?", tick["AGE"]), tick  # not the older incarnation's Job
    nightly = rows["nightly"]
    assert (nightly["SCHEDULE"], nightly["TIMEZONE"], nightly["SUSPEND"]) == (
        "30 2 * * *", "Europe/Paris", "true")
    assert nightly["NEXT"] == "<suspended>" and nightly["LAST"] == "-"
    assert re.fullmatch(r"5m\d*s? overdue|5m overdue", rows["late"]["NEXT"]), rows["late"]
    assert rows["broken"]["NEXT"] == "<invalid>"

    code, out, _ = cli("get", "cj", "-A", "-o", "wide")
    wide = {(r["NAMESPACE"], r["NAME"]): r for r in table(out)}
    assert wide[("default", "late")]["MISSED"] == "5"
    assert wide[("default", "late")]["PHASE"] == "Active"
    assert wide[("default", "broken")]["PHASE"] == "Invalid"
    assert "spec.schedule" in wide[("default", "broken")]["REASON"]
    assert wide[("default", "nightly")]["CONCURRENCY"] == "Allow"
    assert wide[("default", "tick")]["LAST-SUCCESS"] == "-"
    assert ("team-a", "elsewhere") in wide

    code, out, _ = cli("get", "cronjob", "tick", "-o", "json")
    doc = json.loads(out)
    assert doc["spec"]["schedule"] == "* * * * *" and doc["status"]["active"] == ["tick-2"]


# --- describe cronjob -----------------------------------------------------------------------
def test_describe_cronjob_shows_status_missed_and_its_jobs_newest_first(cli: Cli) -> None:
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    uid = cli.put("cronjobs", "tick", cronjob_doc(
        "*/5 * * * *", timeZone="Europe/Paris", concurrencyPolicy="Forbid",
        startingDeadlineSeconds=120))
    cli.store.put_status("cronjobs", "default", "tick", CronJobStatus(
        uid=uid, phase="Active", observed_revision=uid, active=["tick-3"],
        last_schedule_time=t0 + timedelta(minutes=10),
        last_successful_time=t0 + timedelta(minutes=5, seconds=4),
        next_schedule_time=t0 + timedelta(minutes=15),
        scheduled_through=t0 + timedelta(minutes=10),
        missed={"ConcurrencyForbid": 2, "MissedDuringDowntime": 7},
        conditions=[Condition(type="Suspended", status="False", reason="CronJobResumed",
                              last_transition_time=t0)]), None)
    cli.owned_job("tick-1", "tick", uid, t0, JobStatus(
        phase=JobPhase.FAILED, failed=7, start_time=t0, completion_time=t0
        + timedelta(seconds=30)))
    cli.owned_job("tick-2", "tick", uid, t0 + timedelta(minutes=5), _succeeded(
        t0 + timedelta(minutes=5, seconds=4)))
    cli.owned_job("tick-3", "tick", uid, t0 + timedelta(minutes=10))
    cli.owned_job("by-hand", "tick", uid, t0 + timedelta(minutes=7), manual=True)
    cli.owned_job("other", "nightly", uid, t0 + timedelta(minutes=8))  # another CronJob's
    cli.owned_job("stale", "tick", uid - 1, t0 + timedelta(minutes=9))  # an older tick's

    code, out, err = cli("describe", "cronjob", "default/tick")
    assert code == 0, err
    assert "Kind:       CronJob" in out
    assert "Schedule:     */5 * * * * (Europe/Paris), concurrency Forbid" in out
    assert "Deadline:     startingDeadlineSeconds 120s after its slot" in out
    assert "History:      keep 3 succeeded, 1 failed" in out
    assert "Command:      echo tick" in out and "Completions:  2, parallelism 1" in out
    assert "Phase:        Active" in out
    assert "Active Jobs:  tick-3" in out
    assert "Last slot:    2026-11-23T08:10:00Z (" in out
    assert "Last success: 2026-11-23T08:05:04Z (" in out
    assert "Next slot:    2026-11-23T08:15:00Z (" in out
    assert "Missed:       ConcurrencyForbid 2, MissedDuringDowntime 7" in out
    assert re.search(r"Suspended\s+False\s+CronJobResumed", out)
    assert "Executions" not in out  # a CronJob runs no task itself
    jobs = table(out[out.index("Jobs (4, newest first):"):].split("\n", 1)[1])
    assert [j["NAME"] for j in jobs] == ["tick-3", "by-hand", "tick-2", "tick-1"]
    assert [j["PHASE"] for j in jobs] == ["Pending", "Pending", "Succeeded", "Failed"]
    assert [j["TRIGGER"] for j in jobs] == ["schedule", "manual", "schedule", "schedule"]
    assert jobs[2]["COMPLETIONS"] == "2/2" and jobs[2]["DURATION"] == "3s"
    assert jobs[2]["SCHEDULED"] == "2026-11-23T08:05:00Z"
    assert jobs[3]["FINISHED"] == "2026-11-23T08:00:30Z"

    code, out, _ = cli("describe", "cj", "tick", "--jobs", "2")
    assert "Jobs (latest 2 of 4, newest first):" in out
    assert "tick-3" in out and "by-hand" in out and "tick-1 " not in out


def test_describe_cronjob_without_status_or_jobs(cli: Cli) -> None:
    cli.put("cronjobs", "fresh", cronjob_doc())
    code, out, err = cli("describe", "cronjob", "fresh")
    assert code == 0, err
    assert "Pending (the controller has not written any yet)" in out
    assert "Jobs:\n  <none>" in out
    code, out, _ = cli("delete", "cronjob", "fresh")
    assert code == 0 and "the controller deletes the Jobs it owns" in out


# --- create job --from cronjob/NAME ---------------------------------------------------------
def _scheduled_job(cronjob: CronJob, uid: int) -> Job:
    """The Job the controller itself creates for a slot of `cronjob`."""
    now = datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC)
    plan = plan_cronjob(CronJobInput(
        cronjob.namespace, cronjob.name, cronjob, uid, uid,
        CronJobStatus(uid=uid, scheduled_through=now - timedelta(days=1)), [], now))
    (create,) = [a for a in plan.actions if isinstance(a, CreateJob)]
    return create.job


def test_create_job_from_cronjob_is_a_manual_run_owned_like_a_scheduled_one(cli: Cli) -> None:
    uid = cli.put("cronjobs", "report", cronjob_doc("30 2 * * *", timeZone="Europe/Paris"),
                  namespace="team-a")
    before = datetime.now(UTC).replace(microsecond=0)
    code, out, err = cli("create", "job", "report-manual-1", "--from", "cronjob/report",
                         "-n", "team-a")
    after = datetime.now(UTC)
    assert code == 0, err
    assert "job team-a/report-manual-1 created from cronjob team-a/report" in out

    stored = cli.store.get("jobs", "team-a", "report-manual-1")
    assert stored is not None and isinstance(stored.object, Job), stored
    job = stored.object
    cronjob = cli.store.get("cronjobs", "team-a", "report")
    assert cronjob is not None and isinstance(cronjob.object, CronJob)
    scheduled = _scheduled_job(cronjob.object, uid)
    # Owned, labelled and annotated as the controller's own Jobs of this CronJob are...
    assert job.metadata.owner_references == scheduled.metadata.owner_references
    assert [(r.kind, r.name, r.uid) for r in job.metadata.owner_references] == [
        ("CronJob", "report", uid)]
    assert job.metadata.labels == scheduled.metadata.labels == {
        "team": "data", CRONJOB_LABEL: "report"}
    assert job.spec == scheduled.spec
    assert job.metadata.annotations["owner"] == "ops"
    # ... with now as its scheduled time, RFC 3339 in the CronJob's zone, marked manual.
    stamp = datetime.fromisoformat(job.metadata.annotations[SCHEDULED_TIME])
    assert before <= stamp <= after
    assert stamp.utcoffset() == stamp.astimezone(zoneinfo.ZoneInfo("Europe/Paris")).utcoffset()
    assert job.metadata.annotations["docket.dev/instantiate"] == "manual"

    code, out, _ = cli("describe", "cronjob", "team-a/report")
    assert re.search(r"report-manual-1\s+Pending\s+0/2\s+manual", out), out


def test_create_job_never_overwrites_and_names_what_is_wrong(cli: Cli) -> None:
    cli.put("cronjobs", "tick", cronjob_doc())
    cli.put("jobs", "taken", {"apiVersion": "docket.dev/v1", "kind": "Job",
                              "spec": {"template": {"command": "true"}}})
    raw, revision = cli.raw("jobs", "taken")
    code, _, err = cli("create", "job", "taken", "--from", "cronjob/tick")
    assert code == 1
    assert "job default/taken already exists (/docket-test-" in err
    assert cli.raw("jobs", "taken") == (raw, revision)  # untouched

    cli.put("cronjobs", "broken", cronjob_doc("61 * * * *"))
    for argv, message in [
        (["nope", "--from", "cronjob/missing"], "cronjob default/missing not found"),
        (["x", "--from", "cronjob/broken"], "cronjob default/broken is invalid"),
        (["Bad_Name", "--from", "cronjob/tick"], "name 'Bad_Name'"),
        (["a" * 64, "--from", "cronjob/tick"], "no more than 63 characters"),
        (["x", "--from", "job/tick"], "give cronjob/NAME"),
        (["x", "--from", "tick"], "give cronjob/NAME"),
        (["x", "--from", "cronjob/other/tick"], "names namespace 'other'"),
    ]:
        code, _, err = cli("create", "job", *argv)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert cli.store.get("jobs", "default", "x") is None
    assert cli.store.get("jobs", "default", "nope") is None


def test_create_job_refuses_a_cronjob_changed_meanwhile(cli: Cli,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cli.put("cronjobs", "tick", cronjob_doc())
    real_get = Store.get

    def get_then_edit(self: Store, plural: str, namespace: str, name: str) -> Any:
        found = real_get(self, plural, namespace, name)
        if plural == "cronjobs":  # someone edits the CronJob right after the CLI read it
            self.put_raw(self.keys.object(plural, namespace, name),
                         json.dumps(cronjob_doc("*/2 * * * *")).encode())
        return found

    monkeypatch.setattr(Store, "get", get_then_edit)
    code, _, err = cli("create", "job", "run-1", "--from", "cronjob/tick")
    monkeypatch.undo()
    assert code == 1 and "cronjob default/tick changed while the Job was being created" in err
    assert cli.store.get("jobs", "default", "run-1") is None


# --- suspend / resume -----------------------------------------------------------------------
YAML_CRONJOB = b"""\
# Reports, every night at 02:30 Paris time.
apiVersion: docket.dev/v1
kind: CronJob
spec:
  schedule: "30 2 * * *"   # 02:30, even on DST days
  timeZone: Europe/Paris
  jobTemplate:
    spec:
      suspend: false
      template: {command: "python3 -m reports.nightly"}
"""


def test_suspend_and_resume_a_yaml_cronjob_edit_one_line(cli: Cli) -> None:
    cli.put("cronjobs", "nightly", YAML_CRONJOB)
    _, revision = cli.raw("cronjobs", "nightly")

    code, out, err = cli("suspend", "cronjob", "nightly")
    assert code == 0, err
    assert "cronjob default/nightly suspended" in out and "yaml document" in out
    raw, new_revision = cli.raw("cronjobs", "nightly")
    assert new_revision > revision
    assert raw == YAML_CRONJOB.replace(b"spec:\n  schedule", b"spec:\n  suspend: true\n"
                                       b"  schedule")
    obj = cli.store.get("cronjobs", "default", "nightly")
    assert obj is not None and isinstance(obj.object, CronJob)
    assert obj.object.spec.suspend is True
    assert obj.object.spec.job_template.spec.suspend is False  # the Job template's: untouched

    code, out, _ = cli("suspend", "cj", "default/nightly")
    assert code == 0 and "already suspended" in out
    assert cli.raw("cronjobs", "nightly")[1] == new_revision  # nothing written

    code, out, _ = cli("resume", "cronjob", "nightly")
    assert code == 0 and "cronjob default/nightly resumed" in out
    assert cli.raw("cronjobs", "nightly")[0] == YAML_CRONJOB.replace(
        b"spec:\n  schedule", b"spec:\n  suspend: false\n  schedule")


def test_suspend_keeps_json_json_and_every_other_field(cli: Cli) -> None:
    job: dict[str, Any] = {"apiVersion": "docket.dev/v1", "kind": "Job",
           "metadata": {"labels": {"b": "2", "a": "1"}},
           "spec": {"suspend": False, "completions": 3, "template": {"command": "sleep 60"}}}
    cli.put("jobs", "batch", json.dumps(job, indent=4).encode() + b"\n")
    queue: dict[str, Any] = {"apiVersion": "docket.dev/v1", "kind": "Queue",
             "spec": {"source": {"type": "etcd"}, "template": {"command": "cat"}}}
    cli.put("queues", "inbox", queue, namespace="team-a")

    code, out, err = cli("suspend", "job", "batch")
    assert code == 0 and "job default/batch suspended" in out and "json document" in out, err
    raw, _ = cli.raw("jobs", "batch")
    job["spec"]["suspend"] = True
    assert raw.decode() == json.dumps(job, indent=4) + "\n"  # same layout, same key order

    code, out, err = cli("suspend", "queue", "team-a/inbox")
    assert code == 0, err
    raw, _ = cli.raw("queues", "inbox", namespace="team-a")
    assert raw.decode() == json.dumps({**queue, "spec": {**queue["spec"], "suspend": True}})
    code, _, _ = cli("resume", "q", "inbox", "-n", "team-a")
    assert json.loads(cli.raw("queues", "inbox", namespace="team-a")[0])["spec"]["suspend"] \
        is False


def test_suspend_refuses_what_it_cannot_do(cli: Cli) -> None:
    cli.put("services", "web", {"apiVersion": "docket.dev/v1", "kind": "Service",
                                "spec": {"template": {"command": "serve"}}})
    cli.put("jobs", "broken", b'{"apiVersion": "docket.dev/v1", "kind": "Job", "spec": {}}')
    raw, revision = cli.raw("jobs", "broken")
    for argv, message in [
        (["suspend", "service", "web"], "a service cannot be suspended"),
        (["resume", "svc", "web"], "a service cannot be suspended"),
        (["suspend", "job", "missing"], "job default/missing not found"),
        (["suspend", "job", "broken"], "job default/broken is invalid"),
        (["suspend", "widget", "x"], "unknown kind 'widget'"),
    ]:
        code, _, err = cli(*argv)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert "spec.template" in cli("suspend", "job", "broken")[2]
    assert cli.raw("jobs", "broken") == (raw, revision)


def test_suspend_never_overwrites_a_concurrent_change(cli: Cli,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cli.put("cronjobs", "tick", cronjob_doc())
    theirs = json.dumps(cronjob_doc("*/2 * * * *")).encode()
    real_get_raw = Store.get_raw

    def read_then_someone_writes(self: Store, key: str) -> Any:
        found = real_get_raw(self, key)
        if key.endswith("/cronjobs/default/tick"):
            real_get_raw_value = found
            self.put_raw(key, theirs)  # a GitOps sync lands between the read and the write
            return real_get_raw_value
        return found

    monkeypatch.setattr(Store, "get_raw", read_then_someone_writes)
    code, _, err = cli("suspend", "cronjob", "tick")
    monkeypatch.undo()
    assert code == 1
    assert "cronjob default/tick changed while it was being suspended" in err
    assert "nothing was written" in err
    assert cli.raw("cronjobs", "tick")[0] == theirs  # their change is kept, not overwritten


def test_suspend_of_several_objects_and_yaml_round_trip(cli: Cli) -> None:
    for name in ("a", "b"):
        cli.put("cronjobs", name, yaml.safe_dump(cronjob_doc()).encode())
    code, out, err = cli("suspend", "cronjob", "a", "b")
    assert code == 0, err
    assert out.count("suspended (") == 2
    for name in ("a", "b"):
        doc = parse_document(cli.raw("cronjobs", name)[0])
        assert doc == {**cronjob_doc(), "spec": {**cronjob_doc()["spec"], "suspend": True}}
        decoded = decode_object(cli.raw("cronjobs", name)[0], plural="cronjobs",
                                namespace="default", name=name)
        assert isinstance(decoded, CronJob) and decoded.spec.suspend
