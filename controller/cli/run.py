"""`docket run`: the controller process, configured by flags, `DOCKET_*` environment variables
or `--config FILE` (controller.config). Runs until SIGINT or SIGTERM and exits 0 after a clean
shutdown: the Mesos framework is left for the next instance (failover), never torn down."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

NAME = "run"
HELP = "Run the Docket controller against an etcd and a Mesos master."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from controller.config import add_arguments as add_settings

    add_settings(parser)


def run(args: argparse.Namespace) -> int:
    from controller.config import ConfigError, settings_from_args

    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"docket run: {exc}", file=sys.stderr)
        return 2
    if settings.framework_secret_file is not None:
        from controller.mesos.secret import SecretFileError, read_secret

        if not settings.framework_principal:
            print("docket run: --framework-secret-file needs --framework-principal",
                  file=sys.stderr)
            return 2
        try:
            read_secret(settings.framework_secret_file)  # read again at start; fail here
        except SecretFileError as exc:
            print(f"docket run: {exc}", file=sys.stderr)
            return 2
    # Imported here, on the main thread: pymesos installs a signal handler on import.
    from controller.manager import run_controller

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run_controller(settings, stop)
    except OSError as exc:  # e.g. the metrics port is taken
        print(f"docket run: {exc}", file=sys.stderr)
        return 1
