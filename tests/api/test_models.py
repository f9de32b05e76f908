"""Validation of every kind: defaults, constraints, unknown fields, names, key checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.api import (
    CronJob,
    Job,
    ObjectInvalid,
    Queue,
    Service,
    decode_object,
    decode_status,
    encode_object,
    encode_status,
)
from controller.api.status import JobPhase, JobStatus


def job(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"template": {"command": "echo hi"}}
    base.update(spec)
    return {"apiVersion": "docket.dev/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": base}


def problems(doc: Any, **key: str) -> list[tuple[str, str]]:
    with pytest.raises(ObjectInvalid) as exc:
        decode_object(json.dumps(doc) if not isinstance(doc, str) else doc, **key)
    return [(p.path, p.message) for p in exc.value.problems]


def test_job_defaults_are_the_documented_ones() -> None:
    obj = decode_object(json.dumps(job()))
    assert isinstance(obj, Job)
    s = obj.spec
    assert (s.completions, s.parallelism, s.backoff_limit, s.system_retry_limit) == (1, 1, 6, 10)
    assert s.completion_mode == "NonIndexed" and s.suspend is False
    assert (s.backoff.initial_seconds, s.backoff.max_seconds, s.backoff.factor) == (10, 360, 2)
    assert s.task_timeout_seconds is None and s.active_deadline_seconds is None
    r = s.template.resources
    assert (r.cpus, r.mem, r.disk, r.gpus, r.ports) == (0.1, 32, 0, 0, 0)
    assert s.template.kill_grace_period_seconds == 10
    assert obj.metadata.namespace == "default"


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"completions": 0}, "spec.completions", "greater than or equal to 1"),
        ({"parallelism": "many"}, "spec.parallelism", "must be an integer, not a string"),
        ({"completionMode": "Sorted"}, "spec.completionMode", "'NonIndexed' or 'Indexed'"),
        ({"backoffLimit": -1}, "spec.backoffLimit", "greater than or equal to 0"),
        ({"backoff": {"factor": 0.5}}, "spec.backoff.factor", "greater than or equal to 1"),
        ({"backoff": {"initial": 1}}, "spec.backoff.initial", "unknown field"),
        ({"taskTimeoutSeconds": 0}, "spec.taskTimeoutSeconds", "greater than 0"),
        ({"startAt": "2026-01-01T00:00:00"}, "spec.startAt", "timezone"),
        ({"ttlSecondsAfterFinished": -5}, "spec.ttlSecondsAfterFinished", "greater than"),
        ({"paralellism": 2}, "spec.paralellism", "unknown field"),
        ({"template": {"command": "x", "resources": {"cpus": 0}}},
         "spec.template.resources.cpus", "must be greater than 0"),
        ({"template": {"command": "x", "resources": {"memory": 5}}},
         "spec.template.resources.memory", "unknown field"),
        ({"template": {"command": "x", "args": ["y"]}}, "spec.template", "not both"),
        ({"template": {}}, "spec.template", "one of command or args is required"),
        ({"template": {"args": []}}, "spec.template.args", "at least 1 item"),
        ({"template": {"command": "x", "env": {"1BAD": "v"}}}, "spec.template.env.1BAD",
         "must be a variable name"),
        ({"template": {"command": "x", "container": {"type": "DOCKER"}}},
         "spec.template.container.image", "required field is missing when type is DOCKER"),
        ({"template": {"command": "x", "container": {"type": "MESOS", "network": "BRIDGE"}}},
         "spec.template.container.network", "only to type DOCKER"),
        ({"template": {"command": "x", "container": {"type": "DOCKER", "image": "i",
                                                      "volumes": [{"hostPath": "/a",
                                                                   "containerPath": "/b",
                                                                   "mode": "RX"}]}}},
         "spec.template.container.volumes[0].mode", "'RO' or 'RW'"),
        ({"template": {"command": "x", "constraints": [["hostname"]]}},
         "spec.template.constraints[0]", "[field, operator]"),
        ({"template": {"command": "x", "constraints": [["rack", "NEAR", "a"]]}},
         "spec.template.constraints[0].operator", "UNIQUE"),
        ({"template": {"command": "x", "constraints": [["rack", "LIKE"]]}},
         "spec.template.constraints[0]", "needs a value"),
        ({"template": {"command": "x", "constraints": [["rack", "LIKE", "r[1-"]]}},
         "spec.template.constraints[0]", "regular expression"),
        ({"template": {"command": "x", "constraints": [["rack", "MAX_PER", "two"]]}},
         "spec.template.constraints[0]", "positive integer"),
        ({"template": {"command": "x", "constraints": [["hostname", "UNIQUE", "x"]]}},
         "spec.template.constraints[0]", "takes no value"),
    ],
)
def test_job_field_problems_name_the_field(spec: dict[str, Any], path: str,
                                           fragment: str) -> None:
    found = problems(job(**spec))
    assert any(p == path and fragment in m for p, m in found), found


def test_template_is_required() -> None:
    doc = job()
    del doc["spec"]["template"]
    assert ("spec.template", "required field is missing") in problems(doc)


@pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "trail-", "a" * 64, "dot.s"])
def test_names_must_be_dns1123_labels(name: str) -> None:
    doc = job()
    doc["metadata"]["name"] = name
    assert [p for p, _ in problems(doc)] == ["metadata.name"]


def test_namespace_must_be_dns1123_label() -> None:
    doc = job()
    doc["metadata"]["namespace"] = "Prod"
    assert [p for p, _ in problems(doc)] == ["metadata.namespace"]


@pytest.mark.parametrize("where", [[], ["metadata"], ["spec"], ["spec", "template"],
                                   ["spec", "template", "resources"]])
def test_unknown_fields_are_errors_at_every_level(where: list[str]) -> None:
    doc = job()
    node = doc
    for part in where:
        node = node.setdefault(part, {})
    node["typo"] = 1
    assert (".".join([*where, "typo"]), "unknown field") in problems(doc)


def test_wrong_api_version_and_kind() -> None:
    doc = job()
    doc["apiVersion"] = "batch/v1"
    assert problems(doc) == [("apiVersion", "must be docket.dev/v1, not 'batch/v1'")]
    doc = job()
    doc["kind"] = "Pod"
    assert [p for p, _ in problems(doc)] == ["kind"]


def test_key_fills_missing_metadata_and_catches_contradictions() -> None:
    doc = job()
    del doc["metadata"]
    obj = decode_object(json.dumps(doc), plural="jobs", namespace="team-a", name="send")
    assert (obj.namespace, obj.name) == ("team-a", "send")
    doc = job()
    doc["metadata"] = {"name": "other", "namespace": "team-b"}
    found = problems(doc, plural="jobs", namespace="team-a", name="send")
    assert ("metadata.name", "is 'other' but the key says 'send'") in found
    assert ("metadata.namespace", "is 'team-b' but the key says 'team-a'") in found
    assert any(p == "kind" for p, _ in problems(job(), plural="services", namespace="default",
                                                   name="j"))


def test_kind_may_be_omitted_under_its_key() -> None:
    doc = job()
    del doc["kind"]
    assert [p for p, _ in problems(doc)] == ["kind"]


def test_yaml_and_json_decode_to_the_same_object() -> None:
    text = """
