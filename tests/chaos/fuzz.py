"""Fuzzed Docket documents for chaos scenario 6 (issue 14): valid objects grown from the
schemas in `crds/`, then broken on purpose, one mutation class at a time.

Each `FuzzDoc` says which key it goes to, which mutation made it, and what the controller's
Invalid status must name: the JSON path of the broken field (`spec.completions`), or, for a
document that cannot be parsed at all, the reason (`not UTF-8 text`, `document too large`...).
Every document is checked against the codec while it is made (`controller.api.decode_object`
is the oracle): a mutation that happens to leave the document valid is drawn again, so every
FuzzDoc is invalid and the scenario can demand an Invalid status for each; a mutation the
codec rejects without naming the field is counted in `Fuzzer.unnamed` (a codec defect).

Seeded (`random.Random(seed)`), and bounded: no document exceeds `MAX_DOC_BYTES` (below etcd's
1.5 MiB request limit), nesting is bounded, YAML bombs are small as text and huge only once
their aliases are expanded (which the codec must refuse without expanding them).
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.api import ObjectInvalid, decode_object

ROOT = Path(__file__).resolve().parents[2]
PLURALS = ("jobs", "cronjobs", "queues", "services")
MUTATIONS = ("wrong_type", "unknown_field", "out_of_range", "missing_required", "huge_value",
             "deep_value", "invalid_utf8", "yaml_bomb", "syntax", "wrong_identity")
MAX_DOC_BYTES = 1_000_000
TRIES = 40  # draws of one mutation before taking another class; bounded

# Small, safe bases: simulated tasks, nothing real would run even if one were valid.
_SIM = {"command": "true", "resources": {"cpus": 0.1, "mem": 16},
        "env": {"DOCKET_SIM_DURATION": "0.1", "DOCKET_SIM_EXIT_CODE": "0"}}
_BASES: dict[str, dict[str, Any]] = {
    "jobs": {"kind": "Job", "spec": {"completions": 1, "template": _SIM}},
    "cronjobs": {"kind": "CronJob", "spec": {"schedule": "*/5 * * * *", "suspend": True,
                                             "jobTemplate": {"spec": {"template": _SIM}}}},
    "queues": {"kind": "Queue", "spec": {"source": {"type": "etcd"}, "template": _SIM}},
    "services": {"kind": "Service", "spec": {"instances": 1, "template": _SIM}},
}


@dataclass(frozen=True)
class FuzzDoc:
    index: int
    plural: str
    namespace: str
    name: str
    mutation: str
    path: str
    """The JSON path the Invalid status must name; "" when the document as a whole fails."""
    reason: str
    """For path "": a phrase the Invalid message must contain."""
    data: bytes

    @property
    def ref(self) -> str:
        return f"{self.plural}/{self.namespace}/{self.name}"


def load_schemas(crds: Path = ROOT / "crds") -> dict[str, dict[str, Any]]:
    """plural -> the kind's openAPIV3Schema."""
    out = {}
    for plural in PLURALS:
        crd = yaml.safe_load((crds / f"{plural}.docket.dev.yaml").read_text())
        out[plural] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return out


def format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def names_field(message: str, path: str) -> bool:
    """Whether an Invalid message ("p1: m1; p2: m2") has a problem at `path` or inside it."""
    return re.search(r"(^|; )" + re.escape(path) + r"([.\[][^:;]*)?: ", message) is not None


def problems_of(doc: FuzzDoc) -> str | None:
    """The codec's verdict: the Invalid message, or None when the document is valid."""
    try:
        decode_object(doc.data, plural=doc.plural, namespace=doc.namespace, name=doc.name)
    except ObjectInvalid as exc:
        return str(exc)
    return None


def expected_in(doc: FuzzDoc, message: str) -> bool:
    """Whether an Invalid message says what this document's mutation must make it say."""
    if doc.path:
        return names_field(message, doc.path)
    return doc.reason.lower() in message.lower()


# --- walking a document beside its schema ---------------------------------------------------
Field = tuple[tuple[str | int, ...], dict[str, Any]]


