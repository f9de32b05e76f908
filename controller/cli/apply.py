"""`docket apply -f FILE|DIR ...`: validate manifests, then write each object to its key.

Validation is `docket validate`'s (the same loader and the same lines), and it covers every
document before anything is written: a directory with one bad file changes nothing in etcd.
An object whose stored spec is already equal is left alone, so its revision does not move
and the controller has nothing to redo.
"""

from __future__ import annotations

import argparse
import sys

from controller.cli._output import add_store_arguments, guarded

NAME = "apply"
HELP = "Validate manifests and write their objects into etcd (all or nothing on errors)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR",
                        help="A manifest file or a directory of them; repeatable.")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from controller.api import kind_for_model
    from controller.api.manifests import load_manifests
    from controller.cli._output import open_store

    objects, findings = load_manifests(args.filename)
    if findings:
        for finding in findings:
            print(finding)
        print(f"{len(findings)} problem(s); nothing written", file=sys.stderr)
        return 1
    with open_store(args) as store:
        for loaded in objects:
            obj = loaded.obj
            kind = kind_for_model(obj)
            what = f"{kind.singular} {obj.namespace}/{obj.name}"
            current = store.get(kind.plural, obj.namespace, obj.name)
            if current is not None and current.object == obj:
                print(f"{what} unchanged")
                continue
            store.put_object(obj)
            print(f"{what} {'configured' if current is not None else 'created'}")
    return 0
