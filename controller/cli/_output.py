"""What the user-facing object commands (`get`, `describe`, `delete`, `apply`, `diff`) share:
the `--etcd`/`--prefix` flags, kind names and aliases, `NS/NAME` parsing, label selectors
(`-l`), the `kind/ns/name` form of `-o name`, reading an object with its status, and
plain-text tables, ages and times.

Every failure a user can cause or meet (etcd unreachable, unknown kind, bad name, missing
object) becomes `CommandError`, which `guarded` turns into one line on stderr and exit 1: a
CLI user should never see a traceback for their own mistake or a down server.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.api import InvalidObject, Kind, StatusBase
    from controller.store import Store, StoredObject

DEFAULT_ETCD = "127.0.0.1:2379"
# How long a command keeps retrying an unreachable etcd before it says so: a person is
# waiting, so this is much shorter than the controller's budget.
RETRY_SECONDS = 3.0

_ALIASES = {
    "jobs": ("job", "jobs"),
    "cronjobs": ("cronjob", "cronjobs", "cj"),
    "queues": ("queue", "queues", "q"),
    "services": ("service", "services", "svc"),
}
KIND_CHOICES = tuple(alias for names in _ALIASES.values() for alias in names)


class CommandError(Exception):
    """A problem to report as one line, with exit status 1."""


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--etcd", default=None, metavar="ENDPOINT",
        help=f"etcd endpoint host:port or https://host:port "
             f"(default: $DOCKET_ETCD_ENDPOINTS or {DEFAULT_ETCD}).")
    parser.add_argument("--prefix", default=None,
                        help="Key prefix (default: $DOCKET_KEY_PREFIX or /docket).")
    tls = parser.add_argument_group("etcd TLS and authentication (as etcdctl)")
    for flag, env, text in _SECURITY_FLAGS:
        tls.add_argument(flag, default=None, dest="etcd_" + flag[2:].replace("-", "_"),
                         metavar="FILE" if flag != "--user" else "NAME[:PASSWORD]",
                         help=f"{text} (default: ${env}).")


_SECURITY_FLAGS = (
    ("--cacert", "DOCKET_ETCD_CACERT", "CA certificate verifying etcd's server (implies TLS)"),
    ("--cert", "DOCKET_ETCD_CERT", "client certificate for etcd"),
    ("--key", "DOCKET_ETCD_KEY", "client key for etcd"),
    ("--user", "DOCKET_ETCD_USER", "etcd user, name:password or name with --password-file"),
    ("--password-file", "DOCKET_ETCD_PASSWORD_FILE", "file holding the etcd user's password"),
)


def etcd_security_from_args(args: argparse.Namespace) -> Any:
    """The EtcdSecurity of the flags, else of the DOCKET_ETCD_* variables."""
    from controller.config import ConfigError, etcd_security

    values = []
    for flag, env, _ in _SECURITY_FLAGS:
        dest = "etcd_" + flag[2:].replace("-", "_")
        values.append(getattr(args, dest, None) or os.environ.get(env) or None)
    try:
        return etcd_security(*values)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def add_namespace_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default=None,
                        help="Namespace (default: default, or the one in NS/NAME).")


def guarded(command: str, body: Callable[[], int]) -> int:
    """Run `body`, turning every expected failure into one line on stderr and exit 1."""
    from controller.store import StoreError

    try:
        return body()
    except (CommandError, StoreError) as exc:
        print(f"docket {command}: {exc}", file=sys.stderr)
        return 1


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[Store]:
    from controller.store import Store

    endpoint = args.etcd or os.environ.get("DOCKET_ETCD_ENDPOINTS") or DEFAULT_ETCD
    prefix = args.prefix or os.environ.get("DOCKET_KEY_PREFIX") or "/docket"
    try:
        store = Store(endpoint, prefix=prefix, timeout=RETRY_SECONDS,
                      retry_seconds=RETRY_SECONDS, security=etcd_security_from_args(args))
    except ValueError as exc:  # a malformed endpoint or prefix
        raise CommandError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


def resolve_kind(word: str) -> Kind:
    """The kind named by `word`: singular, plural or short alias, any case."""
    from controller.api import kind_by_plural

    lowered = word.lower()
    for plural, names in _ALIASES.items():
        if lowered in names:
            return kind_by_plural(plural)
    raise CommandError(f"unknown kind {word!r}; use one of: {', '.join(KIND_CHOICES)}")


def resolve_name(ref: str, namespace: str | None) -> tuple[str, str]:
    """(namespace, name) from `NS/NAME` or `NAME` plus `-n NS`; both DNS-1123 labels."""
    from controller.api.base import check_dns1123_label

    if "/" in ref:
        ns, _, name = ref.partition("/")
        if namespace is not None and namespace != ns:
            raise CommandError(f"{ref!r} names namespace {ns!r} but -n says {namespace!r}")
    else:
        ns, name = namespace or "default", ref
    for what, value in (("namespace", ns), ("name", name)):
        try:
            check_dns1123_label(value)
        except ValueError as exc:
            raise CommandError(f"{what} {value!r} in {ref!r}: {exc}") from None
    return ns, name


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key=value` (also `key==value`), `key!=value` (true
    when the label is absent, as in kubectl), `key` (the label exists) or `!key` (it does
    not)."""

    key: str
    op: str  # "=", "!=", "exists", "!exists"
    value: str = ""

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "=":
            return labels.get(self.key) == self.value
        if self.op == "!=":
            return labels.get(self.key) != self.value
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


