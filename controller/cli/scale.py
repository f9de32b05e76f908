"""`docket scale service NS/NAME --instances N`: set a Service's `spec.instances` by a
compare-and-swap edit of the stored document (`_spec_edit.py`: JSON stays JSON, YAML stays
YAML with its comments; a concurrent change is reported, never overwritten).

Only the number changes, so the version stays and no instance is replaced: the controller
adds instances at the lowest free indexes, or kills the extras (`spec.killSelection`).
`--instances 0` stops every instance and keeps the Service (deleting it kills them too, and
forgets it).
"""

from __future__ import annotations

import argparse

from controller.cli._output import add_namespace_argument, add_store_arguments, guarded

NAME = "scale"
HELP = "Set the number of instances of a service (spec.instances, compare-and-swap)."
EXIT_CODES = ("Exit status: 0 when spec.instances is N (written now, or already); 1 when the "
              "service is missing or invalid, changed while it was being scaled (nothing is "
              "written: run the command again), or etcd cannot be reached; 2 on a usage error.")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_CODES
    parser.add_argument("kind", metavar="KIND", help="service (the only kind with instances).")
    parser.add_argument("ref", metavar="NS/NAME", help="The service: NS/NAME, or NAME with -n.")
    parser.add_argument("--instances", type=_count, required=True, metavar="N",
                        help="Instances to keep running (0 stops them all and keeps the "
                             "service). Required.")
    add_namespace_argument(parser)
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from controller.api import Service
    from controller.cli._output import CommandError, open_store, resolve_kind, resolve_name
    from controller.cli._spec_edit import load, write

    kind = resolve_kind(args.kind)
    if kind.plural != "services":
        raise CommandError(f"a {kind.singular} cannot be scaled: only services have instances"
                           + (" (a job runs spec.parallelism tasks at once)"
                              if kind.plural == "jobs" else ""))
    namespace, name = resolve_name(args.ref, args.namespace)
    wanted: int = args.instances
    with open_store(args) as store:
        loaded = load(store, kind, namespace, name)
        assert isinstance(loaded.obj, Service)
        current = loaded.obj.spec.instances
        if current == wanted:
            print(f"{loaded.what} already has {wanted} instance(s) (spec.instances); nothing "
                  "written")
            return 0
        done = write(store, kind, loaded, ("spec", "instances"), wanted, verb="scaled")
    print(f"{loaded.what} scaled from {current} to {wanted} instance(s) (spec.instances, "
          f"{done.fmt} document, revision {done.old_revision} -> {done.revision})")
    return 0
