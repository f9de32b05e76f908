"""crds/ as Kubernetes would take them: a check of the structural-schema rules of
apiextensions.k8s.io/v1, and a small validator (strict field validation, as
`kubectl --validate=strict` does) run over the examples and over broken variants of them."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api import KINDS
from controller.api.crd import crd_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "deploy/examples").iterdir()
                  if p.suffix in (".yaml", ".json"))

# The fields of apiextensions/v1 JSONSchemaProps this generator may use; anything else
# (`$ref`, `const`, `$defs`, `discriminator`, `title`...) the API server would refuse or drop.
ALLOWED_KEYS = {
    "type", "description", "properties", "additionalProperties", "items", "required", "enum",
    "default", "nullable", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "format", "oneOf", "anyOf",
    "allOf", "not", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
JUNCTOR_FORBIDDEN = {"type", "description", "default", "additionalProperties", "nullable"}


def structural_problems(node: dict[str, Any], path: str, *, in_junctor: bool = False,
                        outer: dict[str, Any] | None = None) -> list[str]:
    out: list[str] = []
    unknown = set(node) - ALLOWED_KEYS
    if unknown:
        out.append(f"{path}: keys Kubernetes does not know: {sorted(unknown)}")
    if in_junctor:
        if set(node) & JUNCTOR_FORBIDDEN:
            out.append(f"{path}: {sorted(set(node) & JUNCTOR_FORBIDDEN)} inside a junctor")
        for name in node.get("properties", {}):
            if outer is None or name not in outer.get("properties", {}):
                out.append(f"{path}.{name}: in a junctor but not in the structural schema")
    elif node.get("type") not in TYPES and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.append(f"{path}: no type (every structural node needs one)")
    if "properties" in node and "additionalProperties" in node:
        out.append(f"{path}: additionalProperties and properties are mutually exclusive")
    if "properties" in node and not in_junctor and node.get("type") != "object":
        out.append(f"{path}: properties on a {node.get('type')}")
    if "items" in node and node.get("type") != "array":
        out.append(f"{path}: items on a {node.get('type')}")
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if bound in node and not isinstance(node[bound], bool):
            out.append(f"{path}: {bound} must be a boolean in OpenAPI v3.0")
    for name, sub in node.get("properties", {}).items():
        out += structural_problems(sub, f"{path}.{name}", in_junctor=in_junctor,
                                   outer=(outer or {}).get("properties", {}).get(name))
    if isinstance(node.get("items"), dict):
        out += structural_problems(node["items"], f"{path}[]", in_junctor=in_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        out += structural_problems(node["additionalProperties"], f"{path}.*")
    for junctor in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(node.get(junctor, [])):
            out += structural_problems(sub, f"{path}.{junctor}[{i}]", in_junctor=True,
                                       outer=node)
    if "default" in node and not in_junctor:
        out += [f"{path}: default {p}" for p in validate(node["default"], node, "default")]
    return out


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Problems of `value` under `schema`, unknown fields included (strict validation)."""
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: must not be null"]
    kind = schema.get("type")
    checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
              "boolean": lambda v: isinstance(v, bool)}
    if kind is not None and not checks[kind](value):
        return [f"{path}: must be of type {kind}"]
    out: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: must be one of {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and (value < schema["minimum"] or (
                schema.get("exclusiveMinimum") and value == schema["minimum"])):
            out.append(f"{path}: below the minimum")
        if "maximum" in schema and (value > schema["maximum"] or (
                schema.get("exclusiveMaximum") and value == schema["maximum"])):
            out.append(f"{path}: above the maximum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            out.append(f"{path}: wrong number of items")
        for i, item in enumerate(value):
            out += validate(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties")
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{path}.{name}: required")
        for name, item in value.items():
            if props is not None and name in props:
                out += validate(item, props[name], f"{path}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += validate(item, schema["additionalProperties"], f"{path}.{name}")
            elif props is not None and kind is not None:  # not inside a junctor
                out.append(f"{path}.{name}: unknown field")
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not validate(value, s, path)]
        if len(matching) != 1:
            out.append(f"{path}: matches {len(matching)} of the oneOf variants, not 1")
    return out


def schema_of(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / f"{kind}.docket.dev.yaml").read_text())
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.plural)
def test_schemas_are_structural(kind: Any) -> None:
    schema = schema_of(kind.plural)
    assert structural_problems(schema, kind.plural) == []
    assert schema["properties"]["metadata"].keys() <= {"type", "description"}
    assert crd_for(kind)["spec"]["names"]["kind"] == kind.name


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = (json.loads(path.read_text()) if path.suffix == ".json"
                           else yaml.safe_load(path.read_text()))
    return doc


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_their_schema(path: Path) -> None:
    doc = load(path)
    plural = {k.name: k.plural for k in KINDS}[doc["kind"]]
    assert validate(doc, schema_of(plural)) == []


BREAKAGES = [
    (lambda d: d["spec"].__setitem__("completionz", 1), ".spec.completionz: unknown field"),
    (lambda d: d["spec"]["template"]["resources"].__setitem__("cpu", 1),
     ".spec.template.resources.cpu: unknown field"),
    (lambda d: d["spec"]["template"]["resources"].__setitem__("cpus", 0),
     ".spec.template.resources.cpus: below the minimum"),
    (lambda d: d["spec"].__setitem__("parallelism", "4"),
     ".spec.parallelism: must be of type integer"),
    (lambda d: d["spec"].__setitem__("completionMode", "indexed"),
     ".spec.completionMode: must be one of"),
    (lambda d: d["spec"]["template"]["constraints"].append(["rack"]),
     ".spec.template.constraints[1]: wrong number of items"),
]


@pytest.mark.parametrize(("breakage", "expected"), BREAKAGES)
def test_schema_rejects_what_the_models_reject(breakage: Any, expected: str) -> None:
    doc = copy.deepcopy(load(ROOT / "deploy/examples/render-frames.yaml"))
    breakage(doc)
    problems = validate(doc, schema_of("jobs"))
    assert any(p.startswith(expected) for p in problems), problems


def test_a_queue_source_must_be_one_variant() -> None:
    doc = load(ROOT / "deploy/examples/send-email.json")
    schema = schema_of("queues")
    doc["spec"]["source"] = {"type": "redis"}
    assert any("oneOf" in p for p in validate(doc, schema))
    doc["spec"]["source"] = {"type": "redis", "url": "redis://h", "key": "k"}
    assert validate(doc, schema) == []
    doc["spec"]["source"] = {"type": "kafka"}
    assert validate(doc, schema)