def parse_selector(text: str) -> list[Requirement]:
    """`-l key=value,key!=value,key,!key`: every term must hold. Set-based terms
    (`key in (a,b)`) are not supported and are an error rather than a silent mismatch."""
    import re

    terms = [t.strip() for t in text.split(",")]
    if not text.strip() or not all(terms):
        raise CommandError(f"label selector {text!r}: empty term")
    key_re = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")
    out = []
    for term in terms:
        if "!=" in term:
            key, _, value = term.partition("!=")
            req = Requirement(key.strip(), "!=", value.strip())
        elif "=" in term:
            key, _, value = term.partition("=")
            req = Requirement(key.strip(), "=", value.strip().removeprefix("="))
        elif term.startswith("!"):
            req = Requirement(term[1:].strip(), "!exists")
        else:
            req = Requirement(term, "exists")
        if not key_re.match(req.key) or any(c in req.value for c in " ()!=,"):
            raise CommandError(f"label selector {text!r}: cannot read {term!r} (use "
                               "key=value, key!=value, key or !key, joined by commas)")
        out.append(req)
    return out


def selected(obj: object, selector: Sequence[Requirement]) -> bool:
    """Whether a stored object's metadata.labels satisfy every requirement. An invalid
    object has no labels Docket can trust, so no non-empty selector selects it."""
    from controller.api import InvalidObject

    if not selector:
        return True
    if isinstance(obj, InvalidObject):
        return False
    labels: dict[str, str] = getattr(getattr(obj, "metadata", None), "labels", {}) or {}
    return all(r.matches(labels) for r in selector)


def name_line(kind: Kind, namespace: str, name: str) -> str:
    """An object as `-o name` prints it: `job/default/hello`. Unlike kubectl's
    `job.docket.dev/hello`, the namespace is part of it, since Docket's commands take
    NS/NAME; `docket describe job default/hello` names the same object."""
    return f"{kind.singular}/{namespace}/{name}"


@dataclass(frozen=True)
class Entry:
    """One stored object and the status that belongs to it (None if none does yet)."""

    stored: StoredObject
    status: StatusBase | None

    @property
    def invalid(self) -> InvalidObject | None:
        from controller.api import InvalidObject

        obj = self.stored.object
        return obj if isinstance(obj, InvalidObject) else None

    @property
    def phase(self) -> str:
        # An invalid spec is Invalid even before the controller has said so.
        if self.invalid is not None:
            return "Invalid"
        return str(self.status.phase) if self.status is not None else "Pending"


