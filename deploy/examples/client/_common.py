"""What the examples share: `--etcd host:port` and `--prefix`, and a Job built in Python."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # run from a checkout

from controller.api import Job


def arguments(description: str) -> argparse.ArgumentParser:
    """A parser with --etcd (default 127.0.0.1:2379) and --prefix (default /docket)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--etcd", default="127.0.0.1:2379", help="etcd host:port")
    parser.add_argument("--prefix", default="/docket", help="Docket's etcd key prefix")
    parser.add_argument("--namespace", default="default")
    return parser


def job(name: str, command: str, *, namespace: str = "default", completions: int = 1,
        env: dict[str, str] | None = None, backoff_limit: int = 0) -> Job:
    """A Job running `command` `completions` times (small resources, no retries)."""
    return Job.model_validate({
        "apiVersion": "docket.dev/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"completions": completions, "backoffLimit": backoff_limit,
                 "template": {"command": command, "resources": {"cpus": 0.1, "mem": 16},
                              "env": env or {}}},
    })
