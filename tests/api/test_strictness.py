"""What an operator's slip looks like to the models: strict numbers and booleans, bounds,
null as "not given", duplicate keys, YAML aliases, and error paths exactly as written."""

from __future__ import annotations

import copy
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from controller.api import (
    Constraint,
    CronJob,
    Job,
    ObjectInvalid,
    Queue,
    Service,
    decode_object,
)
from controller.api.codec import MAX_VALUES, parse_document

BASE: dict[str, Any] = {"apiVersion": "docket.dev/v1", "kind": "Job",
                        "metadata": {"name": "x"}, "spec": {"template": {"command": "true"}}}


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(ObjectInvalid) as exc:
        decode_object(doc)
    return [str(p) for p in exc.value.problems]


def with_spec(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec)
    return doc


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"completions": "3"}, "spec.completions: must be an integer, not a string"),
        ({"completions": True}, "spec.completions: must be an integer, not a boolean"),
        ({"completions": 2.5}, "spec.completions: must be an integer, not a number"),
        ({"completions": 10**40}, "spec.completions: must be less than or equal to 1000000"),
        ({"suspend": "yes"}, "spec.suspend: must be true or false, not a string"),
        ({"suspend": 1}, "spec.suspend: must be true or false, not an integer"),
        ({"taskTimeoutSeconds": float("nan")}, "spec.taskTimeoutSeconds: must be a finite"),
        ({"taskTimeoutSeconds": float("inf")}, "spec.taskTimeoutSeconds: must be a finite"),
        ({"activeDeadlineSeconds": 1e300}, "spec.activeDeadlineSeconds: must be less than"),
        ({"backoff": {"factor": "2"}}, "spec.backoff.factor: must be a number, not a string"),
        ({"template": {"command": "x", "resources": {"cpus": "0.5"}}},
         "spec.template.resources.cpus: must be a number, not a string (remove the quotes)"),
        ({"template": {"command": "x", "env": {"DEBUG": True}}},
         "spec.template.env.DEBUG: must be a string, not a boolean (quote it"),
        ({"template": {"command": "x", "uris": [{"value": "u", "extract": "no"}]}},
         "spec.template.uris[0].extract: must be true or false"),
        ({"template": {"command": "x", "container": {
            "type": "DOCKER", "image": "i",
            "portMappings": [{"containerPort": 80, "hostPort": -1}]}}},
         "spec.template.container.portMappings[0].hostPort: must be greater than or equal to 0"),
        ({"template": {"command": "x", "container": {"type": "DOCKER", "image": "i",
                                                     "volumes": [{"hostPath": "/a"}]}}},
         "spec.template.container.volumes[0].containerPath: required field is missing"),
        ({"template": {"command": "x", "constraints": [["rack", "MAX_PER", True]]}},
         "spec.template.constraints[0]: each element must be a string"),
    ],
)
def test_typos_are_never_coerced(spec: dict[str, Any], expected: str) -> None:
    found = problems_of(with_spec(**spec))
    assert any(p.startswith(expected) for p in found), found


def test_integers_are_fine_where_numbers_are_expected() -> None:
    obj = decode_object(with_spec(taskTimeoutSeconds=30, template={
        "command": "x", "resources": {"cpus": 1, "mem": 64}}))
    assert isinstance(obj, Job) and obj.spec.template.resources.cpus == 1.0


def test_null_means_the_default_and_a_required_null_is_missing() -> None:
    obj = decode_object(with_spec(completions=None, backoff=None, suspend=None))
    assert isinstance(obj, Job)
    assert (obj.spec.completions, obj.spec.backoff.initial_seconds, obj.spec.suspend) == (
        1, 10, False)
    assert problems_of(with_spec(template=None)) == ["spec.template: required field is missing"]
    doc = copy.deepcopy(BASE)
    doc["spec"] = None
    assert problems_of(doc) == ["spec: required field is missing"]


def test_unknown_fields_are_rejected_at_every_level() -> None:
    doc = {"apiVersion": "docket.dev/v1", "kind": "Queue", "metadata": {"name": "q"},
           "spec": {"source": {"type": "redis", "url": "redis://h", "key": "k", "db": 1},
                    "deadLetter": {"key": "dead", "prefix": "x"},
                    "template": {"command": "x", "uris": [{"value": "u", "mode": 1}],
                                 "container": {"type": "DOCKER", "image": "i",
                                               "parameters": [{"key": "k", "value": "v",
                                                               "x": 1}]}}}}
    assert sorted(problems_of(doc)) == [
        "spec.deadLetter.prefix: unknown field",
        "spec.source.db: unknown field",
        "spec.template.container.parameters[0].x: unknown field",
        "spec.template.uris[0].mode: unknown field",
    ]


