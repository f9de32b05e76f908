"""Entry point of the `docket` command.

Every other module in this package is one subcommand. It defines `NAME`, `HELP`,
`add_arguments(parser)` and `run(args) -> int`; `main` discovers them, so adding a subcommand
never touches this file. Subcommand modules import their heavy dependencies inside `run`, so
`docket --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import controller
import controller.cli


def _subcommands() -> list[ModuleType]:
    modules = []
    for info in pkgutil.iter_modules(controller.cli.__path__):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"controller.cli.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            modules.append(module)
    return sorted(modules, key=lambda m: str(m.NAME))


class _HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default in `--help`, unless its text already says it or there is
    nothing to show (a switch, an unset value, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text.lower() or default is None
                or default is False or default == argparse.SUPPRESS or default == []):
            return text
        text = text.rstrip()
        stop = "." if text.endswith(".") else ""
        return f"{text.removesuffix('.')} (default: %(default)s){stop}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docket", formatter_class=_HelpFormatter,
        description="Docket: Jobs, CronJobs, Queues and Services on Mesos, declared in etcd.",
    )
    parser.add_argument("--version", action="version", version=f"docket {controller.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _subcommands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           formatter_class=_HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
