"""`docket validate -f FILE|DIR ...`: the controller's verdict on manifests, offline."""

from __future__ import annotations

import argparse
import sys

NAME = "validate"
HELP = "Validate manifests offline (YAML or JSON files, or directories of them)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR",
                        help="A manifest file or a directory of them; repeatable.")


def run(args: argparse.Namespace) -> int:
    from controller.api.manifests import load_manifests

    objects, findings = load_manifests(args.filename)
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} problem(s); {len(objects)} valid object(s)", file=sys.stderr)
        return 1
    print(f"{len(objects)} object(s) valid")
    return 0
