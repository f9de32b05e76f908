"""Turning stored bytes into typed objects and back, and reporting every problem precisely.

A document is JSON or YAML. Any problem — syntax, wrong apiVersion or kind, unknown or invalid
field, metadata contradicting its etcd key — becomes a `Problem` with the dotted JSON path of
the field, so `docket validate`, the store and object status can all name it the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from controller.api.base import API_VERSION, FieldError
from controller.api.kinds import AnyObject, CronJob, Job, Queue, Service
from controller.api.status import (
    CronJobStatus,
    JobStatus,
    QueueStatus,
    ServiceStatus,
    StatusBase,
)


@dataclass(frozen=True)
class Kind:
    """One kind of object: its name, where it lives in etcd, and its models."""

    name: str
    plural: str
    model: type[AnyObject]
    status_model: type[StatusBase]

    @property
    def singular(self) -> str:
        return self.name.lower()


KINDS: tuple[Kind, ...] = (
    Kind("Job", "jobs", Job, JobStatus),
    Kind("CronJob", "cronjobs", CronJob, CronJobStatus),
    Kind("Queue", "queues", Queue, QueueStatus),
    Kind("Service", "services", Service, ServiceStatus),
)
_BY_PLURAL = {k.plural: k for k in KINDS}
_BY_NAME = {k.name: k for k in KINDS}


def kind_by_plural(plural: str) -> Kind:
    try:
        return _BY_PLURAL[plural]
    except KeyError:
        raise KeyError(f"unknown kind {plural!r}; known: {', '.join(_BY_PLURAL)}") from None


def kind_by_name(name: str) -> Kind:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown kind {name!r}; known: {', '.join(_BY_NAME)}") from None


def kind_for_model(obj: AnyObject) -> Kind:
    return _BY_NAME[obj.kind]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: the JSON path of the field ("" = whole document)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ObjectInvalid(Exception):
    """A document that cannot be accepted; `problems` says every reason."""

    def __init__(self, problems: list[Problem], *, kind: str = "", namespace: str = "",
                 name: str = "") -> None:
        self.problems = problems
        self.kind = kind
        self.namespace = namespace
        self.name = name
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class InvalidObject:
    """A stored document that failed to decode: handed on, never dropped and never raised,
    so its status can say what is wrong while every other object is served."""

    kind: str
    namespace: str
    name: str
    problems: list[Problem]
    raw: bytes = field(repr=False)

    @property
    def message(self) -> str:
        return "; ".join(str(p) for p in self.problems)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: PyYAML
    keeps the last silently, so a pasted-twice or misspelt-then-fixed field would be ignored.
    Keys brought in by a merge (`<<: *defaults`) may still be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key; the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


MAX_VALUES = 100_000
"""Most values one document may hold once YAML aliases are expanded: a few aliases nested
can otherwise expand to billions ("billion laughs") and stall validation."""


def _expanded_size(value: Any) -> int:
    sizes: dict[int, int] = {}

    def size(v: Any) -> int:
        if not isinstance(v, dict | list):
            return 1
        if id(v) in sizes:
            return sizes[id(v)]
        children = v.values() if isinstance(v, dict) else v
        total = 1 + sum(size(c) for c in children)
        sizes[id(v)] = total
        return total

    return size(value)


def _check_size(value: Any) -> Any:
    if _expanded_size(value) > MAX_VALUES:
        raise ObjectInvalid([Problem("", f"document too large: more than {MAX_VALUES} values "
                                         "(YAML aliases included)")])
    return value


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_json(text: str) -> Any:
    """JSON text -> value; a duplicate key, a syntax error or absurd nesting is an
    ObjectInvalid."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_pairs)
        # JSON has no aliases: a document has fewer values than characters.
        return value if len(text) <= MAX_VALUES else _check_size(value)
    except json.JSONDecodeError as exc:
        raise ObjectInvalid([Problem("", f"invalid JSON: {exc.msg} at line {exc.lineno} "
                                         f"column {exc.colno}")]) from None
    except RecursionError:
        raise ObjectInvalid([Problem("", "invalid JSON: nested too deeply")]) from None
    except ValueError as exc:  # the duplicate key
        raise ObjectInvalid([Problem("", f"invalid JSON: {exc}")]) from None


