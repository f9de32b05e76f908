"""The Secret document: named values a namespace's tasks read into their environment
(`env: {NAME: {valueFrom: {secretKeyRef: {name, key}}}}`), stored at
`<prefix>/secrets/<namespace>/<name>` (docs/architecture.md §3).

Kubernetes' shape and rules, so operators can copy theirs: `data` holds base64 values,
`stringData` plain text (written as UTF-8), and where a key is in both `stringData` wins;
keys are env names or file names (`[-._a-zA-Z0-9]+`, not '.' or '..'). A Secret is not a kind
the controller reconciles: it has no status and no tasks, it is read by the controller's
secret cache (controller/secrets.py) and by `docket create|get|describe secret`.

A Secret's values never leave this model by accident: its repr and every error message name
keys, never values (pydantic's own errors carry the input, so they are turned into Problems
here, which hold only a path and a message).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from controller.api.base import API_VERSION, DocketModel, FieldError, ObjectMeta
from controller.api.codec import ObjectInvalid, Problem, parse_document, problems_from_validation
from controller.api.template import check_secret_key

SECRET_KIND = "Secret"
SECRETS = "secrets"
"""The key segment of Secrets (`<prefix>/secrets/<ns>/<name>`)."""


def _check_keys(values: Mapping[str, Any]) -> None:
    for key in values:
        try:
            check_secret_key(key)
        except ValueError as exc:
            # Reported at the key's own path: `data.<key>: must be ...`.
            raise FieldError(key, str(exc)) from None


class Secret(DocketModel):
    """A Secret: `data` (base64) and `stringData` (text); see the module docstring."""

    api_version: Literal["docket.dev/v1"] = Field(default="docket.dev/v1", alias="apiVersion")
    kind: Literal["Secret"] = "Secret"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    type: str | None = Field(default=None, description="Kubernetes' secret type (Opaque); "
                             "kept, not interpreted. Default: none.")
    data: dict[str, str] = Field(default_factory=dict,
                                 description="Key -> value, base64 (standard, padded).")
    string_data: dict[str, str] = Field(default_factory=dict,
                                        description="Key -> value as text; wins over data.")

    @field_validator("data")
    @classmethod
    def _check_data(cls, data: dict[str, str]) -> dict[str, str]:
        _check_keys(data)
        for key, value in data.items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise FieldError(key, "must be base64 (standard alphabet, padded)") from None
        return data

    @field_validator("string_data")
    @classmethod
    def _check_string_data(cls, data: dict[str, str]) -> dict[str, str]:
        _check_keys(data)
        return data

    def values(self) -> dict[str, bytes]:
        """Every key's value as bytes; stringData wins over data on a clash."""
        out = {k: base64.b64decode(v) for k, v in self.data.items()}
        out.update({k: v.encode() for k, v in self.string_data.items()})
        return out

    def __repr_args__(self) -> Any:
        # Keys only: a repr ends up in logs and tracebacks.
        for name, value in super().__repr_args__():
            if name in ("data", "string_data"):
                yield name, sorted(value)
            else:
                yield name, value


def decode_secret(data: bytes | str | Mapping[str, Any], *, namespace: str | None = None,
                  name: str | None = None) -> Secret:
    """Parse and validate a stored Secret, checking its metadata against its key. Raises
    ObjectInvalid whose problems name fields and keys, never values."""
    doc = data if isinstance(data, Mapping) else parse_document(data)

    def invalid(problems: list[Problem]) -> ObjectInvalid:
        return ObjectInvalid(problems, kind=SECRET_KIND, namespace=namespace or "",
                             name=name or "")

    if not isinstance(doc, Mapping):
        raise invalid([Problem("", f"must be an object (a mapping), not "
                                   f"{type(doc).__name__}")])
    problems: list[Problem] = []
    if doc.get("apiVersion") not in (None, API_VERSION):
        problems.append(Problem("apiVersion", f"must be {API_VERSION}"))
    if doc.get("kind") not in (None, SECRET_KIND):
        problems.append(Problem("kind", f"must be {SECRET_KIND}"))
    meta = doc.get("metadata")
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
    if isinstance(meta, Mapping):
        for field, want in (("namespace", namespace), ("name", name)):
            got = meta.get(field)
            if want is not None and got is not None and got != want:
                problems.append(Problem(f"metadata.{field}",
                                        f"is {got!r} but the key says {want!r}"))
        filled = dict(meta)
        if name is not None:
            filled.setdefault("name", name)
        if namespace is not None:
            filled.setdefault("namespace", namespace)
        body["metadata"] = filled
    elif meta is None:
        body["metadata"] = {k: v for k, v in (("name", name), ("namespace", namespace)) if v}
    try:
        secret = Secret.model_validate(body)
    except ValidationError as exc:
        # Paths and messages only: `_humanize` never quotes a string input.
        problems.extend(problems_from_validation(exc, doc=body))
        raise invalid(problems) from None
    if problems:
        raise invalid(problems)
    if secret.metadata.name is None:
        raise invalid([Problem("metadata.name", "required field is missing")])
    return secret