def test_paths_never_show_pydantic_internals() -> None:
    doc = {"apiVersion": "docket.dev/v1", "kind": "Queue", "metadata": {"name": "Q!"},
           "spec": {"source": {"type": "redis"}, "template": {"command": "x"},
                    "deadLetter": {"type": "nats"}}}
    found = problems_of(doc)
    assert sorted(found) == sorted([
        "metadata.name: must be a DNS-1123 label: lowercase letters, digits and '-', "
        "starting and ending with a letter or digit",
        "spec.source.url: required field is missing",
        "spec.source.key: required field is missing",
        "spec.deadLetter.type: unknown field",
        "spec.deadLetter.key: required field is missing",
    ])
    for text in found:
        assert "function-" not in text and "[" not in text.split(":")[0]


def test_a_label_key_with_brackets_keeps_its_path() -> None:
    doc = copy.deepcopy(BASE)
    doc["metadata"]["labels"] = {"a[1]": 5}
    assert problems_of(doc)[0].startswith("metadata.labels.a[1]: must be a string")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("apiVersion: docket.dev/v1\nkind: Job\nspec:\n  completions: 2\n  completions: 3\n",
         "invalid YAML: duplicate key 'completions' at line 5"),
        ('{"apiVersion": "docket.dev/v1", "kind": "Job", "kind": "Job"}',
         "invalid JSON: duplicate key 'kind'"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("a: [" * 3000, "invalid YAML"),
        (b"\xff\xfe kind: Job", "not UTF-8"),
        ("kind: Job\n---\nkind: Job\n", "holds 2 YAML documents"),
        ("# just a comment\n", "empty document"),
    ],
)
def test_unparseable_documents(text: str | bytes, fragment: str) -> None:
    with pytest.raises(ObjectInvalid) as exc:
        parse_document(text)
    assert fragment in str(exc.value)


def test_yaml_merge_keys_may_override_but_aliases_cannot_explode() -> None:
    text = """
apiVersion: docket.dev/v1
kind: Job
metadata: {name: merged}
defaults: &defaults {cpus: 1, mem: 64}
spec:
  template:
    command: x
    resources:
      <<: *defaults
      mem: 128
"""
    doc = parse_document(text)
    del doc["defaults"]
    obj = decode_object(doc)
    assert isinstance(obj, Job)
    assert (obj.spec.template.resources.cpus, obj.spec.template.resources.mem) == (1, 128)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 8):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    with pytest.raises(ObjectInvalid, match=f"more than {MAX_VALUES} values"):
        parse_document(bomb)


def test_yaml_values_read_as_operators_write_them() -> None:
    text = """
apiVersion: docket.dev/v1
kind: Queue
metadata: {name: q, labels: {tier: "1"}}
spec:
  source: {type: etcd}
  batchSeparator: ","
  template: {args: [/bin/echo, "on"]}
"""
    obj = decode_object(text)
    assert isinstance(obj, Queue)
    assert obj.spec.template.args == ["/bin/echo", "on"] and obj.metadata.labels == {"tier": "1"}
    found = problems_of(text.replace('"on"', "on"))
    assert found == ["spec.template.args[1]: must be a string, not a boolean (quote it: YAML "
                     "reads yes, no, on, off and numbers as non-strings)"]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def test_every_user_field_states_its_default_or_that_it_is_required() -> None:
    seen: set[type[BaseModel]] = set()
    missing: list[str] = []

    def walk(model: type[BaseModel]) -> None:
        # Constraint is written as a list; its schema documents that form instead.
        if model in seen or model is Constraint:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            text = info.description or ""
            if name not in ("kind", "api_version", "metadata", "spec"):
                wanted = "Required" if info.is_required() else "Default"
                if wanted not in text:
                    missing.append(f"{model.__name__}.{name}: says no {wanted}")
            for sub in _models_in(info.annotation):
                walk(sub)

    for kind in (Job, CronJob, Queue, Service):
        walk(kind)
    assert missing == []
    assert len(seen) >= 15  # the walk really reached the nested models


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({"command": "x", "constraints": "hostname:UNIQUE"},
         "spec.template.constraints: must be a list, not a string"),
        ({"command": "x", "constraints": ["hostname"]},
         "spec.template.constraints[0]: must be [field, operator] or [field, operator, value]"),
    ],
)
def test_constraint_shapes(template: dict[str, Any], expected: str) -> None:
    assert problems_of(with_spec(template=template)) == [expected]
