"""`docket queue push|dead|requeue NS/NAME`: put messages into a Queue's source, list its dead
letter, and move dead messages back — for etcd and Redis sources alike.

These are a producer's and an operator's tools, not the controller's: they never claim, ack
or dead-letter anything, and every write is conditional, so they are safe while the controller
runs (how each one is made safe: `controller/cli/_queues.py`). The Queue must exist: its spec
says where its source and its dead letter are.

    docket queue push default/inbox 'one' 'two'        # or -f FILE, -f - for stdin
    docket queue dead default/inbox                    # ID REASON EXECUTION AT MESSAGE
    docket queue requeue default/inbox --all           # or the IDs from `queue dead`

A requeued message is pending again and runs as a new message: `status.deadLettered` (a total
since creation) keeps counting it as well.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

from controller.cli._output import add_namespace_argument, add_store_arguments, guarded

NAME = "queue"
HELP = "Push messages into a queue, list its dead letters, requeue them."


class _Intermixed(argparse.ArgumentParser):
    """Takes positionals wherever they are among the options (`push inbox -n team a b`,
    `requeue inbox --etcd HOST:PORT ID ID`), as `parse_intermixed_args` does; a parser
    reached through a subcommand is only ever asked for `parse_known_args`."""

    _inside = False

    def parse_known_args(self, args: Iterable[str] | None = None,
                         namespace: Any = None) -> tuple[Any, list[str]]:
        if self._inside:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return super().parse_known_intermixed_args(
                None if args is None else list(args), namespace)
        finally:
            self._inside = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                parser_class=_Intermixed)
    formatter = parser.formatter_class

    push = sub.add_parser(
        "push", formatter_class=formatter, help="Add messages to a queue's source.",
        description="Add messages to the source of Queue NS/NAME, in order: each MESSAGE "
        "argument is one message, each line of FILE another (a message starting with '-' "
        "goes after --). etcd: one key per message under <prefix>/queue-items/<ns>/<name>/; "
        "Redis: RPUSH to the Queue's list.")
    _ref(push)
    push.add_argument("messages", nargs="*", metavar="MESSAGE", help="Messages to push.")
    push.add_argument("-f", "--file", metavar="FILE",
                      help="Push each line of FILE ('-': standard input) as a message, after "
                           "the MESSAGE arguments; line endings are dropped, empty lines "
                           "skipped.")
    _common(push)

    dead = sub.add_parser(
        "dead", formatter_class=formatter, help="List a queue's dead letters.",
        description="List the dead letters of Queue NS/NAME, oldest first: the messages "
        "whose batch exhausted its retries (BackoffLimitExceeded, SystemRetryLimitExceeded) "
        "or that were larger than maxBatchBytes (MessageTooLarge), with the last execution "
        "that held them. The IDs are what `docket queue requeue` takes.")
    _ref(dead)
    dead.add_argument("-o", "--output", choices=("json", "yaml"), default=None,
                      help="json, yaml: every entry with its whole message (default: a "
                           "table, messages cut short).")
    _common(dead)

    requeue = sub.add_parser(
        "requeue", formatter_class=formatter, help="Move dead letters back into a queue.",
        description="Move dead letters of Queue NS/NAME back to its source, where they are "
        "pending again: etcd under their original item ids, Redis at the tail of the list. "
        "Each moves exactly once, even with another requeue running. Unknown IDs are an "
        "error, and nothing is moved then.")
    _ref(requeue)
    requeue.add_argument("ids", nargs="*", metavar="ID",
                         help="Dead letters to requeue (the IDs of `docket queue dead`).")
    requeue.add_argument("--all", action="store_true", help="Requeue every dead letter.")
    _common(requeue)


def _ref(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="NS/NAME", help="The Queue: NS/NAME, or NAME with -n.")


def _common(parser: argparse.ArgumentParser) -> None:
    add_namespace_argument(parser)
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "push": _push, "dead": _dead, "requeue": _requeue}
    action = actions[args.action]
    return guarded(f"{NAME} {args.action}", lambda: action(args))


def _read_file(path: str) -> bytes:
    from controller.cli._output import CommandError

    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None


def _push(args: argparse.Namespace) -> int:
    from controller.api import EtcdSource
    from controller.cli._output import CommandError, open_store, resolve_name
    from controller.cli._queues import lines_of, load_queue, push_etcd, redis_queue

    namespace, name = resolve_name(args.ref, args.namespace)
    messages = [m.encode("utf-8", "surrogateescape") for m in args.messages]
    if args.file is not None:
        messages += lines_of(_read_file(args.file))
    if not messages:
        raise CommandError(f"queue {namespace}/{name}: no message to push (give MESSAGE "
                           "arguments or -f FILE)")
    with open_store(args) as store:
        ref = load_queue(store, namespace, name)
        if isinstance(ref.queue.spec.source, EtcdSource):
            pushed = push_etcd(store, ref, messages)
            where = f"etcd, under {store.keys.queue_items_prefix(namespace, name)}"
        else:
            with redis_queue(ref) as client:
                length = client.push(messages)
            pushed = len(messages)
            where = f"redis list {client.key!r} at {client.address}, {length} long now"
    print(f"pushed {pushed} message(s) to {ref.what} ({where})")
    return 0


def _dead(args: argparse.Namespace) -> int:
    from controller.api import EtcdSource
    from controller.cli._output import open_store, print_documents, resolve_name, table
    from controller.cli._queues import (
        DeadEntry,
        dead_etcd,
        dead_redis,
        etcd_dead_prefix,
        load_queue,
        parse_time,
        preview,
        redis_dead_key,
        redis_queue,
    )

    namespace, name = resolve_name(args.ref, args.namespace)
    entries: list[DeadEntry]
    with open_store(args) as store:
        ref = load_queue(store, namespace, name)
        if isinstance(ref.queue.spec.source, EtcdSource):
            where = etcd_dead_prefix(store, ref)
            entries = dead_etcd(store, where)
        else:
            dead_key = redis_dead_key(ref.queue)
            with redis_queue(ref) as client:
                entries = dead_redis(client, dead_key)
                where = f"redis list {dead_key!r} at {client.address}"
    if args.output is not None:
        print_documents([e.document() for e in entries], args.output, as_list=True)
        return 0
    if not entries:
        print(f"No dead letters for {ref.what} ({where}).")
        return 0
    from controller.cli._output import timestamp

    rows = []
    for e in entries:
        when = parse_time(e.at)
        rows.append([e.id, e.reason or "-", e.execution or "-",
                     timestamp(when) if when is not None else (e.at or "-"),
                     preview(e.message)])
    print(table(("ID", "REASON", "EXECUTION", "AT", "MESSAGE"), rows))
    return 0


def _requeue(args: argparse.Namespace) -> int:
    from controller.api import EtcdSource
    from controller.cli._output import CommandError, open_store, resolve_name
    from controller.cli._queues import (
        Requeued,
        dead_etcd,
        dead_redis,
        etcd_dead_prefix,
        load_queue,
        redis_dead_key,
        redis_queue,
        requeue_etcd,
    )

    namespace, name = resolve_name(args.ref, args.namespace)
    what = f"queue {namespace}/{name}"
    if args.all == bool(args.ids):
        raise CommandError(f"{what}: give either --all or the IDs to requeue (see `docket "
                           f"queue dead {namespace}/{name}`)")
    wanted = list(dict.fromkeys(args.ids))  # each once, in the order given

    def chosen(ids: list[str], where: str) -> list[str] | None:
        """The ids to move (None: all); an error naming the unknown ones."""
        if args.all:
            return None
        unknown = [i for i in wanted if i not in set(ids)]
        if unknown:
            raise CommandError(f"{what}: no dead letter with id {', '.join(unknown)} in "
                               f"{where}; nothing requeued")
        return wanted

    with open_store(args) as store:
        ref = load_queue(store, namespace, name)
        if isinstance(ref.queue.spec.source, EtcdSource):
            prefix = etcd_dead_prefix(store, ref)
            entries = dead_etcd(store, prefix)
            ids = chosen([e.id for e in entries], prefix)
            picked = [e for e in entries if ids is None or e.id in set(ids)]
            done = requeue_etcd(store, ref, picked)
        else:
            dead_key = redis_dead_key(ref.queue)
            with redis_queue(ref) as client:
                present = dead_redis(client, dead_key)
                ids = chosen([e.id for e in present], f"redis list {dead_key!r}")
                count = client.requeue(dead_key, ids)
            asked = len(present) if ids is None else len(ids)
            done = Requeued(moved=count, gone=max(0, asked - count))
    print(f"requeued {done.moved} message(s) to {what}"
          + (f"; {done.gone} had left the dead letter meanwhile (requeued by someone "
             "else)" if done.gone else ""))
    if done.blocked:
        raise CommandError(f"{what}: {', '.join(done.blocked)} left in the dead letter: the "
                           "queue holds an item with the same id")
    return 0
