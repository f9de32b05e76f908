"""`docket wait KIND/NAME --for phase=PHASE [--timeout 60s]`: block until an object's status
reaches a phase, with kubectl's exit codes, for scripts and pipelines.

    docket wait job/hello --for phase=Succeeded --timeout 2m     # exit 0, 1 or 2
    docket wait job default/hello --for phase=Succeeded          # KIND NS/NAME works too

The phase is the one `docket get` shows (`Entry.phase`: the status written for this very
object, by uid; Invalid for a spec that does not validate, even before the controller says
so). Exit 0 as soon as it is the asked phase; 1 when the object reaches a terminal phase that
is not the asked one (a Job's Succeeded or Failed; Invalid, for every kind: nothing changes
them but a new spec), when it does not exist or is deleted meanwhile, or when etcd cannot be
reached; 2 when `--timeout` passes first (0: as long as it takes). Other kinds have no
terminal phase besides Invalid: a Service may be Degraded and Running again, so only the asked
phase ends the wait.

It reads the spec and status keys every `--interval` (a poll, as `rollout status` does: a
lost watch or an etcd restart cannot make it miss the end, and two small reads a few times a
second are no burden on etcd). Only this module owns the phase-waiting rules; the controller
knows nothing of it.
"""

from __future__ import annotations

import argparse
import enum
import sys
import time
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING

from controller.cli._output import add_namespace_argument, add_store_arguments, guarded
from controller.cli.rollout import parse_duration

if TYPE_CHECKING:
    from controller.api import Kind
    from controller.cli._output import Entry

NAME = "wait"
HELP = "Wait until an object's status reaches a phase (kubectl's `wait --for`)."
EXIT_CODES = ("Exit status: 0 when the object reaches the phase; 1 when it reaches another "
              "terminal phase (a Job's Succeeded or Failed; Invalid for every kind), does not "
              "exist or is deleted meanwhile, or etcd cannot be reached; 2 when the timeout "
              "passes first (or on a usage error).")
TERMINAL = {"jobs": frozenset({"Succeeded", "Failed", "Invalid"})}
"""Per kind (plural), the phases an object does not leave; any other kind: Invalid only."""

pause: Callable[[float], None] = time.sleep
"""How `wait` waits between two reads (replaced by tests)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_CODES
    parser.add_argument("target", metavar="KIND/NAME",
                        help="The object: KIND/NAME (with -n), or KIND followed by NS/NAME.")
    parser.add_argument("ref", nargs="?", metavar="NS/NAME",
                        help="The object's NS/NAME, when the first argument is only KIND.")
    parser.add_argument("--for", dest="condition", required=True, metavar="phase=PHASE",
                        help="What to wait for: phase=PHASE, e.g. phase=Succeeded.")
    parser.add_argument("--timeout", type=parse_duration, default="60s", metavar="DURATION",
                        help="Give up (exit 2) after this long; 0 waits as long as it takes.")
    parser.add_argument("--interval", type=parse_duration, default="0.2s", metavar="DURATION",
                        help="Time between two reads of the status (at least 0.05s).")
    add_namespace_argument(parser)
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def phases_of(kind: Kind) -> list[str]:
    """Every phase the kind's status can have, from its model (an enum or a Literal)."""
    annotation = kind.status_model.model_fields["phase"].annotation
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    return [str(value) for value in typing.get_args(annotation)]


def parse_target(target: str, ref: str | None) -> tuple[str, str]:
    """(kind word, NS/NAME or NAME) from `KIND/NAME` or `KIND NS/NAME`."""
    from controller.cli._output import CommandError

    if ref is not None:
        return target, ref
    kind, slash, rest = target.partition("/")
    if not slash or not rest:
        raise CommandError(f"{target!r}: name the object as KIND/NAME (e.g. job/hello) or "
                           "KIND NS/NAME")
    return kind, rest


def parse_condition(text: str, kind: Kind) -> str:
    """The phase asked by `phase=PHASE`, spelled as the kind spells it (any case accepted)."""
    from controller.cli._output import CommandError

    key, eq, value = text.partition("=")
    if not eq or key.strip().lower() != "phase" or not value.strip():
        raise CommandError(f"--for {text!r}: only phase=PHASE is supported, "
                           "e.g. --for phase=Succeeded")
    known = phases_of(kind)
    for phase in known:
        if phase.lower() == value.strip().lower():
            return phase
    raise CommandError(f"--for {text!r}: a {kind.singular} has no phase {value.strip()!r}; "
                       f"its phases: {', '.join(known)}")


def _run(args: argparse.Namespace) -> int:
    from controller.cli._output import (
        CommandError,
        get_entry,
        human_duration,
        open_store,
        resolve_kind,
        resolve_name,
    )

    word, ref = parse_target(args.target, args.ref)
    kind = resolve_kind(word)
    namespace, name = resolve_name(ref, args.namespace)
    wanted = parse_condition(args.condition, kind)
    terminal = TERMINAL.get(kind.plural, frozenset({"Invalid"}))
    what = f"{kind.singular} {namespace}/{name}"
    timeout: float = args.timeout
    interval = max(0.05, float(args.interval))
    deadline = None if timeout == 0 else time.monotonic() + timeout
    with open_store(args) as store:
        entry = get_entry(store, kind, namespace, name)  # not found: CommandError, exit 1
        uid = entry.stored.uid
        while True:
            phase = entry.phase
            if phase == wanted:
                print(f"{what}: phase {phase}", flush=True)
                return 0
            if phase in terminal:
                message = _condition_message(entry)
                raise CommandError(f"{what} is {phase}, not {wanted}"
                                   f"{': ' + message if message else ''}")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                print(f"docket {NAME}: timed out after {human_duration(timeout)} waiting for "
                      f"{what} to be {wanted} (phase {phase})", file=sys.stderr, flush=True)
                return 2
            pause(interval if left is None else min(interval, left))
            try:
                entry = get_entry(store, kind, namespace, name)
            except CommandError:
                raise CommandError(f"{what} was deleted while waiting for phase "
                                   f"{wanted}") from None
            if entry.stored.uid != uid:
                raise CommandError(f"{what} was deleted and created again while waiting for "
                                   f"phase {wanted}")


def _condition_message(entry: Entry) -> str:
    """The message of the newest condition that has one, to say why it ended as it did."""
    if entry.invalid is not None:
        return str(entry.invalid.message)
    if entry.status is None:
        return ""
    dated = [c for c in entry.status.conditions if c.message]
    dated.sort(key=lambda c: c.last_transition_time.timestamp() if c.last_transition_time
               else 0.0)
    return str(dated[-1].message) if dated else ""
