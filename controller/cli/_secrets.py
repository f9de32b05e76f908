"""Secrets in the CLI: `docket create secret NAME --from-literal KEY=VALUE --from-file
KEY=PATH`, `docket get secrets`, `docket get secret NAME -o yaml|json` and `docket describe
secret NS/NAME`, kubectl's shapes.

No command ever prints a value: a Secret is shown by its keys and their sizes in bytes, as
`kubectl describe secret` shows it, and `-o yaml|json` prints the document with every value
replaced by its size. The value of `--from-literal` is on the command line (as with kubectl;
`--from-file` keeps it out of shell history and process lists), and is never echoed, not even
in an error message.

A Secret is written with `data` (base64) only, and only if its key does not exist yet: an
existing Secret is never overwritten (delete it with etcdctl, or write a new one). etcd keeps
no creation time, so `docket create secret` records one in the annotation
`docket.dev/created-at`, which AGE counts from ('-' for a Secret written otherwise).
"""

from __future__ import annotations

import argparse
import base64
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.api import Secret
    from controller.store import Store

CREATED_AT = "docket.dev/created-at"
SECRET_WORDS = ("secret", "secrets")


def is_secret(word: str) -> bool:
    return word.lower() in SECRET_WORDS


def add_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE",
                        help="secret: a key and its value (repeatable).")
    parser.add_argument("--from-file", action="append", default=[], metavar="[KEY=]PATH",
                        help="secret: a key and the file holding its value (repeatable; "
                             "KEY defaults to the file's name).")


def create(args: argparse.Namespace) -> int:
    from controller.api import Secret, decode_secret, encode_model
    from controller.api.template import check_secret_key
    from controller.cli._output import CommandError, open_store, resolve_name
    from controller.store import Conflict, Expect, Put

    if args.source is not None:
        raise CommandError("--from is for jobs; a secret takes --from-literal or --from-file")
    namespace, name = resolve_name(args.name, args.namespace)
    values: dict[str, bytes] = {}
    for item in args.from_literal:
        key, sep, value = item.partition("=")
        if not sep:  # the text may be a value typed without its key: never echo it
            raise CommandError("--from-literal: give KEY=VALUE")
        _add(values, key, value.encode(), "--from-literal", check_secret_key)
    for item in args.from_file:
        key, sep, path = item.partition("=")
        if not sep:
            key, path = Path(item).name, item
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"--from-file {path}: cannot read it: "
                               f"{exc.strerror or type(exc).__name__}") from None
        _add(values, key, data, "--from-file", check_secret_key)
    if not values:
        raise CommandError("a secret needs at least one --from-literal or --from-file")
    secret = Secret.model_validate({
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {CREATED_AT: datetime.now(UTC).isoformat(
                         timespec="seconds").replace("+00:00", "Z")}},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in values.items()}})
    body = encode_model(secret)
    decode_secret(body, namespace=namespace, name=name)  # what the controller will read
    with open_store(args) as store:
        key = store.keys.secret(namespace, name)
        try:
            store.commit([Put(key, body)], [Expect(key, 0)])
        except Conflict:
            raise CommandError(f"secret {namespace}/{name} already exists ({key}); nothing "
                               "was written") from None
    print(f"secret {namespace}/{name} created (keys: {', '.join(sorted(values))})")
    return 0


def _add(values: dict[str, bytes], key: str, data: bytes, flag: str, check: Any) -> None:
    from controller.cli._output import CommandError

    try:
        check(key)
    except ValueError as exc:
        raise CommandError(f"{flag}: key {key!r} {exc}") from None
    if key in values:
        raise CommandError(f"{flag}: key {key!r} is given twice")
    values[key] = data


def _read(store: Store, namespace: str, name: str) -> tuple[Secret | None, str]:
    """The Secret at its key, or (None, why it is invalid); CommandError when absent."""
    from controller.api import ObjectInvalid, decode_secret
    from controller.cli._output import CommandError

    key = store.keys.secret(namespace, name)
    raw = store.get_raw(key)
    if raw is None:
        raise CommandError(f"secret {namespace}/{name} not found (no key {key})")
    try:
        return decode_secret(raw[0], namespace=namespace, name=name), ""
    except ObjectInvalid as exc:
        return None, str(exc)


