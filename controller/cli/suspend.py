"""`docket suspend KIND NS/NAME...`: set spec.suspend to true (a Job kills its tasks and
launches none, a CronJob creates no Jobs, a Queue stops consuming); `_suspend.py` says how the
stored document is edited.
"""

from __future__ import annotations

import argparse

from controller.cli import _suspend
from controller.cli._output import guarded

NAME = "suspend"
HELP = "Suspend a job, cronjob or queue (sets spec.suspend: true, compare-and-swap)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _suspend.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _suspend.run(args, suspend=True))