def load_yaml_all(text: str) -> list[Any]:
    """Every document of a YAML stream (None for an empty one), with the same checks."""
    try:
        docs = list(yaml.load_all(text, Loader=_UniqueKeyLoader))
    except yaml.YAMLError as exc:
        raise ObjectInvalid([Problem("", f"invalid YAML: {yaml_reason(exc)}")]) from None
    except RecursionError:
        raise ObjectInvalid([Problem("", "invalid YAML: nested too deeply")]) from None
    except ValueError as exc:  # a scalar PyYAML cannot convert: an integer of 4301+ digits
        raise ObjectInvalid([Problem("", f"invalid YAML: {exc}")]) from None
    return [_check_size(d) for d in docs]


def parse_document(data: bytes | str) -> Any:
    """JSON or YAML text of one document -> Python value, raising ObjectInvalid on a syntax
    error, a duplicate key, more than one document, or bytes that are not UTF-8."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ObjectInvalid([Problem("", f"not UTF-8 text: {exc.reason} at byte "
                                             f"{exc.start}")]) from None
    else:
        text = data
    stripped = text.lstrip()
    if not stripped:
        raise ObjectInvalid([Problem("", "empty document")])
    if stripped[0] in "{[":
        try:
            return load_json(text)
        except ObjectInvalid as json_error:
            # Flow-style YAML starts the same way; JSON's message is the clearer one.
            try:
                docs = load_yaml_all(text)
            except ObjectInvalid:
                raise json_error from None
            if len(docs) == 1:
                return docs[0]
            raise json_error from None
    docs = load_yaml_all(text)
    if not docs:
        raise ObjectInvalid([Problem("", "empty document")])
    if len(docs) != 1:
        raise ObjectInvalid([Problem("", f"holds {len(docs)} YAML documents; one object per "
                                         "key")])
    if docs[0] is None:
        raise ObjectInvalid([Problem("", "empty document")])
    return docs[0]


def yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1} column {mark.column + 1}"
    return str(problem)


# Fields holding a union discriminated on `type`: pydantic puts the tag in the error location
# (spec.source.redis.url), which is not a JSON path the user wrote.
_TAGGED_UNION_FIELDS = {"source"}
_INTERNAL_STEP = re.compile(
    r"^(function-(after|before|wrap|plain)|lax-or-strict|json-or-python|chain|nullable|"
    r"tagged-union|union|list|dict|set|tuple|model|default)\["
)


def format_loc(loc: tuple[int | str, ...], doc: Any = None) -> str:
    """pydantic's error location -> the JSON path the user wrote. Steps pydantic adds
    (validator wrappers, union tags) are dropped, unless the document really has a key of
    that name there (a label key may contain '[')."""
    out = ""
    prev: int | str = ""
    node = doc
    for part in loc:
        present = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        if not present and isinstance(part, str) and (
                _INTERNAL_STEP.match(part) or prev in _TAGGED_UNION_FIELDS):
            prev = ""
            continue
        node = node[part] if present else None
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
        prev = part
    return out


_MESSAGE_PREFIXES = (("Value error, ", ""), ("Assertion failed, ", ""))
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "an object", type(None): "null"}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def _humanize(err: Mapping[str, Any]) -> str:
    msg = str(err["msg"])
    kind = err.get("type")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be an object (a mapping), not {_type_name(err.get('input'))}"
    if kind in ("string_type", "int_type", "float_type", "bool_type", "list_type"):
        wanted = {"string_type": "a string", "int_type": "an integer",
                  "float_type": "a number", "bool_type": "true or false",
                  "list_type": "a list"}[kind]
        value = err.get("input")
        hint = ""
        if kind == "string_type" and isinstance(value, bool | int | float):
            hint = " (quote it: YAML reads yes, no, on, off and numbers as non-strings)"
        elif isinstance(value, str) and kind in ("int_type", "float_type", "bool_type"):
            hint = " (remove the quotes)"
        return f"must be {wanted}, not {_type_name(value)}{hint}"
    if kind == "finite_number":
        return "must be a finite number"
    for prefix, repl in _MESSAGE_PREFIXES:
        if msg.startswith(prefix):
            msg = repl + msg[len(prefix):]
    if kind == "union_tag_not_found":
        return "required field is missing"
    if kind == "union_tag_invalid":
        return f"must be one of {ctx.get('expected_tags')}, not {ctx.get('tag')!r}"
    for subject in ("Input", "List", "String", "Dictionary", "Value"):
        if msg.startswith(f"{subject} should "):
            return "must " + msg[len(subject) + len(" should "):]
    return msg


def problems_from_validation(exc: ValidationError, prefix: str = "",
                             doc: Any = None) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = format_loc(tuple(err["loc"]), doc)
        if err.get("type") == "union_tag_invalid" or err.get("type") == "union_tag_not_found":
            path = f"{path}.type" if path else "type"
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            path = f"{path}.{cause.field}" if path else cause.field
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        problems.append(Problem(path, _humanize(err)))
    return problems


def decode_object(
    data: bytes | str | Mapping[str, Any],
    *,
    plural: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
) -> AnyObject:
    """Parse and validate one document, checking it against its etcd key when one is given
    (`plural`, `namespace`, `name`); a missing metadata.name/namespace is taken from the key."""
    doc = data if isinstance(data, Mapping) else parse_document(data)
    key_kind = kind_by_plural(plural).name if plural else ""
    if not isinstance(doc, Mapping):
        raise ObjectInvalid(
            [Problem("", f"must be an object (a mapping), not {type(doc).__name__}")],
            kind=key_kind, namespace=namespace or "", name=name or "",
        )
    meta = doc.get("metadata")
    meta_name = meta.get("name") if isinstance(meta, Mapping) else None
    meta_ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    doc_kind = doc.get("kind")
    label_kind = doc_kind if isinstance(doc_kind, str) and doc_kind in _BY_NAME else key_kind
    label_ns = namespace or (meta_ns if isinstance(meta_ns, str) else "default")
    label_name = name or (meta_name if isinstance(meta_name, str) else "")

    def invalid(problems: list[Problem]) -> ObjectInvalid:
        return ObjectInvalid(problems, kind=label_kind, namespace=label_ns, name=label_name)

    problems: list[Problem] = []
    if doc.get("apiVersion") != API_VERSION:
        got = doc.get("apiVersion")
        problems.append(Problem(
            "apiVersion",
            "required field is missing" if got is None else f"must be {API_VERSION}, not {got!r}",
        ))
    if doc_kind is None:
        problems.append(Problem("kind", "required field is missing"))
        kind = _BY_PLURAL.get(plural or "")
    elif not isinstance(doc_kind, str) or doc_kind not in _BY_NAME:
        problems.append(Problem("kind", f"unknown kind {doc_kind!r}; must be one of "
                                        f"{', '.join(_BY_NAME)}"))
        kind = None
    else:
        kind = _BY_NAME[doc_kind]
        if plural and kind.plural != plural:
            problems.append(Problem(
                "kind", f"is {doc_kind} but the key is under {plural}/ (for {key_kind} objects)"
            ))
    if namespace is not None and meta_ns is not None and meta_ns != namespace:
        problems.append(Problem("metadata.namespace",
                                f"is {meta_ns!r} but the key says {namespace!r}"))
    if name is not None and meta_name is not None and meta_name != name:
        problems.append(Problem("metadata.name", f"is {meta_name!r} but the key says {name!r}"))
    if kind is None:
        raise invalid(problems)

    body = dict(doc)
    body.setdefault("kind", kind.name)
    body.setdefault("apiVersion", API_VERSION)
    if isinstance(meta, Mapping):
        filled = dict(meta)
        if name is not None:
            filled.setdefault("name", name)
        if namespace is not None:
            filled.setdefault("namespace", namespace)
        body["metadata"] = filled
    elif meta is None and (name is not None or namespace is not None):
        body["metadata"] = {k: v for k, v in (("name", name), ("namespace", namespace)) if v}
    try:
        obj = kind.model.model_validate(body)
    except ValidationError as exc:
        problems.extend(p for p in problems_from_validation(exc, doc=body)
                        if p.path not in ("apiVersion", "kind"))
        raise invalid(problems) from None
    if problems:
        raise invalid(problems)
    if obj.metadata.name is None:
        raise invalid([Problem("metadata.name", "required field is missing")])
    return obj


def encode_model(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True, exclude_none=True).encode()


def encode_object(obj: AnyObject) -> bytes:
    return encode_model(obj)


def encode_status(status: StatusBase) -> bytes:
    return encode_model(status)


def decode_status(plural: str, data: bytes | str) -> StatusBase:
    """Status is written only by the controller, so a failure here is a bug or corruption:
    it raises ObjectInvalid rather than guessing."""
    model = kind_by_plural(plural).status_model
    try:
        return model.model_validate(parse_document(data))
    except ValidationError as exc:
        raise ObjectInvalid(problems_from_validation(exc)) from None
