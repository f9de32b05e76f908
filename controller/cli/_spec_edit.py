"""What `docket scale` and `docket rollout restart` share: a compare-and-swap edit of one field
of a stored object's spec, at a key path (`spec.instances`, `spec.template.labels.<key>`),
the way `docket suspend` edits `spec.suspend` (`_suspend.py` says why, and owns the JSON
layout and the timestamp rules reused here).

The stored document is the user's (or GitOps'), so only that field changes: the document is
decoded to a plain mapping (not to the model, which would add every default), the field is set
(creating the mappings above it if absent), and the result is encoded in the format it was
stored in. JSON stays JSON in its layout, keys in their order. YAML stays YAML: when every
mapping on the path is in block style, only the field's line is replaced (or lines are added
under the deepest mapping present), so comments and layout stay as the user wrote them;
otherwise the document is written out again in block style, then as JSON — whichever reads
back as exactly the edited mapping first. The result must decode as the kind before anything
is written, and the write holds only if the key's mod_revision is still the one read: a
concurrent change is reported, naming the object, and never overwritten.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.cli._output import CommandError

if TYPE_CHECKING:
    from controller.api import AnyObject, Kind
    from controller.store import Store


@dataclass(frozen=True)
class Loaded:
    """An object as stored: its text, revision, decoded model and plain document."""

    what: str
    namespace: str
    name: str
    key: str
    raw: bytes
    mod_revision: int
    obj: AnyObject
    doc: dict[str, Any]


@dataclass(frozen=True)
class Written:
    fmt: str
    """json or yaml: the stored format, kept."""
    old_revision: int
    revision: int
    obj: AnyObject
    """The object as written, decoded."""


def load(store: Store, kind: Kind, namespace: str, name: str) -> Loaded:
    """The object to edit; CommandError naming it if it is missing or invalid."""
    from controller.api import InvalidObject, ObjectInvalid, decode_object, parse_document

    what = f"{kind.singular} {namespace}/{name}"
    key = store.keys.object(kind.plural, namespace, name)
    found = store.get_raw(key)
    if found is None:
        raise CommandError(f"{what} not found (no key {key})")
    raw, mod_revision, _ = found
    try:
        obj = decode_object(raw, plural=kind.plural, namespace=namespace, name=name)
        doc = parse_document(raw)
    except ObjectInvalid as exc:
        invalid = InvalidObject(kind.name, namespace, name, exc.problems, raw)
        raise CommandError(f"{what} is invalid, so it is not acted on; fix it first: "
                           f"{invalid.message}") from None
    assert isinstance(doc, dict) and isinstance(doc.get("spec"), dict)  # it decoded
    return Loaded(what, namespace, name, key, raw, mod_revision, obj, doc)


def write(store: Store, kind: Kind, loaded: Loaded, path: tuple[str, ...], value: Any, *,
          verb: str) -> Written:
    """Set `path` (from the document's top, e.g. ("spec", "instances")) to `value` and write
    the document back if nobody changed it since `loaded` was read. `verb` says what is being
    done in the error about a concurrent change ("scaled")."""
    from controller.api import ObjectInvalid, decode_object
    from controller.store import Conflict

    doc = _copy(loaded.doc)  # the loaded document stays as read
    _set(doc, path, value)
    encoded, fmt = encode_edit(loaded.raw, doc, path, value)
    try:
        obj = decode_object(encoded, plural=kind.plural, namespace=loaded.namespace,
                            name=loaded.name)
    except ObjectInvalid as exc:
        raise CommandError(f"{loaded.what}: {'.'.join(path)} cannot be {value!r}: "
                           f"{exc}") from None
    try:
        revision = store.put_raw(loaded.key, encoded, expected_mod_revision=loaded.mod_revision)
    except Conflict:
        raise CommandError(
            f"{loaded.what} changed while it was being {verb} (its revision is no longer "
            f"{loaded.mod_revision}); nothing was written, the change was kept. Look at it and "
            "run the command again") from None
    return Written(fmt, loaded.mod_revision, revision, obj)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def encode_edit(original: bytes, doc: dict[str, Any], path: tuple[str, ...],
                value: Any) -> tuple[bytes, str]:
    """`doc` (the stored document with `path` set to `value`) encoded in the format of
    `original`, and that format ("json" or "yaml"); module docstring."""
    import yaml

    from controller.api import ObjectInvalid, parse_document
    from controller.cli._suspend import _indent, _plain

    text = original.decode("utf-8")
    trailing = "\n" if text.endswith("\n") else ""
    try:
        json.loads(text)
        is_json = True
    except ValueError:
        is_json = False
    if not is_json:
        candidates = [_edit_yaml_path(text, path, value),
                      yaml.safe_dump(doc, sort_keys=False, default_flow_style=False,
                                     allow_unicode=True)]
        for candidate in candidates:
            try:
                if candidate is not None and parse_document(candidate) == doc:
                    return candidate.encode(), "yaml"
            except ObjectInvalid:
                pass
    indent = _indent(text) if is_json else None
    dumped = json.dumps(doc, indent=indent, ensure_ascii=False, default=_plain)
    return (dumped + trailing).encode(), "json"


_TRAILING_COMMENT = re.compile(r"^[^'\"#]*?(\s+#.*)$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")


def _yaml_key(key: str) -> str:
    """`key` as a YAML mapping key: plain when it can be, else double-quoted."""
    return key if _PLAIN_KEY.match(key) and key.lower() not in (
        "true", "false", "yes", "no", "on", "off", "null", "y", "n") else json.dumps(key)


def _yaml_scalar(value: Any) -> str:
    """A scalar as YAML reads it back: numbers and booleans plain, strings double-quoted
    (a time would otherwise read back as a timestamp, `no` as false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _content(line: str) -> tuple[int, str] | None:
    """(indentation, text) of a line holding YAML content; None for a blank or comment line."""
    body = line.rstrip("\r\n")
    stripped = body.lstrip(" ")
    if not stripped or stripped.startswith("#"):
        return None
    return len(body) - len(stripped), stripped


def _edit_yaml_path(text: str, path: tuple[str, ...], value: Any) -> str | None:
    """`text` with `path` set to `value` by editing lines of block-style mappings, or None if
    the document is not laid out so (the caller checks that the result reads back)."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return None
    newline = "\r\n" if lines[0].endswith("\r\n") else "\n"
    # The mapping searched: lines[start:end], below a key at parent_indent (-1: the top).
    start, end, parent_indent = 0, len(lines), -1
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        keys = {part, f'"{part}"', f"'{part}'"}
        found = None
        child_indent = None
        for i in range(start, end):
            content = _content(lines[i])
            if content is None:
                continue
            width, body = content
            if child_indent is None:
                child_indent = width
            if width != child_indent:
                continue
            name, colon, rest = body.partition(":")
            if colon and name.rstrip() in keys and (not rest or rest[0] in " \t"):
                found = i, rest.strip()
                break
        if child_indent is not None and child_indent <= parent_indent:
            return None
        indent = child_indent if child_indent is not None else max(parent_indent + 2, 0)
        if found is None:
            # Absent: add it (and the mappings below it) as the first key of this mapping.
            step = max(indent - parent_indent, 2) if parent_indent >= 0 else 2
            added = []
            for offset, missing in enumerate(path[depth:]):
                pad = " " * (indent + offset * step)
                if depth + offset == len(path) - 1:
                    added.append(f"{pad}{_yaml_key(missing)}: {_yaml_scalar(value)}{newline}")
                else:
                    added.append(f"{pad}{_yaml_key(missing)}:{newline}")
            lines[start:start] = added
            return "".join(lines)
        i, rest = found
        if last:
            # A comment after a plain value stays (`instances: 3  # three`).
            kept = _TRAILING_COMMENT.match(rest)
            comment = kept.group(1) if kept else ""
            lines[i] = (f"{' ' * indent}{_yaml_key(part)}: {_yaml_scalar(value)}{comment}"
                        f"{newline}")
            return "".join(lines)
        if rest and not rest.startswith("#"):
            return None  # a flow mapping or a scalar: not edited line by line
        # Its body: the lines after it, up to the next content at its indentation or less.
        body_end = next((j for j in range(i + 1, end)
                         if (c := _content(lines[j])) is not None and c[0] <= indent), end)
        parent_indent = indent
        start, end = i + 1, body_end
    return None
