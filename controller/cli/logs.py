"""`docket logs KIND NS/NAME`: a task's stdout (or stderr), read from its Mesos agent's sandbox.

This module owns which task is shown and how its output is printed and followed; how a
sandbox is found and read — through the master and the agent's own HTTP endpoints, as Mesos'
tools do, so that it works on any Mesos cluster and not only the embedded one — is in
`_sandbox.py`. Docket keeps no copy of task output: the agent's sandbox is the only one, and
it lasts until the agent garbage-collects it.

Which task: the object's execution records (etcd, `executions/<plural>/<ns>/<name>/`) of its
current incarnation (uid). By default the newest (latest submitted, then highest attempt,
then highest index); `--index N` the newest attempt of slot N (a Queue: batch N); `--task ID`
exactly that one, whatever its incarnation. A CronJob runs no task itself: its newest Job is shown.

`-f` prints what the file holds, then polls the agent every 0.5 s from where it stopped,
until the record says the task has reached a terminal state; the file is read to its end once
more after that, so nothing the task wrote is lost, and the command exits 0. A task not yet on
an agent, or whose sandbox or file does not exist yet, is waited for while it has not ended.
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from controller.cli._output import (
    CommandError,
    add_namespace_argument,
    add_store_arguments,
    guarded,
)

if TYPE_CHECKING:
    from controller.api import ExecutionRecord
    from controller.cli._sandbox import SandboxFile
    from controller.store import Store

NAME = "logs"
HELP = ("Print a task's stdout (or --stderr) from its Mesos agent's sandbox; -f follows it "
        "until the task ends.")
EPILOG = (
    "KIND is job, queue, service or cronjob (its newest Job). The agent is found through the "
    "Mesos master (--mesos-master, $DOCKET_MESOS_MASTER or $DOCKET_CONFIG, as for `docket "
    "run`) and the file read with the agent's /files/read, so this works on any Mesos "
    "cluster while the agent keeps the sandbox. "
    "Exit status: 0 when the output was printed (with -f: when the task has ended and all of "
    "its output was printed); 1 when the object, an execution, the agent or the sandbox is "
    "not found, or etcd or Mesos cannot be reached; 2 on a usage error; 130 on Ctrl-C.")
POLL_SECONDS = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("kind", metavar="KIND", help="job, queue, service or cronjob.")
    parser.add_argument("ref", metavar="NS/NAME", help="The object: NS/NAME, or NAME with -n.")
    add_namespace_argument(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, default=None, metavar="N",
                       help="The newest attempt of slot (completion index, queue batch, "
                            "service instance) N (default: the newest execution).")
    which.add_argument("--task", default=None, metavar="ID",
                       help="Exactly this task id (see `docket describe`).")
    parser.add_argument("--stderr", action="store_true", help="Print stderr, not stdout.")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="Keep printing what the task writes until it ends.")
    parser.add_argument("--tail", type=int, default=None, metavar="N",
                        help="Print only the last N lines (default: the whole file).")
    parser.add_argument(
        "--mesos-master", default=None, metavar="URL",
        help="Mesos master, host:port or http://host:port (default: $DOCKET_MESOS_MASTER, "
             "else mesos_master in $DOCKET_CONFIG, else http://127.0.0.1:5050).")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        return guarded(NAME, lambda: _run(args))
    except BrokenPipeError:  # `docket logs ... | head`: the reader has all it wanted
        import contextlib
        import os

        with contextlib.suppress(OSError, ValueError):  # so that the exit's flush cannot fail
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace) -> int:
    from controller.cli._output import get_entry, open_store, resolve_kind, resolve_name
    from controller.cli._sandbox import master_url

    kind = resolve_kind(args.kind)
    if args.tail is not None and args.tail < 0:
        raise CommandError(f"--tail must be 0 or more, got {args.tail}")
    if args.index is not None and args.index < 0:
        raise CommandError(f"--index must be 0 or more, got {args.index}")
    namespace, name = resolve_name(args.ref, args.namespace)
    master = master_url(args.mesos_master)
    with open_store(args) as store:
        entry = get_entry(store, kind, namespace, name)
        plural, owner, uid = kind.plural, name, entry.stored.uid
        what = f"{kind.singular} {namespace}/{name}"
        if plural == "cronjobs":
            from controller.cli._cronjobs import list_jobs, owned_jobs

            jobs = owned_jobs(list_jobs(store, namespace), namespace, name, uid)
            if not jobs:
                raise CommandError(f"{what} has no Jobs (yet)")
            plural, owner, uid = "jobs", jobs[0].stored.name, jobs[0].stored.uid
            what = f"job {namespace}/{owner} (the newest of {what})"
            print(f"docket logs: {what}", file=sys.stderr)
        records = [s.record for s in store.list_executions(plural, namespace, owner)]
        record = choose(records, uid, index=args.index, task=args.task, what=what)
        key = store.keys.execution(plural, namespace, owner, record.task_id)
        return _show(store, key, record, master, args, f"task {record.task_id} of {what}")


def _submitted(record: ExecutionRecord) -> tuple[bool, datetime, int, int]:
    first = record.submitted_at or record.started_at or record.finished_at
    return (first is not None, first or datetime.min.replace(tzinfo=UTC), record.attempt,
            record.index)


def choose(records: list[ExecutionRecord], uid: int, *, index: int | None = None,
           task: str | None = None, what: str = "the object") -> ExecutionRecord:
    """The execution to show: `task` exactly; else, of incarnation `uid`, the newest attempt
    of slot `index`, or the newest of all."""
    from controller.reconcile.taskid import parse_task_id

    if task is not None:
        for r in records:
            if r.task_id == task:
                return r
        newest = sorted(records, key=_submitted, reverse=True)[:5]
        known = ", ".join(r.task_id for r in newest)
        raise CommandError(f"{what} has no execution {task}"
                           + (f" (newest: {known})" if known else " (it has none)"))

    def current(r: ExecutionRecord) -> bool:
        parts = parse_task_id(r.task_id)
        return parts is None or parts.uid == uid

    mine = [r for r in records if current(r)]
    if not mine:
        raise CommandError(f"{what} has no executions yet")
    if index is not None:
        slot = [r for r in mine if r.index == index]
        if not slot:
            indexes = ",".join(str(i) for i in sorted({r.index for r in mine}))
            raise CommandError(f"{what} has no execution of index {index} "
                               f"(indexes with executions: {indexes})")
        return max(slot, key=lambda r: (r.attempt, _submitted(r)))
    return max(mine, key=_submitted)


class _Out:
    """Bytes to the current sys.stdout as text; a UTF-8 character split between two reads is
    decoded whole, invalid bytes are replaced."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, chunks: Iterable[bytes]) -> int:
        n = 0
        for data in chunks:
            n += len(data)
            text = self._decoder.decode(data)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
        return n

    def close(self) -> None:
        text = self._decoder.decode(b"", final=True)
        if text:
            sys.stdout.write(text)
        sys.stdout.flush()