def current_status(stored: StoredObject, status: StatusBase | None) -> StatusBase | None:
    """A status written for an earlier object under the same key (another uid) is not this
    object's status."""
    if status is None or (status.uid is not None and status.uid != stored.uid):
        return None
    return status


def get_entry(store: Store, kind: Kind, namespace: str, name: str) -> Entry:
    stored = store.get(kind.plural, namespace, name)
    if stored is None:
        raise CommandError(f"{kind.singular} {namespace}/{name} not found "
                           f"(no key {store.keys.object(kind.plural, namespace, name)})")
    found = store.get_status(kind.plural, namespace, name)
    return Entry(stored, current_status(stored, found.status if found else None))


def list_entries(store: Store, kind: Kind, namespace: str | None) -> list[Entry]:
    """Every object of `kind` (in `namespace`, or everywhere when None), sorted."""
    objects, _ = store.list(kind.plural)
    statuses = store.list_statuses(kind.plural)
    out = []
    for stored in objects:
        if namespace is not None and stored.namespace != namespace:
            continue
        found = statuses.get((stored.namespace, stored.name))
        out.append(Entry(stored, current_status(stored, found.status if found else None)))
    return sorted(out, key=lambda e: (e.stored.namespace, e.stored.name))


def entry_document(entry: Entry) -> dict[str, Any]:
    """The object as the user wrote it (camelCase) with its status, for -o json|yaml."""
    from controller.api import InvalidObject

    obj = entry.stored.object
    invalid = obj if isinstance(obj, InvalidObject) else None
    if invalid is not None:
        doc: dict[str, Any] = {
            "apiVersion": "docket.dev/v1", "kind": invalid.kind,
            "metadata": {"name": entry.stored.name, "namespace": entry.stored.namespace},
            "invalid": {"problems": [str(p) for p in invalid.problems],
                        "raw": invalid.raw.decode("utf-8", errors="replace")},
        }
    else:
        assert not isinstance(obj, InvalidObject)
        doc = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    if entry.status is not None:
        doc["status"] = entry.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    elif invalid is not None:
        doc["status"] = {"phase": "Invalid"}
    return doc


def print_documents(docs: Sequence[dict[str, Any]], fmt: str, *, as_list: bool) -> None:
    import json

    import yaml

    value: Any = {"apiVersion": "docket.dev/v1", "kind": "List", "items": list(docs)} \
        if as_list else docs[0]
    if fmt == "json":
        print(json.dumps(value, indent=2))
    else:
        print(yaml.safe_dump(value, sort_keys=False, default_flow_style=False), end="")


def column_widths(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return widths


def table_line(row: Sequence[str], widths: Sequence[int], indent: str = "") -> str:
    """One row padded to `widths` (a longer cell pushes the rest right)."""
    cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
    return indent + "   ".join(cells).rstrip()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns aligned by padding, like kubectl: three spaces between columns."""
    widths = column_widths(headers, rows)
    return "\n".join(table_line(row, widths, indent) for row in (headers, *rows))


def human_duration(seconds: float | None) -> str:
    """Short, kubectl-like: 45s, 3m12s, 5h3m, 2d4h; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 0:
        seconds = 0
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s" if m < 10 and s else f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m}m" if h < 10 and m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d{h}h" if d < 10 and h else f"{d}d"


def age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    return human_duration(((now or datetime.now(UTC)) - when).total_seconds())


def until(when: datetime | None, now: datetime | None = None) -> str:
    """When a future instant comes, relative as kubectl users read times: 'in 42s'; an
    instant already past is '42s overdue' (the controller has not acted on it yet)."""
    if when is None:
        return "-"
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds >= 0:
        return f"in {human_duration(seconds)}"
    return f"{human_duration(-seconds)} overdue"


def timestamp(when: datetime | None) -> str:
    """UTC, to the second: the same form in every column and every line of describe."""
    if when is None:
        return "-"
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()
