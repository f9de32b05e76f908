"""Reading manifest files (YAML with `---` documents, or JSON) and validating every object in
them offline, with one `Finding` per problem. Shared by `docket validate` and `docket apply`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.api.codec import ObjectInvalid, Problem, decode_object, yaml_reason
from controller.api.kinds import AnyObject

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Finding:
    """One problem in one document of one file, printable as one line."""

    file: str
    subject: str  # "Job default/send-email", or "document 2" when the object is unknown
    problem: Problem

    def __str__(self) -> str:
        return f"{self.file}: {self.subject}: {self.problem}"


@dataclass(frozen=True)
class LoadedObject:
    file: str
    obj: AnyObject


def expand_paths(paths: Iterable[str]) -> tuple[list[Path], list[Finding]]:
    files: list[Path] = []
    missing: list[Finding] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*")
                                if f.is_file() and f.suffix in MANIFEST_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            missing.append(Finding(raw, "file", Problem("", "no such file or directory")))
    return files, missing


def _documents(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(document number from 1, parsed document); raises ObjectInvalid on a syntax error."""
    if path.suffix == ".json" or text.lstrip()[:1] in ("{", "["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ObjectInvalid([Problem("", f"invalid JSON: {exc.msg} at line {exc.lineno} "
                                             f"column {exc.colno}")]) from None
        docs = value if isinstance(value, list) else [value]
        yield from enumerate(docs, start=1)
        return
    try:
        parsed = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ObjectInvalid([Problem("", f"invalid YAML: {yaml_reason(exc)}")]) from None
    for number, doc in enumerate(parsed, start=1):
        if doc is not None:  # an empty document between two `---` is not an object
            yield number, doc


def _subject(exc: ObjectInvalid, number: int) -> str:
    if exc.kind and exc.name:
        return f"{exc.kind} {exc.namespace or 'default'}/{exc.name}"
    if exc.name:
        return f"object {exc.namespace or 'default'}/{exc.name} (document {number})"
    return f"document {number}"


def load_manifests(paths: Iterable[str]) -> tuple[list[LoadedObject], list[Finding]]:
    """Every valid object and every problem found in the files under `paths`."""
    files, findings = expand_paths(paths)
    objects: list[LoadedObject] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in files:
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            findings.append(Finding(name, "file", Problem("", f"cannot read: {exc}")))
            continue
        try:
            docs = list(_documents(path, text))
        except ObjectInvalid as exc:
            findings.extend(Finding(name, "file", p) for p in exc.problems)
            continue
        if not docs:
            findings.append(Finding(name, "file", Problem("", "no objects in file")))
        for number, doc in docs:
            try:
                obj = decode_object(doc)
            except ObjectInvalid as exc:
                findings.extend(Finding(name, _subject(exc, number), p) for p in exc.problems)
                continue
            ident = (obj.kind, obj.namespace, obj.name)
            if ident in seen:
                findings.append(Finding(
                    name, f"{obj.kind} {obj.namespace}/{obj.name}",
                    Problem("metadata.name", f"duplicate of the object in {seen[ident]}"),
                ))
                continue
            seen[ident] = name
            objects.append(LoadedObject(name, obj))
    return objects, findings
