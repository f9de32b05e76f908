"""Reading manifest files (YAML with `---` documents, or JSON) and validating every object in
them offline, with one `Finding` per problem. Shared by `docket validate` and `docket apply`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.api.codec import ObjectInvalid, Problem, decode_object, load_json, load_yaml_all
from controller.api.kinds import AnyObject

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Finding:
    """One problem in one document of one file, printable as one line."""

    file: str
    subject: str  # "Job default/send-email", or "document 2" when the object is unknown
    problem: Problem

    def __str__(self) -> str:
        # One line per problem, whatever a message or a file name holds.
        text = f"{self.file}: {self.subject}: {self.problem}"
        return text.replace("\r", "\\r").replace("\n", "\\n")


@dataclass(frozen=True)
class LoadedObject:
    file: str
    obj: AnyObject


def expand_paths(paths: Iterable[str]) -> tuple[list[Path], list[Finding]]:
    """Manifest files named or found (recursively, by suffix) under the given paths; a path
    that does not exist, or a directory holding no manifest, is a finding."""
    files: list[Path] = []
    findings: list[Finding] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found: list[Path] = []
            # os.walk reports unreadable directories through onerror instead of raising.
            for root, dirs, names in os.walk(p, onerror=_unreadable_into(findings)):
                dirs.sort()
                found.extend(Path(root) / n for n in sorted(names)
                             if Path(n).suffix in MANIFEST_SUFFIXES)
            if not found:
                findings.append(Finding(raw, "file", Problem(
                    "", f"no manifest files ({', '.join(MANIFEST_SUFFIXES)}) in this directory")))
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            findings.append(Finding(raw, "file", Problem("", "no such file or directory")))
    return files, findings


def _unreadable_into(findings: list[Finding]) -> Callable[[OSError], None]:
    def report(exc: OSError) -> None:
        findings.append(Finding(str(exc.filename), "file",
                                Problem("", f"cannot read: {exc.strerror}")))
    return report


def _documents(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(document number from 1, parsed document); raises ObjectInvalid on a syntax error."""
    looks_like_json = text.lstrip()[:1] in ("{", "[")
    if path.suffix == ".json" or looks_like_json:
        try:
            value = load_json(text)
        except ObjectInvalid:
            if path.suffix == ".json":
                raise
            value = None  # flow-style YAML, read below
        else:
            docs = value if isinstance(value, list) else [value]
            yield from enumerate(docs, start=1)
            return
    for number, doc in enumerate(load_yaml_all(text), start=1):
        if doc is not None:  # an empty document between two `---` is not an object
            yield number, doc


def _read(path: Path) -> str:
    if not path.is_file():
        raise OSError("not a regular file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OSError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


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
            text = _read(path)
        except OSError as exc:
            findings.append(Finding(name, "file", Problem("", f"cannot read: "
                                                              f"{exc.strerror or exc}")))
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
            except Exception as exc:  # a bug in validation: still one line, not a traceback
                findings.append(Finding(name, f"document {number}",
                                        Problem("", f"internal error: {exc!r}")))
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
