"""`docket delete KIND NS/NAME... | -f FILE|DIR [--wait [--timeout 60s]]`: removes the spec
keys, nothing else.

The controller sees the deletion, kills the object's tasks (a CronJob: deletes the Jobs it
owns) and then removes its status and executions; doing that here would race with it and leave
tasks running unobserved.

`-f` deletes the objects that manifests name (kind, namespace and name; the rest of each
document is not looked at, but every document must validate, as for `apply`, or nothing is
deleted). `--wait` then returns only when the controller has cleaned up: each object's status
key and execution records are gone (read every `--interval`, as `rollout status` and `wait`
do). Exit 2 when `--timeout` passes first: the controller may be down, or still killing tasks;
it goes on once it runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from controller.cli._output import (
    KIND_CHOICES,
    add_namespace_argument,
    add_store_arguments,
    guarded,
)
from controller.cli.rollout import parse_duration

if TYPE_CHECKING:
    from controller.api import Kind
    from controller.store import Store

NAME = "delete"
HELP = "Delete an object (the controller then kills its tasks and cleans up)."
EXIT_CODES = ("Exit status: 0 when every object is deleted (with --wait: and cleaned up by the "
              "controller); 1 when an object is not found, a manifest is invalid or etcd "
              "cannot be reached; 2 when --wait's timeout passes first (or on a usage error).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_CODES
    parser.add_argument("kind", nargs="?", metavar="KIND",
                        help=f"One of: {', '.join(KIND_CHOICES)} (not with -f).")
    parser.add_argument("refs", nargs="*", metavar="NS/NAME",
                        help="The objects: NS/NAME, or NAME with -n.")
    parser.add_argument("-f", "--filename", action="append", metavar="FILE|DIR",
                        help="Delete the objects a manifest file or a directory of them "
                             "names; repeatable.")
    parser.add_argument("--wait", action="store_true",
                        help="Return only when the controller has cleaned up each object "
                             "(its status and executions are gone).")
    parser.add_argument("--timeout", type=parse_duration, default="60s", metavar="DURATION",
                        help="With --wait: give up (exit 2) after this long; 0 waits as long "
                             "as it takes.")
    parser.add_argument("--interval", type=parse_duration, default="0.2s", metavar="DURATION",
                        help="With --wait: time between two checks (at least 0.05s).")
    add_namespace_argument(parser)
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def _targets(args: argparse.Namespace) -> list[tuple[Kind, str, str]]:
    from controller.api import kind_for_model
    from controller.api.manifests import load_manifests
    from controller.cli._output import CommandError, resolve_kind, resolve_name

    if args.filename:
        if args.kind is not None or args.refs:
            raise CommandError("name the objects either as KIND NS/NAME... or with -f, "
                               "not both")
        objects, findings = load_manifests(args.filename)
        if findings:
            for finding in findings:
                print(finding)
            raise CommandError(f"{len(findings)} problem(s) in the manifests; nothing deleted")
        return [(kind_for_model(o.obj), o.obj.namespace, o.obj.name) for o in objects]
    if args.kind is None or not args.refs:
        raise CommandError("name the objects: KIND NS/NAME... (e.g. job default/hello), "
                           "or -f FILE")
    kind = resolve_kind(args.kind)
    return [(kind, *resolve_name(ref, args.namespace)) for ref in args.refs]


def _run(args: argparse.Namespace) -> int:
    from controller.cli._output import CommandError, open_store

    targets = _targets(args)
    missing = []
    deleted = []
    with open_store(args) as store:
        for kind, namespace, name in targets:
            key = store.keys.object(kind.plural, namespace, name)
            if store.delete_object(kind.plural, namespace, name):
                then = ("deletes the Jobs it owns, then removes its status"
                        if kind.plural == "cronjobs"
                        else "kills its tasks, then removes its status and executions")
                print(f"{kind.singular} {namespace}/{name} deleted ({key}); the controller "
                      f"{then}", flush=True)
                deleted.append((kind, namespace, name))
            else:
                missing.append(f"{kind.singular} {namespace}/{name}")
        if args.wait and deleted:
            code = _wait_cleaned(store, deleted, args.timeout, max(0.05, args.interval))
            if code:
                return code
    if missing:
        raise CommandError(f"{', '.join(missing)} not found")
    return 0


def _leftovers(store: Store, kind: Kind, namespace: str, name: str) -> list[str]:
    """What the controller has still to remove of a deleted object (empty: cleaned up)."""
    left = []
    if store.get_raw(store.keys.status(kind.plural, namespace, name)) is not None:
        left.append("status")
    executions, _ = store.list_raw(store.keys.executions_prefix(kind.plural, namespace, name))
    if executions:
        left.append(f"{len(executions)} execution(s)")
    return left


def _wait_cleaned(store: Store, deleted: list[tuple[Kind, str, str]], timeout: float,
                  interval: float) -> int:
    """0 once every deleted object's status and executions are gone; 2 on timeout."""
    from controller.cli._output import human_duration

    deadline = None if timeout == 0 else time.monotonic() + timeout
    pending = list(deleted)
    while True:
        still = []
        for kind, namespace, name in pending:
            left = _leftovers(store, kind, namespace, name)
            if left:
                still.append((kind, namespace, name, left))
            else:
                print(f"{kind.singular} {namespace}/{name} cleaned up", flush=True)
        if not still:
            return 0
        pending = [(kind, namespace, name) for kind, namespace, name, _ in still]
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            what = "; ".join(f"{kind.singular} {namespace}/{name} still has "
                             f"{' and '.join(left)}" for kind, namespace, name, left in still)
            print(f"docket {NAME}: timed out after {human_duration(timeout)} waiting for the "
                  f"controller to clean up: {what} (is the controller running?)",
                  file=sys.stderr, flush=True)
            return 2
        time.sleep(interval if remaining is None else min(interval, remaining))
