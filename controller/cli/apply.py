"""`docket apply -f FILE|DIR ... [--prune] [--diff] [--dry-run] [--apply-set NAME]`: validate
manifests, then make etcd hold their objects, as compare-and-swap writes.

Validation is `docket validate`'s (the same loader and the same lines), and it covers every
document before anything is written: a directory with one bad file changes nothing in etcd.
An object whose stored spec is already equal (as decoded objects, the apply-set annotation
aside) and already in this apply set is left alone, so its revision does not move and the
controller has nothing to redo.

Every object written carries the apply set's annotation; `--prune` then deletes the set's
objects that the files no longer hold, and never an object outside the set. Each write and
delete holds only if the object is still as it was read: a concurrent change is an error
naming the object (exit 1), never overwritten. How sets are named and compared:
`controller.cli._applyset`, shared with `docket diff`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from controller.cli._output import add_store_arguments, guarded

if TYPE_CHECKING:
    from controller.api.manifests import LoadedObject

NAME = "apply"
HELP = "Validate manifests and write their objects into etcd (all or nothing on errors)."
EPILOG = ("Exit status: 0 when etcd holds the files' objects (and, with --prune, no other "
          "object of the apply set); 1 when a manifest is invalid (nothing is written), etcd "
          "fails, or an object changed concurrently (that object is not written; with "
          "--prune, nothing is pruned).")


def add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """`-f`, `--prune` and `--apply-set`, which `docket diff` takes too."""
    parser.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR",
                        help="A manifest file or a directory of them; repeatable.")
    parser.add_argument("--prune", action="store_true",
                        help="Also delete the objects of the apply set that the files no "
                             "longer hold (only objects annotated docket.dev/apply-set with "
                             "exactly the set's name).")
    parser.add_argument("--apply-set", default=None, metavar="NAME",
                        help="The apply set's name, recorded in the docket.dev/apply-set "
                             "annotation of every object written (default: the -f paths, "
                             "normalised and joined by commas).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_arguments(parser)
    parser.add_argument("--diff", action="store_true",
                        help="Print a unified diff of each change before writing it.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Read and compare, print what would be done; write nothing.")
    add_store_arguments(parser)
    parser.epilog = EPILOG


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def load(args: argparse.Namespace, *, outcome: str = "nothing written"
         ) -> tuple[list[LoadedObject], str] | None:
    """The files' objects and the set name; None (after printing the problems and
    `outcome`) when a manifest is invalid."""
    from controller.api.manifests import load_manifests
    from controller.cli._applyset import check_set_name, default_set_name

    objects, findings = load_manifests(args.filename)
    if findings:
        for finding in findings:
            print(finding)
        print(f"{len(findings)} problem(s); {outcome}", file=sys.stderr)
        return None
    name = args.apply_set if args.apply_set is not None else default_set_name(args.filename)
    return objects, check_set_name(name)


def _run(args: argparse.Namespace) -> int:
    from controller.cli import _applyset
    from controller.cli._output import CommandError, open_store

    loaded = load(args)
    if loaded is None:
        return 1
    objects, set_name = loaded
    failed: list[str] = []
    with open_store(args) as store:
        plan = _applyset.plan(store, objects, set_name, prune=args.prune)
        writes = [c for c in plan.pending if c.action != "prune"]
        prunes = [c for c in plan.pending if c.action == "prune"]
        for change in plan.changes:
            if change.action == "unchanged":
                print(change.line())
        for change in writes + prunes:
            if change.action == "prune" and failed:
                print(f"{change.what} not pruned: an earlier write failed", file=sys.stderr)
                continue
            if args.diff:
                print(change.diff(), end="")
            if not args.dry_run:
                try:
                    _applyset.write(store, change)
                except CommandError as exc:
                    print(f"docket apply: {exc}", file=sys.stderr)
                    failed.append(change.what)
                    continue
            print(change.line(dry_run=args.dry_run))
    counts = {a: sum(1 for c in plan.changes if c.action == a)
              for a in ("create", "configure", "unchanged", "prune")}
    summary = ", ".join(f"{n} {_applyset.PAST[a]}" for a, n in counts.items()
                        if n or a != "prune")
    print(f"apply set {set_name!r}: {summary}"
          + (" (dry run: nothing written)" if args.dry_run else "")
          + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0