apiVersion: docket.dev/v1
kind: Job
metadata: {name: j}
spec:
  completions: 3
  template:
    command: echo hi
    constraints: [[rack, LIKE, "r[1-3]"]]
"""
    from_yaml = decode_object(text)
    doc = job(completions=3)
    doc["spec"]["template"]["constraints"] = [["rack", "LIKE", "r[1-3]"]]
    assert from_yaml == decode_object(json.dumps(doc))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("kind: Job\n  bad: [", "invalid YAML"), ('{"kind": ', "invalid JSON"),
     ("", "empty document"), ("- 1\n- 2\n", "must be an object")],
)
def test_syntax_errors_are_problems_not_exceptions(text: str, fragment: str) -> None:
    found = problems(text)
    assert len(found) == 1 and found[0][0] == "" and fragment in found[0][1]


def test_other_kinds_validate() -> None:
    base = {"apiVersion": "docket.dev/v1", "metadata": {"name": "x"}}
    tmpl = {"command": "run"}
    cron = decode_object(json.dumps({**base, "kind": "CronJob", "spec": {
        "schedule": "@hourly", "jobTemplate": {"spec": {"template": tmpl}}}}))
    assert isinstance(cron, CronJob) and cron.spec.time_zone == "UTC"
    queue = decode_object(json.dumps({**base, "kind": "Queue", "spec": {
        "source": {"type": "redis", "url": "redis://localhost/0", "key": "jobs"},
        "template": tmpl}}))
    assert isinstance(queue, Queue) and queue.spec.batch_size == 1
    svc = decode_object(json.dumps({**base, "kind": "Service", "spec": {"template": tmpl}}))
    assert isinstance(svc, Service) and svc.spec.instances == 1
    bad_cron = {**base, "kind": "CronJob", "spec": {
        "schedule": "61 * * * *", "timeZone": "Mars/Olympus",
        "jobTemplate": {"spec": {"template": tmpl}}}}
    assert {p for p, _ in problems(bad_cron)} == {"spec.schedule", "spec.timeZone"}
    bad_queue = {**base, "kind": "Queue", "spec": {"source": {"type": "kafka"},
                                                   "template": tmpl}}
    assert problems(bad_queue) == [("spec.source.type", "must be one of 'etcd', 'redis', "
                                                        "not 'kafka'")]
    missing_url = {**base, "kind": "Queue", "spec": {"source": {"type": "redis", "key": "k"},
                                                     "template": tmpl}}
    assert problems(missing_url) == [("spec.source.url", "required field is missing")]


names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


@given(name=names, completions=st.integers(1, 1000), parallelism=st.integers(1, 50),
       env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
                           st.text(max_size=10), max_size=3))
def test_encode_decode_round_trip(name: str, completions: int, parallelism: int,
                                  env: dict[str, str]) -> None:
    doc = job(completions=completions, parallelism=parallelism)
    doc["metadata"]["name"] = name
    doc["spec"]["template"]["env"] = env
    doc["spec"]["template"]["constraints"] = [["hostname", "MAX_PER", "2"]]
    obj = decode_object(json.dumps(doc))
    assert decode_object(encode_object(obj)) == obj


def test_status_round_trip() -> None:
    status = JobStatus(phase=JobPhase.RUNNING, active=2, succeeded=1, observed_revision=7)
    raw = encode_status(status)
    assert b'"observedRevision":7' in raw
    assert decode_status("jobs", raw) == status
