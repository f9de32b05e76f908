"""`docket diff -f FILE|DIR ... [--prune] [--apply-set NAME]`: what `docket apply` would
change, as unified diffs, with kubectl's exit codes: 0 when etcd matches the files, 1 when it
differs, 2 (or more) on an error (an invalid manifest, etcd unreachable). A GitOps pipeline
runs it to show, or to gate on, the drift between the repository and the cluster.

It plans exactly as `docket apply` does (`controller.cli._applyset`), so it reports a
difference exactly when apply with the same flags would write: decoded objects are compared
(JSON against YAML is no difference), the apply-set annotation is left out of the diff, and an
object that would only change apply set shows as one `#` note. With `--prune`, objects of the
set that the files no longer hold show as deletions. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys

from controller.cli._output import add_store_arguments
from controller.cli.apply import add_file_arguments

NAME = "diff"
HELP = "Show how etcd differs from manifests (exit 0: same, 1: differs, 2: error)."
EPILOG = ("Exit status: 0 when etcd holds exactly the files' objects (and, with --prune, no "
          "other object of the apply set); 1 when it differs (the diff is printed); 2 on an "
          "error: an invalid manifest, an unreachable etcd.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_arguments(parser)
    add_store_arguments(parser)
    parser.epilog = EPILOG


def run(args: argparse.Namespace) -> int:
    from controller.cli._output import CommandError
    from controller.store import StoreError

    try:
        return _run(args)
    except (CommandError, StoreError) as exc:
        print(f"docket {NAME}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from controller.cli import _applyset
    from controller.cli._output import open_store
    from controller.cli.apply import load

    loaded = load(args, outcome="nothing compared")
    if loaded is None:
        return 2
    objects, set_name = loaded
    with open_store(args) as store:
        plan = _applyset.plan(store, objects, set_name, prune=args.prune)
    for change in plan.pending:
        print(change.diff(), end="")
    return 1 if plan.pending else 0