def tail_start(data: bytes, lines: int, *, whole: bool) -> int | None:
    """Where the last `lines` lines of `data` begin (a final newline ends the last line, as
    `tail -n` counts); None when `data` holds fewer and is not the `whole` file."""
    if lines == 0:
        return len(data)
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0 if whole else None
    return pos + 1


def _print_tail(file: SandboxFile, lines: int, out: _Out) -> int:
    """Print the last `lines` lines; the offset after what was printed."""
    from controller.cli._sandbox import READ_LENGTH

    size = file.size()
    window = READ_LENGTH
    while True:
        start = max(0, size - window)
        data = b"".join(file.read(start, size))
        cut = tail_start(data, lines, whole=start == 0)
        if cut is not None:
            out.write([data[cut:]])
            return start + len(data)
        window *= 4


def _show(store: Store, key: str, record: ExecutionRecord, master: str,
          args: argparse.Namespace, what: str) -> int:
    from controller.cli._sandbox import (
        SandboxFile,
        SandboxGone,
        find_agent,
        sandbox_directory,
    )

    follow: bool = args.follow
    live = _Record(store, key, record)
    if follow:
        while live.record.agent_id is None and not live.ended:
            live.refresh_after(POLL_SECONDS)
    record = live.record
    if record.agent_id is None:
        if live.ended:
            raise CommandError(f"{what} ended ({record.state}) without running on an agent: "
                               "it has no output")
        raise CommandError(f"{what} is not on an agent yet ({record.state}); -f waits for it")
    framework_id = _framework_id(record) or store.get_framework_id()
    agent = find_agent(master, record.agent_id)
    while True:
        try:
            directory = sandbox_directory(agent, record.task_id, framework_id)
            break
        except SandboxGone:
            if not follow or live.ended:
                raise
        live.refresh_after(POLL_SECONDS)  # the agent is still setting up the executor
    file = SandboxFile(agent, f"{directory}/{'stderr' if args.stderr else 'stdout'}",
                       record.task_id)
    out = _Out()
    try:
        if not follow:
            if args.tail is not None:
                _print_tail(file, args.tail, out)
            else:
                out.write(file.read(0))
            return 0
        offset: int | None = None
        while True:
            ended = live.ended  # read before the file: all the task wrote is there by then
            try:
                if offset is None:
                    offset = (_print_tail(file, args.tail, out) if args.tail is not None
                              else out.write(file.read(0)))
                else:
                    offset += out.write(file.read(offset))
            except SandboxGone:
                if ended or offset is not None:
                    raise  # the file existed and is gone, or will never come
            if ended:
                return 0
            live.refresh_after(POLL_SECONDS)
    finally:
        out.close()


def _framework_id(record: ExecutionRecord) -> str | None:
    """From the record's sandbox path, /frameworks/<FID>/executors/<EID>/runs/latest."""
    parts = (record.sandbox_path or "").split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "frameworks" and parts[2] else None


class _Record:
    """An execution record, read again from etcd while following its task. A record that is
    deleted (its object was deleted) counts as ended."""

    def __init__(self, store: Store, key: str, record: ExecutionRecord) -> None:
        self.store, self.key, self.record = store, key, record
        self.deleted = False

    @property
    def ended(self) -> bool:
        from controller.reconcile.tasks import TERMINAL_STATES

        return self.deleted or self.record.state in TERMINAL_STATES

    def refresh_after(self, seconds: float) -> None:
        from controller.api import ExecutionRecord

        time.sleep(seconds)
        found = self.store.get_raw(self.key)
        if found is None:
            self.deleted = True
        else:
            self.record = ExecutionRecord.model_validate_json(found[0])
