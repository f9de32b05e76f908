"""`docket rollout status|restart service NS/NAME`: follow a Service's rollout until it is
complete, and start one that replaces every instance.

    docket rollout status service default/web --timeout 10m   # exit 0, 1 (stuck) or 2
    docket rollout restart service default/web                # a new version, same template

**status** reads the spec and its status every `--interval` (a poll, so a lost watch or an
etcd restart cannot make it miss the end; a second between reads is no burden on etcd) until
the rollout of the spec as it is now is complete: the status is of this incarnation (uid),
the controller has acted on the spec's current revision (`observedRevision` equals the spec
key's mod_revision), and Progressing is True with reason RolloutComplete. Meanwhile it prints
a line whenever the progress changes ("2 of 3 updated instances healthy", counted from the
status' endpoints: instances of the current version not reported unhealthy). Exit 0 when
complete; 1 when the controller reports Progressing=False, ProgressDeadlineExceeded (the
rollout goes on trying: run the command again to keep waiting), or the Service is missing or
invalid; 2 when `--timeout` passes first (0: wait as long as it takes, as kubectl's).

**restart** sets `spec.template.labels["docket.dev/restartedAt"]` to the current time (RFC
3339, UTC) by a compare-and-swap edit of the stored document (`_spec_edit.py`). The label is
part of the template, so the version (a digest of template and health check) changes and the
controller replaces every instance under `spec.upgradeStrategy`, as for any new template.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING

from controller.cli._output import add_namespace_argument, add_store_arguments, guarded

if TYPE_CHECKING:
    from controller.api import ServiceStatus
    from controller.cli._output import Entry

NAME = "rollout"
HELP = "Follow a service's rollout (status) or start one that replaces every instance (restart)."
RESTARTED_AT = "docket.dev/restartedAt"
"""The template label `rollout restart` sets: a new value makes a new version."""
STATUS_EXIT_CODES = ("Exit status: 0 when the rollout is complete; 1 when it is stuck "
                     "(Progressing=False, ProgressDeadlineExceeded: it goes on trying), the "
                     "service is missing or invalid, or etcd cannot be reached; 2 when the "
                     "timeout passes first (or on a usage error).")
RESTART_EXIT_CODES = ("Exit status: 0 when the label is written; 1 when the service is missing "
                      "or invalid, changed while it was being restarted (nothing is written: "
                      "run the command again), or etcd cannot be reached; 2 on a usage error.")

pause: Callable[[float], None] = time.sleep
"""How `rollout status` waits between two reads (replaced by tests, to move the status on)."""

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from `600`, `600s`, `10m`, `1h30m`, `1.5s` or `500ms`."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration (e.g. 90s, 10m, 1h30m)") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration of 0 or more")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Exit status: each action's --help says (status: 0 complete, 1 stuck, 2 "
                     "timed out).")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    formatter = parser.formatter_class

    status = sub.add_parser(
        "status", formatter_class=formatter, epilog=STATUS_EXIT_CODES,
        help="Wait until a service's rollout is complete, printing its progress.",
        description="Wait until the rollout of Service NS/NAME, as its spec is now, is "
        "complete: the controller has acted on the spec's current revision and reports "
        "Progressing=True, RolloutComplete. Prints a line whenever the progress changes.")
    _target(status)
    status.add_argument("--timeout", type=parse_duration, default="600s", metavar="DURATION",
                        help="Give up (exit 2) after this long; 0 waits as long as it takes.")
    status.add_argument("--interval", type=parse_duration, default="1s", metavar="DURATION",
                        help="Time between two reads of the status (at least 0.1s).")
    _common(status)

    restart = sub.add_parser(
        "restart", formatter_class=formatter, epilog=RESTART_EXIT_CODES,
        help="Replace every instance of a service (a new version, same template).",
        description=f"Set spec.template.labels[\"{RESTARTED_AT}\"] of Service NS/NAME to the "
        "current time (compare-and-swap; JSON stays JSON, YAML stays YAML). The label is part "
        "of the template, so the version changes and every instance is replaced under "
        "spec.upgradeStrategy; `docket rollout status` follows it.")
    _target(restart)
    _common(restart)


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND", help="service (the only kind with rollouts).")
    parser.add_argument("ref", metavar="NS/NAME", help="The service: NS/NAME, or NAME with -n.")


def _common(parser: argparse.ArgumentParser) -> None:
    add_namespace_argument(parser)
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "status": _status, "restart": _restart}
    action = actions[args.action]
    return guarded(f"{NAME} {args.action}", lambda: action(args))


def _service_target(args: argparse.Namespace) -> tuple[str, str]:
    from controller.cli._output import CommandError, resolve_kind, resolve_name

    kind = resolve_kind(args.kind)
    if kind.plural != "services":
        raise CommandError(f"a {kind.singular} has no rollout: only services do")
    return resolve_name(args.ref, args.namespace)


# --- status -------------------------------------------------------------------------------------
class Progress(Enum):
    WAITING = "waiting"
    COMPLETE = "complete"
    STUCK = "stuck"


def rollout_progress(entry: Entry) -> tuple[Progress, str]:
    """Where the rollout of `entry`'s spec stands, and a line saying so."""
    from controller.api import ServiceStatus
    from controller.service_metrics import (
        PROGRESS_DEADLINE_EXCEEDED,
        PROGRESSING,
        ROLLOUT_COMPLETE,
        rollout_reason,
    )

    stored = entry.stored
    what = f"service {stored.namespace}/{stored.name}"
    status = entry.status if isinstance(entry.status, ServiceStatus) else None
    if status is None:
        return Progress.WAITING, f"Waiting for the controller to act on {what} (no status yet)..."
    if status.observed_revision != stored.mod_revision:
        return Progress.WAITING, (
            f"Waiting for the controller to act on revision {stored.mod_revision} of {what} "
            f"(its status is of revision {status.observed_revision or '-'})...")
    healthy, old = _updated_healthy(status)
    reason = rollout_reason(status)
    if reason == ROLLOUT_COMPLETE:
        return Progress.COMPLETE, (
            f"{what} successfully rolled out: {healthy} of {status.instances} instances of "
            f"version {status.version or '-'} healthy")
    if status.condition(PROGRESSING) is None:
        return Progress.WAITING, f"Waiting for {what} (phase {status.phase})..."
    if healthy < status.instances:
        line = (f"Waiting for {what} rollout to finish: {healthy} of {status.instances} "
                f"updated instances healthy (version {status.version or '-'})...")
    elif old:
        line = (f"Waiting for {what} rollout to finish: {old} old instance(s) pending "
                "termination...")
    else:
        line = f"Waiting for {what} rollout to finish..."
    return (Progress.STUCK if reason == PROGRESS_DEADLINE_EXCEEDED else Progress.WAITING), line


