"""The API of secrets: `env` values that are strings or `valueFrom.secretKeyRef`, in every
kind's template, with errors naming the field; the Secret document with Kubernetes' rules
(stringData wins, key names, base64), whose repr and errors never show a value."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api import (
    EnvValueFrom,
    ObjectInvalid,
    decode_object,
    decode_secret,
    encode_object,
)

REF = {"valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}


def job(env: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "docket.dev/v1", "kind": "Job", "metadata": {"name": "a"},
            "spec": {"template": {"command": "true", "env": env}}}


def problems(doc: dict[str, Any]) -> str:
    with pytest.raises(ObjectInvalid) as info:
        decode_object(doc)
    return str(info.value)


def test_env_mixes_strings_and_secret_refs_and_round_trips() -> None:
    obj = decode_object(job({"MODE": "prod", "DB_PASSWORD": REF}))
    t = obj.spec.template  # type: ignore[union-attr]
    assert t.plain_env == {"MODE": "prod"}
    ref = t.secret_env["DB_PASSWORD"]
    assert (ref.name, ref.key) == ("db", "password")
    assert isinstance(t.env["DB_PASSWORD"], EnvValueFrom)
    again = decode_object(encode_object(obj))
    assert again == obj
    assert b'"DB_PASSWORD":{"valueFrom":{"secretKeyRef":{"name":"db","key":"password"}}}' \
        in encode_object(obj)


@pytest.mark.parametrize(("value", "expected"), [
    ({"valueFrom": {"secretKeyRef": {"name": "Db", "key": "p"}}},
     "spec.template.env.DB_PASSWORD.valueFrom.secretKeyRef.name: must be a DNS-1123 label"),
    ({"valueFrom": {"secretKeyRef": {"name": "db", "key": "a/b"}}},
     "spec.template.env.DB_PASSWORD.valueFrom.secretKeyRef.key: must be letters"),
    ({"valueFrom": {"secretKeyRef": {"name": "db"}}},
     "spec.template.env.DB_PASSWORD.valueFrom.secretKeyRef.key: required field is missing"),
    ({"valueFrom": {}}, "spec.template.env.DB_PASSWORD.valueFrom.secretKeyRef: required"),
    ({"valueFrom": {"configMapKeyRef": {}}},
     "spec.template.env.DB_PASSWORD.valueFrom.configMapKeyRef: unknown field"),
    ({"value": "x"}, "spec.template.env.DB_PASSWORD.value: unknown field"),
    (3, "spec.template.env.DB_PASSWORD: must be a string, not an integer (quote it"),
    ([1], "spec.template.env.DB_PASSWORD: must be a string or {valueFrom: {secretKeyRef: "
          "{name, key}}}, not a list"),
])
def test_env_errors_name_the_field(value: Any, expected: str) -> None:
    found = problems(job({"DB_PASSWORD": value}))
    assert expected in found, found
    # No union noise: no variant's name in a path, no "must be a string" beside an object's.
    assert "EnvValueFrom" not in found and ".str" not in found, found
    assert isinstance(value, str | int | list) or "must be a string" not in found, found


@pytest.mark.parametrize(("kind", "spec", "path"), [
    ("CronJob", {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
        "command": "x", "env": {"P": {"valueFrom": {}}}}}}},
     "spec.jobTemplate.spec.template.env.P.valueFrom.secretKeyRef"),
    ("Queue", {"source": {"type": "etcd"}, "template": {
        "command": "x", "env": {"P": {"valueFrom": {}}}}}, "spec.template.env.P.valueFrom"),
    ("Service", {"template": {"command": "x", "env": {"P": {"valueFrom": {}}}}},
     "spec.template.env.P.valueFrom"),
])
def test_every_kind_takes_secret_refs(kind: str, spec: dict[str, Any], path: str) -> None:
    doc = {"apiVersion": "docket.dev/v1", "kind": kind, "metadata": {"name": "a"},
           "spec": spec}
    assert path in problems(doc)
    inner = spec.get("jobTemplate", {}).get("spec", spec)
    inner["template"]["env"]["P"] = REF
    decode_object(doc)


def secret(**body: Any) -> dict[str, Any]:
    return {"apiVersion": "docket.dev/v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "team"}, **body}


def test_secret_values_string_data_wins_and_repr_shows_keys_only() -> None:
    s = decode_secret(secret(data={"password": "aHVudGVyMg==", "user": "YWRtaW4="},
                             stringData={"user": "root"}), namespace="team", name="db")
    assert s.values() == {"password": b"hunter2", "user": b"root"}
    text = repr(s) + str(s)
    assert "aHVudGVyMg" not in text and "hunter2" not in text and "root" not in text
    assert "password" in repr(s)


@pytest.mark.parametrize(("body", "expected"), [
    ({"data": {"password": "hunter2!"}}, "data.password: must be base64"),
    ({"data": {"a b": "eA=="}}, "data.a b: must be letters"),
    ({"stringData": {"..": "x"}}, "stringData...: must be letters"),
    ({"stringData": {"k": 3}}, "stringData.k: must be a string"),
    ({"kind": "Job"}, "kind: must be Secret"),
    ({"metadata": {"name": "other"}}, "metadata.name: is 'other' but the key says 'db'"),
    ({"spec": {}}, "spec: unknown field"),
])
def test_secret_errors_name_the_field_never_the_value(body: dict[str, Any],
                                                      expected: str) -> None:
    with pytest.raises(ObjectInvalid) as info:
        decode_secret(secret(**body), namespace="team", name="db")
    assert expected in str(info.value), str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_secret_key_takes_its_name_and_namespace_from_the_key() -> None:
    s = decode_secret(b'{"stringData": {"k": "v"}}', namespace="team", name="db")
    assert (s.metadata.namespace, s.metadata.name) == ("team", "db")
