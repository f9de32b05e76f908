"""What `docket apply` and `docket diff` share: comparing manifests with etcd, planning the
writes (and, with `--prune`, the deletes) of an apply set, showing them as unified diffs and
carrying them out as compare-and-swap writes.

An apply set is the set of objects one `docket apply` (one set of files) manages, like
kubectl's applysets: every object apply writes carries the annotation
`docket.dev/apply-set: <set name>`. The set name is `--apply-set NAME`, or else the paths given
to `-f`, normalised (`./deploy/` and `deploy` are both `deploy`) and joined by commas, so a
pipeline running `docket apply -f deploy --prune` from the repository root always names the
same set. `--prune` deletes the objects (of every kind, in every namespace) whose annotation
is exactly that name and which the files no longer hold; an object without the annotation, or
with another set's, is never deleted. An object in the files that belonged to no set, or to
another one, is written with this set's name and so moves into it (the line says so).

Comparison is of decoded objects (the stored document and the file's, both through the
models), so JSON against YAML, key order, comments or spelled-out defaults are no difference;
the apply-set annotation is left out of the comparison on both sides (files do not carry it,
etcd does), and a change of set membership alone is reported as one note, not as diff noise.
`docket diff` exits 1 exactly when `docket apply` (with the same flags) would write something.

Every write is compare-and-swap on what the plan read: a create expects the key absent, an
update or a prune expects the mod_revision that was read. A change made by anyone between the
read and the write makes that write fail with an error naming the object; it is never
overwritten. Each object is its own transaction (etcd caps the operations of one), so an
apply that meets a conflict may have written the objects before it; running it again
converges.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from controller.api import AnyObject, InvalidObject, Kind
    from controller.api.manifests import LoadedObject
    from controller.store import Store, StoredObject

ANNOTATION = "docket.dev/apply-set"

Action = Literal["create", "configure", "unchanged", "prune"]
PAST = {"create": "created", "configure": "configured", "unchanged": "unchanged",
        "prune": "pruned"}


def default_set_name(paths: Iterable[str]) -> str:
    """The set a plain `-f PATH...` names: its paths, normalised, sorted, joined by commas."""
    return ",".join(sorted({os.path.normpath(p) for p in paths}))


def check_set_name(name: str) -> str:
    from controller.cli._output import CommandError

    if not name.strip() or any(c in name for c in "\r\n\0"):
        raise CommandError(f"apply set name {name!r}: must be non-empty, on one line")
    return name


def set_of(obj: AnyObject | InvalidObject) -> str | None:
    """The apply set an object belongs to (its annotation), None if none. For a stored
    document that does not decode, the annotation is read from the raw document, so a set's
    object that became invalid can still be pruned (and no other can)."""
    from controller.api import InvalidObject, parse_document

    if not isinstance(obj, InvalidObject):
        return obj.metadata.annotations.get(ANNOTATION)
    try:
        doc: Any = parse_document(obj.raw)
        value = doc["metadata"]["annotations"][ANNOTATION]
    except Exception:
        return None
    return value if isinstance(value, str) else None


def with_set(obj: AnyObject, set_name: str) -> AnyObject:
    """A copy of `obj` annotated as a member of `set_name`."""
    annotations = {**obj.metadata.annotations, ANNOTATION: set_name}
    meta = obj.metadata.model_copy(update={"annotations": annotations})
    return obj.model_copy(update={"metadata": meta})


def _without_set(obj: AnyObject) -> AnyObject:
    annotations = {k: v for k, v in obj.metadata.annotations.items() if k != ANNOTATION}
    meta = obj.metadata.model_copy(update={"annotations": annotations})
    return obj.model_copy(update={"metadata": meta})


def same_content(stored: AnyObject | InvalidObject, wanted: AnyObject) -> bool:
    """Equal as decoded objects, the apply-set annotation aside."""
    from controller.api import InvalidObject

    if isinstance(stored, InvalidObject):
        return False
    return _without_set(stored) == _without_set(wanted)


def document_lines(obj: AnyObject | InvalidObject | None) -> list[str]:
    """The object as YAML lines for a diff: decoded (so storage format does not matter),
    fields at their defaults left out (a field set to its default equals one left out), the
    apply-set annotation left out; a document that does not decode as its raw text."""
    import yaml

    from controller.api import InvalidObject

    if obj is None:
        return []
    if isinstance(obj, InvalidObject):
        text = obj.raw.decode("utf-8", errors="replace")
        return [line + "\n" for line in text.splitlines()]
    lean = _without_set(obj).model_dump(mode="json", by_alias=True, exclude_none=True,
                                        exclude_defaults=True)
    doc: dict[str, Any] = {
        "apiVersion": obj.api_version, "kind": obj.kind,
        "metadata": {"name": obj.name, "namespace": obj.namespace,
                     **lean.pop("metadata", {})},
    }
    doc.update((k, v) for k, v in lean.items() if k not in ("apiVersion", "kind"))
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return text.splitlines(keepends=True)


@dataclass(frozen=True)
class Change:
    """One object's fate in an apply: what is wanted of it and what was read of it."""

    action: Action
    kind: Kind
    namespace: str
    name: str
    key: str
    expect: int  # the mod_revision read; 0: the key was absent
    wanted: AnyObject | None  # None: prune
    current: StoredObject | None
    source: str  # the file it comes from ("" for a prune)
    note: str = ""

    @property
    def what(self) -> str:
        return f"{self.kind.singular} {self.namespace}/{self.name}"

    def diff(self) -> str:
        """A unified diff from what etcd holds to what the apply writes ("" if the content
        is the same), followed by the membership note if any."""
        before = self.current.object if self.current is not None else None
        old_label = (f"etcd {self.key} (revision {self.expect})" if self.current is not None
                     else f"etcd {self.key} (absent)")
        new_label = self.source or f"(pruned: in apply set, not in the files) {self.key}"
        text = "".join(difflib.unified_diff(
            document_lines(before), document_lines(self.wanted), old_label, new_label))
        if text and not text.endswith("\n"):
            text += "\n"
        if self.note:
            text += f"# {self.what}: {self.note}\n"
        return text

    def line(self, dry_run: bool = False) -> str:
        note = f" ({self.note})" if self.note and self.action == "configure" else ""
        return f"{self.what} {PAST[self.action]}{note}{' (dry run)' if dry_run else ''}"