def _updated_healthy(status: ServiceStatus) -> tuple[int, int]:
    """(running instances of the current version not reported unhealthy, running instances
    of another version), from the status' endpoints."""
    new = sum(1 for e in status.endpoints
              if e.version == status.version and e.healthy is not False)
    old = sum(1 for e in status.endpoints if e.version != status.version)
    return new, old


def _status(args: argparse.Namespace) -> int:
    from controller.cli._output import (
        CommandError,
        get_entry,
        human_duration,
        open_store,
        resolve_kind,
    )

    namespace, name = _service_target(args)
    kind = resolve_kind("services")
    timeout: float = args.timeout
    interval = max(0.1, float(args.interval))
    deadline = None if timeout == 0 else time.monotonic() + timeout
    shown = None
    with open_store(args) as store:
        while True:
            entry = get_entry(store, kind, namespace, name)
            if entry.invalid is not None:
                raise CommandError(f"service {namespace}/{name} is invalid, so it is not "
                                   f"rolled out; fix it first: {entry.invalid.message}")
            progress, line = rollout_progress(entry)
            if progress is Progress.COMPLETE:
                print(line, flush=True)
                return 0
            if line != shown:
                print(line, flush=True)
                shown = line
            if progress is Progress.STUCK:
                condition = entry.status.condition("Progressing") if entry.status else None
                detail = f": {condition.message}" if condition and condition.message else ""
                raise CommandError(f"service {namespace}/{name} rollout is stuck "
                                   f"(ProgressDeadlineExceeded{detail}); the controller "
                                   "goes on trying")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                print(f"docket {NAME} status: timed out after {human_duration(timeout)} "
                      f"waiting for service {namespace}/{name} to roll out", file=sys.stderr)
                return 2
            pause(interval if left is None else min(interval, left))


# --- restart ------------------------------------------------------------------------------------
def restart_stamp(now: datetime, previous: str | None) -> str:
    """`now` in RFC 3339, UTC, to the second; to the microsecond when the second is the
    label's value already (a restart in the same second must still be a new version)."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if stamp == previous:
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp


def _restart(args: argparse.Namespace) -> int:
    from controller.api import Service
    from controller.cli._output import open_store, resolve_kind
    from controller.cli._spec_edit import load, write
    from controller.reconcile.service import service_version

    namespace, name = _service_target(args)
    kind = resolve_kind("services")
    with open_store(args) as store:
        loaded = load(store, kind, namespace, name)
        assert isinstance(loaded.obj, Service)
        before = service_version(loaded.obj.spec)
        stamp = restart_stamp(datetime.now(UTC),
                              loaded.obj.spec.template.labels.get(RESTARTED_AT))
        done = write(store, kind, loaded, ("spec", "template", "labels", RESTARTED_AT), stamp,
                     verb="restarted")
    assert isinstance(done.obj, Service)
    after = service_version(done.obj.spec)
    print(f"{loaded.what} restarted (spec.template.labels[\"{RESTARTED_AT}\"]: {stamp}; "
          f"version {before} -> {after}; {done.fmt} document, revision {done.old_revision} -> "
          f"{done.revision}): every instance is replaced under its upgrade strategy, "
          f"`docket rollout status service {namespace}/{name}` follows it")
    return 0