def _list(store: Store, namespace: str | None) -> list[tuple[str, str, Secret | None, str]]:
    from controller.api import ObjectInvalid, decode_secret

    root = store.keys.secrets_root() if namespace is None else \
        store.keys.secrets_prefix(namespace)
    items, _ = store.list_raw(root)
    out: list[tuple[str, str, Secret | None, str]] = []
    for key, value, *_rest in items:
        split = store.keys.split_secret(key)
        if split is None:
            continue
        ns, name = split
        try:
            out.append((ns, name, decode_secret(value, namespace=ns, name=name), ""))
        except ObjectInvalid as exc:
            out.append((ns, name, None, str(exc)))
    return sorted(out, key=lambda t: (t[0], t[1]))


def _sizes(secret: Secret) -> dict[str, int]:
    return {k: len(v) for k, v in sorted(secret.values().items())}


def _age(secret: Secret | None) -> str:
    from controller.cli._output import age

    stamp = secret.metadata.annotations.get(CREATED_AT) if secret is not None else None
    try:
        return age(datetime.fromisoformat(stamp.replace("Z", "+00:00"))) if stamp else "-"
    except ValueError:
        return "-"


def document(namespace: str, name: str, secret: Secret | None, problem: str
             ) -> dict[str, Any]:
    """What `-o yaml|json` shows: the metadata, and each key's size instead of its value."""
    if secret is None:
        return {"apiVersion": "docket.dev/v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace}, "invalid": problem}
    meta = secret.metadata.model_dump(by_alias=True, exclude_defaults=True)
    out: dict[str, Any] = {"apiVersion": "docket.dev/v1", "kind": "Secret", "metadata": meta}
    if secret.type is not None:
        out["type"] = secret.type
    out["data"] = {k: f"<{n} bytes>" for k, n in _sizes(secret).items()}
    return out


def get(args: argparse.Namespace) -> int:
    from controller.cli._output import CommandError, open_store, print_documents, resolve_name
    from controller.cli._output import table as render_table

    if args.all_namespaces and args.namespace:
        raise CommandError("give either -n NAMESPACE or -A, not both")
    if args.watch or args.selector is not None:
        raise CommandError("secrets: -w and -l are not supported")
    namespace = None if args.all_namespaces else (args.namespace or "default")
    with open_store(args) as store:
        if args.names:
            rows = []
            for ref in args.names:
                ns, name = resolve_name(ref, args.namespace)
                secret, problem = _read(store, ns, name)
                rows.append((ns, name, secret, problem))
        else:
            rows = _list(store, namespace)
    if args.output in ("json", "yaml"):
        docs = [document(*row) for row in rows]
        print_documents(docs, args.output, as_list=len(args.names) != 1 or not docs)
        return 0
    if not rows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No secrets found in {where}.",
              file=sys.stderr if args.output == "name" else sys.stdout)
        return 0
    if args.output == "name":
        for ns, name, *_ in rows:
            print(f"secret/{ns}/{name}")
        return 0
    show_ns = namespace is None or len({r[0] for r in rows}) > 1
    head = ["NAME", "KEYS", "AGE"]
    body = [[name, ",".join(_sizes(s)) if s is not None else "<invalid>", _age(s)]
            for _ns, name, s, _p in rows]
    if show_ns:
        head = ["NAMESPACE", *head]
        body = [[r[0], *line] for r, line in zip(rows, body, strict=True)]
    print(render_table(head, body))
    return 0


def describe(args: argparse.Namespace) -> int:
    from controller.cli._output import open_store, resolve_name

    namespace, name = resolve_name(args.ref, args.namespace)
    with open_store(args) as store:
        secret, problem = _read(store, namespace, name)
        key = store.keys.secret(namespace, name)
    lines = [f"Name:         {name}", f"Namespace:    {namespace}", f"Key:          {key}"]
    if secret is None:
        lines.append(f"Invalid:      {problem}")
    else:
        meta = secret.metadata
        lines.append("Labels:       " + (", ".join(f"{k}={v}" for k, v in sorted(
            meta.labels.items())) or "<none>"))
        lines.append("Annotations:  " + (", ".join(f"{k}={v}" for k, v in sorted(
            meta.annotations.items())) or "<none>"))
        lines.append(f"Type:         {secret.type or '<none>'}")
        lines += ["", "Data", "===="]
        sizes = _sizes(secret)
        width = max((len(k) for k in sizes), default=0) + 1
        lines += [f"{k + ':':<{width}}  {n} bytes" for k, n in sizes.items()]
    print("\n".join(lines))
    return 0