@dataclass(frozen=True)
class Plan:
    set_name: str
    changes: list[Change]

    @property
    def pending(self) -> list[Change]:
        """The changes that write something, writes before prunes."""
        return [c for c in self.changes if c.action != "unchanged"]


def plan(store: Store, loaded: Sequence[LoadedObject], set_name: str, *, prune: bool) -> Plan:
    """Read what etcd holds of the files' objects (and, with `prune`, of every kind) and decide
    each object's fate. Reads one list per kind, so the plan sees one moment of each kind."""
    from controller.api import KINDS, kind_for_model

    wanted_kinds = {kind_for_model(item.obj).plural for item in loaded}
    stored: dict[tuple[str, str, str], StoredObject] = {}
    for kind in KINDS:
        if prune or kind.plural in wanted_kinds:
            for s in store.list(kind.plural)[0]:
                stored[(kind.plural, s.namespace, s.name)] = s
    changes: list[Change] = []
    in_files: set[tuple[str, str, str]] = set()
    for item in loaded:
        kind = kind_for_model(item.obj)
        ident = (kind.plural, item.obj.namespace, item.obj.name)
        in_files.add(ident)
        wanted = with_set(item.obj, set_name)
        current = stored.get(ident)
        key = store.keys.object(*ident)
        if current is None:
            changes.append(Change("create", kind, ident[1], ident[2], key, 0, wanted, None,
                                  item.file))
            continue
        was = set_of(current.object)
        note = "" if was == set_name else (
            f"moves into apply set {set_name!r} from {was!r}" if was is not None
            else f"joins apply set {set_name!r}")
        action: Action = ("unchanged" if not note and same_content(current.object, wanted)
                          else "configure")
        changes.append(Change(action, kind, ident[1], ident[2], key, current.mod_revision,
                              wanted, current, item.file, note))
    if prune:
        from controller.api import kind_by_plural

        for ident, current in sorted(stored.items()):
            if ident in in_files or set_of(current.object) != set_name:
                continue
            changes.append(Change("prune", kind_by_plural(ident[0]), ident[1], ident[2],
                                  current.key, current.mod_revision, None, current, ""))
    return Plan(set_name, changes)


def write(store: Store, change: Change) -> None:
    """Carry out one change as a compare-and-swap on what the plan read. Raises
    CommandError naming the object when it changed meanwhile (nothing is written then)."""
    from controller.api import encode_object
    from controller.cli._output import CommandError
    from controller.store import Conflict, Delete, Expect, Put

    op: Put | Delete
    if change.wanted is None:
        op = Delete(change.key)
    else:
        op = Put(change.key, encode_object(change.wanted))
    try:
        store.commit([op], [Expect(change.key, change.expect)])
    except Conflict:
        if change.expect == 0:
            why = "was created by someone else since it was read"
        else:
            why = f"changed or was deleted in etcd since it was read at revision " \
                  f"{change.expect}"
        verb = "deleted" if change.action == "prune" else "overwritten"
        raise CommandError(f"{change.what} {why}; not {verb} (run again to apply the files "
                           f"to what it is now)") from None
