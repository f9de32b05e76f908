"""`docket resume KIND NS/NAME...`: set spec.suspend to false. A resumed CronJob runs at most
its most recent missed slot (within startingDeadlineSeconds), never a burst; `_suspend.py`
says how the stored document is edited.
"""

from __future__ import annotations

import argparse

from controller.cli import _suspend
from controller.cli._output import guarded

NAME = "resume"
HELP = "Resume a suspended job, cronjob or queue (sets spec.suspend: false, compare-and-swap)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _suspend.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _suspend.run(args, suspend=False))
