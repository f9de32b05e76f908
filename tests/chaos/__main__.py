"""The chaos runner: `python -m tests.chaos --scenario NAME|all --seed N --minutes M
[--json FILE]`. Runs each scenario at full length (or the short version without --minutes),
prints one JSON object of figures per scenario on stdout (progress goes to stderr), writes
them all to FILE with --json, and exits 1 when any invariant failed (every violation is in the
JSON, naming the object, the id and the slot)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from controller import logs
from tests.chaos.scenarios import Options, get, registry


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    names = list(registry())
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--scenario", required=True, metavar="NAME|all",
                        help="one of: " + ", ".join(names) + "; or all")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--minutes", type=float, default=None,
                        help="full length: the fault phase's budget (default: the short "
                             "version of the test suite)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the reports, a JSON list, to FILE")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep every server's data and log under this directory")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.minutes is not None and args.minutes <= 0:
        parser.error("--minutes must be positive")
    # What logs in this process (the embedded Mesos: elections, kills) goes to stderr with the
    # progress: stdout carries the JSON figures only.
    logs.configure(level="warning", stream=sys.stderr)
    chosen = names if args.scenario == "all" else [args.scenario]
    if args.scenario != "all" and args.scenario not in names:
        parser.error(f"unknown scenario {args.scenario!r}; known: {', '.join(names)}")
    reports = []
    for name in chosen:
        workdir = args.workdir / name if args.workdir is not None else None
        options = Options(seed=args.seed, minutes=args.minutes, workdir=workdir,
                          log=(lambda line: None) if args.quiet else _log)
        report = get(name).run(options)
        reports.append(report.as_json())
        print(json.dumps(report.as_json(), indent=2), flush=True)
        if not report.ok:
            _log(report.explain())
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    return 0 if all(r["ok"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
