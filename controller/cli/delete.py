"""`docket delete KIND NS/NAME`: removes the spec key, nothing else.

The controller sees the deletion, kills the object's tasks (a CronJob: deletes the Jobs it
owns) and then removes its status and executions; doing that here would race with it and leave
tasks running unobserved.
"""

from __future__ import annotations

import argparse

from controller.cli._output import (
    KIND_CHOICES,
    add_namespace_argument,
    add_store_arguments,
    guarded,
)

NAME = "delete"
HELP = "Delete an object (the controller then kills its tasks and cleans up)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND", help=f"One of: {', '.join(KIND_CHOICES)}.")
    parser.add_argument("refs", nargs="+", metavar="NS/NAME",
                        help="The objects: NS/NAME, or NAME with -n.")
    add_namespace_argument(parser)
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from controller.cli._output import CommandError, open_store, resolve_kind, resolve_name

    kind = resolve_kind(args.kind)
    refs = [resolve_name(ref, args.namespace) for ref in args.refs]
    missing = []
    with open_store(args) as store:
        for namespace, name in refs:
            key = store.keys.object(kind.plural, namespace, name)
            if store.delete_object(kind.plural, namespace, name):
                then = ("deletes the Jobs it owns, then removes its status"
                        if kind.plural == "cronjobs"
                        else "kills its tasks, then removes its status and executions")
                print(f"{kind.singular} {namespace}/{name} deleted ({key}); the controller "
                      f"{then}")
            else:
                missing.append(f"{namespace}/{name}")
    if missing:
        raise CommandError(f"{kind.singular} {', '.join(missing)} not found")
    return 0
