"""A local server run as a child process (etcd for `docket up` and the tests, Redis for the
same): how it is stopped (SIGTERM, then SIGKILL after a timeout, so a hung server never hangs
its owner), killed as a crash would, and what its log last said when it failed to start."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL, as a crash would."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def log_tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
