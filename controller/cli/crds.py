"""`docket crds`: write (or check) the CustomResourceDefinitions in crds/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "crds"
HELP = "Write the CustomResourceDefinition schema of every kind (default into crds/)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="crds", help="Directory to write to (default: crds).")
    parser.add_argument("--check", action="store_true",
                        help="Write nothing; exit 1 when the files differ from the models.")


def run(args: argparse.Namespace) -> int:
    from controller.api.crd import render_crds

    out = Path(args.out)
    stale = []
    for name, text in render_crds().items():
        path = out / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check:
        for path in stale:
            print(f"{path}: out of date; run `docket crds --out {out}`", file=sys.stderr)
        return 1 if stale else 0
    print(f"wrote {len(stale)} file(s) in {out}/" if stale else f"{out}/ is up to date")
    return 0
