"""What `docket suspend` and `docket resume` share: set `spec.suspend` of a Job, CronJob or
Queue by a compare-and-swap edit of the stored document.

The stored spec is the user's (or GitOps') document, so the edit changes that one field and
nothing else: the document is decoded to a plain mapping (not to the model, which would add
every default), `spec.suspend` is set, and it is encoded again in the format it was stored in.
JSON stays JSON (on one line, or indented as it was), keys in their order. YAML stays YAML:
when `spec` is a block mapping, only the `suspend:` line is replaced (or added as the first
key of `spec`), so comments, quoting and layout stay as the user wrote them; otherwise the
mapping is written out again in block style, keys in their order (comments are then lost: no
YAML library round-trips them). Every candidate text must read back as exactly the edited
mapping, or the next is tried; a YAML document that PyYAML cannot write back faithfully is
written as JSON, which Docket's keys may hold as well. The result is checked to decode as the
kind before anything is written.

The write holds only if the key's mod_revision is still the one read: a concurrent change
(an edit, a GitOps sync, a delete) is reported, naming the object, and never overwritten.
What suspension means is the controller's: a Job kills its running tasks and launches none, a
CronJob creates no Jobs (its running Jobs continue), a Queue stops consuming. A Service has no
suspended state: scale it to zero instances instead.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from controller.cli._output import (
    CommandError,
    add_namespace_argument,
    add_store_arguments,
)

if TYPE_CHECKING:
    from controller.api import Kind
    from controller.store import Store

SUSPENDABLE = ("jobs", "cronjobs", "queues")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND",
                        help="job, cronjob or queue (a service cannot be suspended).")
    parser.add_argument("refs", nargs="+", metavar="NS/NAME",
                        help="The objects: NS/NAME, or NAME with -n.")
    add_namespace_argument(parser)
    add_store_arguments(parser)


def run(args: argparse.Namespace, suspend: bool) -> int:
    from controller.cli._output import open_store, resolve_kind, resolve_name

    kind = resolve_kind(args.kind)
    if kind.plural not in SUSPENDABLE:
        raise CommandError(f"a {kind.singular} cannot be suspended: only jobs, cronjobs and "
                           "queues can" + (" (scale a service to 0 with spec.instances "
                                           "instead)" if kind.plural == "services" else ""))
    refs = [resolve_name(ref, args.namespace) for ref in args.refs]
    with open_store(args) as store:
        for namespace, name in refs:
            print(set_suspend(store, kind, namespace, name, suspend))
    return 0


def set_suspend(store: Store, kind: Kind, namespace: str, name: str, suspend: bool) -> str:
    """Set `spec.suspend` of one object to `suspend` (compare-and-swap); what happened, as a
    line for the user. Raises CommandError naming the object if it is missing, invalid or
    changed concurrently."""
    from controller.api import InvalidObject, ObjectInvalid, decode_object, parse_document
    from controller.store import Conflict

    what = f"{kind.singular} {namespace}/{name}"
    verb = "suspended" if suspend else "resumed"
    key = store.keys.object(kind.plural, namespace, name)
    found = store.get_raw(key)
    if found is None:
        raise CommandError(f"{what} not found (no key {key})")
    raw, mod_revision, _ = found
    try:
        current = decode_object(raw, plural=kind.plural, namespace=namespace, name=name)
        doc = parse_document(raw)
    except ObjectInvalid as exc:
        invalid = InvalidObject(kind.name, namespace, name, exc.problems, raw)
        raise CommandError(f"{what} is invalid, so it is not acted on; fix it first: "
                           f"{invalid.message}") from None
    assert isinstance(doc, dict) and isinstance(doc.get("spec"), dict)  # it decoded
    if bool(getattr(current.spec, "suspend", False)) == suspend:
        return f"{what} already {verb} (spec.suspend is {str(suspend).lower()}); nothing written"
    doc["spec"]["suspend"] = suspend
    value, fmt = encode_like(raw, doc)
    try:
        decode_object(value, plural=kind.plural, namespace=namespace, name=name)
    except ObjectInvalid as exc:  # cannot happen for a document that decoded before
        raise CommandError(f"{what}: the edited document does not decode: {exc}") from None
    try:
        revision = store.put_raw(key, value, expected_mod_revision=mod_revision)
    except Conflict:
        raise CommandError(
            f"{what} changed while it was being {verb} (its revision is no longer "
            f"{mod_revision}); nothing was written, the change was kept. Look at it and run "
            "the command again") from None
    return f"{what} {verb} (spec.suspend: {str(suspend).lower()}, {fmt} document, revision " \
           f"{mod_revision} -> {revision})"


def _plain(value: Any) -> Any:
    """For JSON: YAML's timestamps as RFC 3339 strings (how Docket's models read them)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode_like(original: bytes, doc: dict[str, Any]) -> tuple[bytes, str]:
    """`doc` encoded in the format of `original` ("json" or "yaml"), and that format. JSON
    keeps its layout (one line, or indented as the original); YAML is written block style with
    the keys in their order, or as JSON if it would not read back as the same data."""
    import yaml

    from controller.api import ObjectInvalid, parse_document

    text = original.decode("utf-8")
    trailing = "\n" if text.endswith("\n") else ""
    try:
        json.loads(text)
        is_json = True
    except ValueError:
        is_json = False
    if not is_json:
        suspend = bool(doc["spec"]["suspend"])
        candidates = [_edit_yaml_line(text, suspend),
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


_TOP_SPEC = re.compile(r"^spec:[ \t]*(#.*)?$")


def _edit_yaml_line(text: str, suspend: bool) -> str | None:
    """`text` with `spec.suspend` set by editing one line of a block-style `spec:` mapping,
    or None if the document is not laid out so (the caller checks the result reads back)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _TOP_SPEC.match(line.rstrip("\r\n"))),
                 None)
    if start is None:
        return None
    indent = None
    end = len(lines)
    for i in range(start + 1, len(lines)):
        body = lines[i].rstrip("\r\n")
        content = body.lstrip(" ")
        if not content or content.startswith("#"):
            continue
        width = len(body) - len(content)
        if width == 0:
            end = i
            break
        if indent is None:
            indent = width
    if indent is None:
        return None
    value = "true" if suspend else "false"
    newline = "\r\n" if lines[start].endswith("\r\n") else "\n"
    key = re.compile(" " * indent + r"suspend[ \t]*:")
    for i in range(start + 1, end):
        if key.match(lines[i]):
            lines[i] = f"{' ' * indent}suspend: {value}{newline}"
            return "".join(lines)
    lines.insert(start + 1, f"{' ' * indent}suspend: {value}{newline}")
    return "".join(lines)


def _indent(text: str) -> int | None:
    """The indentation of a JSON text's first indented line; None if it is one line."""
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            return len(line) - len(stripped)
    return None
