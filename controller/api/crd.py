"""Kubernetes-style CustomResourceDefinitions generated from the models, for `crds/`.

Editors and validators (kubeconform, the YAML language server) understand this layout. The
schema is a *structural* OpenAPI v3 schema, as the Kubernetes API server accepts it:
- no `$ref`, `const` or `discriminator`; `nullable` instead of a union with null; OpenAPI
  3.0's boolean `exclusiveMinimum`; a type on every node;
- no `additionalProperties: false`: Kubernetes forbids it next to `properties` (closed objects
  are its default: unknown fields are pruned, or rejected by strict field validation, as
  `kubectl --validate=strict` and `kubeconform -strict` do);
- a union discriminated on `type` (a Queue's source) is one object with every variant's
  properties, and a `oneOf` that holds only value validations (each variant's tag and
  required fields), as structural schemas demand;
- the root `metadata` is left to Kubernetes (`type: object`).
The models stay the verdict (`docket validate`); the schema is their best structural image.
"""

from __future__ import annotations

from typing import Any

import yaml

from controller.api.base import GROUP, VERSION
from controller.api.codec import KINDS, Kind

_DROP_KEYS = {"title", "discriminator"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS or key == "$defs":
            continue
        out[key] = _resolve(value, defs)
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for union in ("anyOf", "oneOf"):
        options = out.get(union)
        if isinstance(options, list) and any(o == {"type": "null"} for o in options):
            rest = [o for o in options if o != {"type": "null"}]
            del out[union]
            if len(rest) == 1:
                out = {**rest[0], **out}
            else:
                out[union] = rest
            out["nullable"] = True
            out.pop("default", None) if out.get("default") is None else None
    return out


def _merge_variants(node: dict[str, Any], variants: list[Any]) -> dict[str, Any]:
    if not all(isinstance(v, dict) and v.get("type") == "object" for v in variants):
        raise ValueError(f"cannot make a structural schema of the union {variants!r}")
    merged: dict[str, Any] = {}
    for variant in variants:
        for name, prop in variant.get("properties", {}).items():
            if name in merged and "enum" in merged[name] and "enum" in prop:
                merged[name] = {**merged[name], "enum": merged[name]["enum"] + prop["enum"]}
            else:
                merged.setdefault(name, prop)
    out = {k: v for k, v in node.items() if k not in ("oneOf", "anyOf")}
    descriptions = [v["description"] for v in variants if "description" in v]
    if descriptions and "description" not in out:
        out["description"] = " Or: ".join(descriptions)
    out["type"] = "object"
    out["properties"] = merged
    # Only value validations may sit under a junctor: each variant's tag and required fields.
    out["oneOf"] = [
        {"properties": {k: {"enum": p["enum"]} for k, p in v.get("properties", {}).items()
                        if "enum" in p},
         "required": v.get("required", [])}
        for v in variants
    ]
    return out


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) if k not in ("enum", "default", "required") else v
           for k, v in node.items()}
    if isinstance(node.get("properties"), dict):
        # Property names are not keywords: a property called `default` (the policy's) is a
        # schema like any other.
        out["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
    for union in ("oneOf", "anyOf"):
        if union in out and "type" not in out:
            out = _merge_variants(out, out[union])
    if "properties" in out and out.get("additionalProperties") is False:
        del out["additionalProperties"]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[flag] = value
            out[bound] = True
    return out


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(_resolve(raw, raw.get("$defs", {})))
    return schema


def crd_for(kind: Kind) -> dict[str, Any]:
    schema = openapi_schema(kind.model)
    schema["properties"]["metadata"] = {
        "type": "object",
        "description": "name and namespace: DNS-1123 labels; both may be omitted when the "
        "object is written to its etcd key, and must match the key where given.",
    }
    schema["properties"]["status"] = openapi_schema(kind.status_model)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.name,
                "listKind": f"{kind.name}List",
                "plural": kind.plural,
                "singular": kind.singular,
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
            }],
        },
    }


def policy_crd() -> dict[str, Any]:
    """The admission policy (controller/api/policy.py): one cluster-wide object, no status."""
    from controller.api.policy import Policy

    schema = openapi_schema(Policy)
    schema["properties"]["metadata"] = {
        "type": "object", "description": "Optional: the policy is the one object at "
        "<prefix>/policy."}
    # Reserved for the controller's conditions about the policy in force (issue 16); today
    # its verdict is `docket policy` and the docket_policy_valid gauge.
    schema["properties"]["status"] = {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True,
        "description": "Reserved for the controller: conditions about the policy in force."}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"policies.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": "Policy", "listKind": "PolicyList", "plural": "policies",
                      "singular": "policy"},
            "scope": "Cluster",
            "versions": [{"name": VERSION, "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": schema}}],
        },
    }


def render_crds() -> dict[str, str]:
    """File name -> YAML text for every kind, and the policy."""
    header = "# Generated by `docket crds` from controller/api; do not edit by hand.\n"
    out = {
        f"{k.plural}.{GROUP}.yaml": header + yaml.safe_dump(crd_for(k), sort_keys=False)
        for k in KINDS
    }
    out[f"policies.{GROUP}.yaml"] = header + yaml.safe_dump(policy_crd(), sort_keys=False)
    return out