def fields(doc: Any, schema: Mapping[str, Any], path: tuple[str | int, ...] = ()
           ) -> Iterator[Field]:
    """(path, schema) of every value present in `doc` that the schema describes."""
    if isinstance(doc, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, value in doc.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield (*path, key), sub
                yield from fields(value, sub, (*path, key))
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(doc):
            yield (*path, i), schema["items"]
            yield from fields(value, schema["items"], (*path, i))


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _nest(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"n": value}
    return value


class Fuzzer:
    """`docs(n)`: n invalid documents over `keys` keys per kind (later documents overwrite
    earlier ones at the same key, so a long run exercises updates and keeps the object count
    bounded). Everything drawn from `random.Random(seed)`."""

    def __init__(self, seed: int, *, namespace: str = "fuzz", keys: int = 50,
                 huge_bytes: int = 400_000) -> None:
        self.rng = random.Random(seed)
        self.schemas = load_schemas()
        self.namespace = namespace
        self.keys = keys
        self.huge_bytes = min(huge_bytes, MAX_DOC_BYTES - 10_000)
        self.unnamed: list[str] = []  # "index mutation path": rejected but the path not named
        self.redraws = 0
        self._pool = {p: [self._grow(p) for _ in range(6)] for p in PLURALS}

    # --- valid documents -------------------------------------------------------------------
    def _valid(self, plural: str, doc: dict[str, Any]) -> bool:
        try:
            decode_object(json.dumps(doc), plural=plural, namespace=self.namespace, name="x")
        except ObjectInvalid:
            return False
        return True

    def _grow(self, plural: str) -> dict[str, Any]:
        """A valid document with optional fields drawn from the schema, each kept only if
        the document stays valid (cross-field rules are the codec's to judge)."""
        doc = copy.deepcopy({"apiVersion": "docket.dev/v1", **_BASES[plural]})
        schema = self.schemas[plural]
        for _ in range(25):
            holders = [(p, s) for p, s in fields(doc, schema)
                       if s.get("type") == "object" and s.get("properties")]
            path, sub = self.rng.choice(holders)
            absent = [k for k in sub["properties"] if k not in _get(doc, path)]
            if not absent:
                continue
            key = self.rng.choice(absent)
            trial = copy.deepcopy(doc)
            _get(trial, path)[key] = self._value(sub["properties"][key], 3)
            if self._valid(plural, trial):
                doc = trial
        return doc

    def _value(self, schema: Mapping[str, Any], depth: int) -> Any:
        rng = self.rng
        kind = schema.get("type")
        if "enum" in schema:
            return rng.choice(schema["enum"])
        if kind == "boolean":
            return rng.random() < 0.5
        if kind in ("integer", "number"):
            low = schema.get("minimum", 0)
            low = low + 1 if schema.get("exclusiveMinimum") else low
            high = min(schema.get("maximum", low + 10), low + 10)
            return rng.randint(int(low), int(high)) if kind == "integer" else \
                round(rng.uniform(low, high), 2) or 1.0
        if kind == "string":
            if schema.get("format") == "date-time":
                return "2026-01-02T03:04:05Z"
            if schema.get("pattern"):
                return "redis://127.0.0.1:6379"
            return rng.choice(["a", "abc", "fuzz-1", "x" * 8])
        if kind == "array":
            n = schema.get("minItems", 0) + rng.randint(0, 1)
            return [self._value(schema.get("items") or {}, depth - 1) for _ in range(n)]
        if kind == "object" and depth > 0:
            props = schema.get("properties") or {}
            return {k: self._value(props[k], depth - 1) for k in schema.get("required", [])
                    if k in props}
        return {}

    # --- mutations -------------------------------------------------------------------------
    def docs(self, n: int) -> Iterator[FuzzDoc]:
        for i in range(n):
            yield self.doc(i, MUTATIONS[i % len(MUTATIONS)])

    def doc(self, index: int, mutation: str) -> FuzzDoc:
        plural = PLURALS[(index // len(MUTATIONS)) % len(PLURALS)]
        name = f"{mutation.replace('_', '-')}-{self.rng.randrange(self.keys)}"
        for _ in range(TRIES):
            base = copy.deepcopy(self.rng.choice(self._pool[plural]))
            made = getattr(self, f"_m_{mutation}")(plural, base)
            if made is None:
                self.redraws += 1
                continue
            data, path, reason = made
            doc = FuzzDoc(index, plural, self.namespace, name, mutation, path, reason, data)
            message = problems_of(doc)
            if message is None:
                self.redraws += 1  # still valid: draw again
                continue
            if not expected_in(doc, message):
                self.unnamed.append(f"{index} {mutation} {path or reason}: {message[:200]}")
            return doc
        raise AssertionError(f"no invalid {mutation} document for {plural} in {TRIES} draws")

    def _encode(self, doc: Any) -> bytes:
        if self.rng.random() < 0.5:
            return json.dumps(doc).encode()
        return yaml.safe_dump(doc, sort_keys=False, width=1 << 20).encode()

    def _pick(self, plural: str, doc: Any, test: Any) -> Field | None:
        found = [(p, s) for p, s in fields(doc, self.schemas[plural])
                 if p[0] == "spec" and test(_get(doc, p), s)]
        return self.rng.choice(found) if found else None

    def _m_wrong_type(self, plural: str, doc: Any) -> Any:
        got = self._pick(plural, doc, lambda v, s: s.get("type") is not None)
        if got is None:
            return None
        path, schema = got
        wrong = {"string": [12345, True, ["a"], {"a": 1}], "integer": ["3", 2.5, True, [1]],
                 "number": ["1.5", False, {"n": 1}], "boolean": ["yes", 1, "true"],
                 "array": [{"a": 1}, "a b", 3], "object": [[1, 2], "a", 7]}
        _set(doc, path, self.rng.choice(wrong.get(schema["type"], [[]])))
        return self._encode(doc), format_path(path), ""

    def _m_unknown_field(self, plural: str, doc: Any) -> Any:
        got = self._pick(plural, doc, lambda v, s: isinstance(v, dict) and s.get("properties"))
        path, _ = got if got is not None else (("spec",), {})
        key = f"unknownField{self.rng.randrange(1000)}"
        _get(doc, path)[key] = self.rng.choice([1, "x", [1], {"a": None}])
        return self._encode(doc), format_path((*path, key)), ""

    def _m_out_of_range(self, plural: str, doc: Any) -> Any:
        def bounded(v: Any, s: Mapping[str, Any]) -> bool:
            return any(k in s for k in ("minimum", "maximum", "enum", "minLength", "pattern"))
        got = self._pick(plural, doc, bounded)
        if got is None:
            return None
        path, s = got
        choices: list[Any] = []
        if "maximum" in s:
            choices.append(s["maximum"] * 10 + 1 if s["type"] == "integer" else s["maximum"] * 2)
        if "minimum" in s:
            choices.append(int(s["minimum"]) - 1 if s["type"] == "integer"
                           else float(s["minimum"]) - 0.5)
        if "enum" in s:
            choices.append("NotAnEnumValue")
        if "minLength" in s or "pattern" in s:
            choices.append("")
        _set(doc, path, self.rng.choice(choices))
        return self._encode(doc), format_path(path), ""

    def _m_missing_required(self, plural: str, doc: Any) -> Any:
        holders = [(p, s) for p, s in fields(doc, self.schemas[plural])
                   if isinstance(_get(doc, p), dict) and s.get("required")
                   and any(k in _get(doc, p) for k in s["required"])]
        if not holders:
            return None
        path, s = self.rng.choice(holders)
        key = self.rng.choice([k for k in s["required"] if k in _get(doc, path)])
        del _get(doc, path)[key]
        return self._encode(doc), format_path((*path, key)), ""

    def _m_huge_value(self, plural: str, doc: Any) -> Any:
        # Mostly large, sometimes huge: parsing a huge document costs the controller (and
        # the oracle) about a second per 300 KB of YAML.
        heavy = self.rng.random() < 0.1
        size = self.rng.randint(self.huge_bytes // 4, self.huge_bytes) if heavy else \
            self.rng.randint(2_000, 20_000)
        variant = self.rng.choice(["string", "integer", "list", "digits"])
        if variant == "list" and heavy:  # more values than a document may hold
            doc["spec"]["bigList"] = ["a"] * self.rng.randint(100_001, 150_000)
            return self._encode(doc), "", "document too large"
        if variant == "list":
            doc["spec"]["bigList"] = list(range(size // 8))
            return self._encode(doc), "spec.bigList", ""
        if variant == "digits":  # an integer too long for Python's int parser
            text = json.dumps(doc).replace('"spec": {', '"spec": {"completions": '
                                           + "9" * 5000 + ", ", 1)
            return text.encode(), "", "invalid"
        if variant == "integer":
            got = self._pick(plural, doc, lambda v, s: s.get("type") == "integer")
            if got is None:
                return None
            _set(doc, got[0], int("9" * 300))
            return self._encode(doc), format_path(got[0]), ""
        got = self._pick(plural, doc, lambda v, s: s.get("type") in ("integer", "number",
                                                                      "boolean")
                         or "enum" in s)
        if got is None:
            return None
        _set(doc, got[0], "h" * size)
        return self._encode(doc), format_path(got[0]), ""

    def _m_deep_value(self, plural: str, doc: Any) -> Any:
        got = self._pick(plural, doc, lambda v, s: s.get("type") in ("integer", "number",
                                                                      "string", "boolean"))
        if got is None:
            return None
        if self.rng.random() < 0.8:  # deep, but within what the parsers take: the field
            _set(doc, got[0], _nest(self.rng.randint(20, 200)))
            return self._encode(doc), format_path(got[0]), ""
        depth = self.rng.randint(1_200, 8_000)  # deeper than any parser recursion allows
        text = json.dumps(doc).replace('"spec": {', '"spec": {"deep": ' + "[" * depth
                                       + "]" * depth + ", ", 1)
        return text.encode(), "", "nested too deeply"

    def _m_invalid_utf8(self, plural: str, doc: Any) -> Any:
        got = self._pick(plural, doc, lambda v, s: isinstance(v, str))
        path = got[0] if got is not None else ("spec", "template", "command")
        _set(doc, path, "before-@@BAD@@-after")
        bad = self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                               b"\xe2\x82", b"\xc0\xaf"])
        return self._encode(doc).replace(b"@@BAD@@", bad), "", "not UTF-8 text"

    def _m_yaml_bomb(self, plural: str, doc: Any) -> Any:
        width, levels = self.rng.randint(6, 10), self.rng.randint(8, 12)
        lines = ["bomb:", f"  - &l0 [{', '.join(['lol'] * width)}]"]
        for i in range(1, levels):
            lines.append(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
        where = self.rng.choice(["top", "args", "env"])
        body = yaml.safe_dump(doc, sort_keys=False).rstrip("\n").split("\n")
        if where == "args":  # the bomb is the value of a field
            body = [ln for ln in body if not ln.startswith("bomb")]
            body.append(f"  x-bomb: *l{levels - 1}")
        text = "\n".join(lines + body) + "\n"
        return text.encode(), "", "document too large"

    def _m_syntax(self, plural: str, doc: Any) -> Any:
        text = json.dumps(doc)
        variant = self.rng.choice(["truncated", "duplicate", "two_docs", "python_tag", "tab",
                                   "nul", "scalar"])
        if variant == "truncated":
            return text[: self.rng.randint(1, len(text) - 1)].encode(), "", "invalid"
        if variant == "duplicate":
            return text.replace('"spec": {', '"spec": {"a": 1, "a": 2, ', 1).encode(), "", \
                "duplicate key"
        if variant == "two_docs":
            y = yaml.safe_dump(doc)
            return f"{y}---\n{y}".encode(), "", "YAML documents"
        if variant == "python_tag":
            return b"!!python/object/apply:os.system ['true']\n", "", "invalid YAML"
        if variant == "tab":
            return yaml.safe_dump(doc).replace("  ", "\t", 1).encode(), "", "invalid YAML"
        if variant == "nul":
            return yaml.safe_dump(doc).replace("spec:", "spec:\x00", 1).encode(), "", \
                "invalid YAML"
        return self.rng.choice([b"42", b"[1, 2]", b'"a string"', b"true"]), "", \
            "must be an object"

    def _m_wrong_identity(self, plural: str, doc: Any) -> Any:
        variant = self.rng.choice(["kind", "apiVersion", "name", "namespace"])
        if variant == "kind":
            doc["kind"] = self.rng.choice([k for k in ("Job", "CronJob", "Queue", "Service",
                                                       "Pod") if k != doc["kind"]])
        elif variant == "apiVersion":
            doc["apiVersion"] = self.rng.choice(["v1", "docket.dev/v2", 1])
        else:
            doc["metadata"] = {variant: f"someone-else-{self.rng.randrange(100)}"}
        return self._encode(doc), {"name": "metadata.name", "namespace": "metadata.namespace"
                                   }.get(variant, variant), ""
