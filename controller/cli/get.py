"""`docket get KIND [-n NS | -A] [-l SELECTOR] [-o name|wide|json|yaml] [-w]`: objects with
their status, kubectl-like.

`-l key=value,key!=value,key,!key` keeps the objects whose metadata.labels satisfy every term
(an invalid spec has no trustworthy labels, so a selector never selects it). `-o name` prints
one `kind/namespace/name` line per object (`job/default/hello`; kubectl's `job.docket.dev/hello`
has no namespace, Docket's commands take NS/NAME).

`-w` prints the table (with an EVENT column: ADDED for what exists), then one line per change
as it happens (ADDED, MODIFIED, DELETED), until Ctrl-C (exit 0) or `--timeout`. It reads the
specs and the statuses of the kind at one etcd revision and watches both from the next one, so
no change between the table and the watch is missed: specs through the store's watch (which
survives etcd restarts and compaction), statuses through a raw prefix watch that re-watches
from the last revision it saw when its stream breaks. A status write that changes nothing the
line shows prints nothing; an object whose labels stop matching `-l` is DELETED from the view.
With `-o name` each change prints the object's name; `-o json` one JSON object per line,
`{"type": ..., "object": ...}`; `-o yaml` the same as `---` documents.

The table joins each spec with the status the controller wrote for it; a spec that does not
decode shows phase Invalid (its problems under `-o wide`), so a typo is visible at a glance.
etcd keeps no creation time, so a Job's AGE counts from the start time in its status, and a
CronJob's from the oldest instant Docket still holds of it (the scheduled time of the oldest
Job it owns, its first condition or its last schedule).

CronJobs show what kubectl shows (SCHEDULE, TIMEZONE, SUSPEND, ACTIVE, LAST as an age) plus
NEXT, the next slot relative to now ("in 42s"; "42s overdue" when the controller has not acted
on it yet, so a stalled controller is visible at a glance); an invalid one says `<invalid>`
there, since it has no next slot.

Queues show their exact counts from status (PENDING in the source and not claimed, IN-FLIGHT
in open batches, SUCCEEDED and DEAD since creation), how long the OLDEST pending message has
waited (in its largest unit: 45s, 3m, 2h) and the ACTIVE tasks.

Services show INSTANCES as healthy/wanted (kubectl's READY), the instances RUNNING, HEALTHY
(running and passing the health check, or running when there is none) and UPDATED (of the
current version); AGE counts from the oldest instant the status holds (its first condition,
typically when the controller first acted on it). `-o wide` adds the VERSION (the digest of
template and health check), the UNAVAILABLE instances (wanted but not healthy) and the
crash-loop BACKOFF delay before the next launch ('-' when nothing failed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.cli._output import (
    KIND_CHOICES,
    add_namespace_argument,
    add_store_arguments,
    guarded,
)

if TYPE_CHECKING:
    from controller.api import Kind
    from controller.cli._output import Entry, Requirement
    from controller.store import Store

NAME = "get"
HELP = "List jobs, cronjobs, queues or services with their status."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND",
                        help=f"What to list: {', '.join(KIND_CHOICES)}, secrets (their "
                             "keys, never values), or throttles (the policy's).")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="Only these objects (NAME or NS/NAME).")
    add_namespace_argument(parser)
    parser.add_argument("-A", "--all-namespaces", action="store_true",
                        help="List objects of every namespace.")
    parser.add_argument("-l", "--selector", default=None, metavar="SELECTOR",
                        help="Only objects whose labels match: key=value, key!=value, key, "
                             "!key, joined by commas; all must hold (default: every object).")
    parser.add_argument("-o", "--output", choices=("name", "wide", "json", "yaml"),
                        default=None,
                        help="name: kind/namespace/name lines; wide: more columns; json, "
                             "yaml: the objects with their status (default: a table).")
    parser.add_argument("-w", "--watch", action="store_true",
                        help="After the list, print a line per change as it happens, until "
                             "Ctrl-C (exit 0).")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="With -w: stop watching after this many seconds, exit 0 "
                             "(default: watch until Ctrl-C).")
    add_store_arguments(parser)


Row = Callable[["Entry", bool], list[str]]


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from controller.cli._output import (
        CommandError,
        entry_document,
        get_entry,
        list_entries,
        name_line,
        open_store,
        parse_selector,
        print_documents,
        resolve_kind,
        resolve_name,
        selected,
        table,
    )
    from controller.cli._secrets import get as get_secrets
    from controller.cli._secrets import is_secret

    if is_secret(args.kind):  # not a kind the controller reconciles: keys, never values
        return get_secrets(args)
    if args.kind in ("throttle", "throttles"):  # the policy's throttles, not a kind
        from controller.cli.policy import get_throttles

        return get_throttles(args)
    kind = resolve_kind(args.kind)
    if args.all_namespaces and args.namespace:
        raise CommandError("give either -n NAMESPACE or -A, not both")
    if args.timeout is not None and not args.watch:
        raise CommandError("--timeout is for -w (watch)")
    selector = parse_selector(args.selector) if args.selector is not None else []
    namespace = None if args.all_namespaces else (args.namespace or "default")
    refs = [resolve_name(ref, args.namespace) for ref in args.names]
    jobs: list[Entry] = []
    with open_store(args) as store:
        if args.watch:
            scope = _Scope(namespace=None if refs else namespace, refs=set(refs),
                           selector=selector)
            return _watch(store, kind, scope, args.output,
                          show_ns=args.all_namespaces or len({ns for ns, _n in refs}) > 1,
                          timeout=args.timeout)
        if refs:
            entries = [get_entry(store, kind, ns, name) for ns, name in refs]
            namespace = None
        else:
            entries = list_entries(store, kind, namespace)
        entries = [e for e in entries if selected(e.stored.object, selector)]
        if kind.plural == "cronjobs" and entries and args.output in (None, "wide"):
            from controller.cli._cronjobs import list_jobs

            jobs = list_jobs(store, namespace)
    if args.output in ("json", "yaml"):
        docs = [entry_document(e) for e in entries]
        print_documents(docs, args.output, as_list=len(args.names) != 1 or not docs)
        return 0
    if not entries:
        where = "any namespace" if args.all_namespaces else \
            f"namespace {args.namespace or 'default'}"
        matching = f" matching {args.selector}" if selector else ""
        # -o name output is for scripts: the note goes to stderr, stdout stays empty.
        print(f"No {kind.plural}{matching} found in {where}.",
              file=sys.stderr if args.output == "name" else sys.stdout)
        return 0
    if args.output == "name":
        for e in entries:
            print(name_line(kind, e.stored.namespace, e.stored.name))
        return 0
    show_ns = args.all_namespaces or len({e.stored.namespace for e in entries}) > 1
    head, rows = _table_rows(kind.plural, entries, args.output == "wide", show_ns, jobs)
    print(table(head, rows))
    return 0


def _table_rows(plural: str, entries: list[Entry], wide: bool, show_ns: bool,
                jobs: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """The header and one row per entry, as the table of `plural` shows them."""
    headers, row = _COLUMNS[plural]
    if plural == "cronjobs":
        row = functools.partial(_cronjob_row, jobs=jobs)
    head = list(headers[0] if not wide else headers[0] + headers[1])
    rows = [row(e, wide) for e in entries]
    if show_ns:
        head.insert(0, "NAMESPACE")
        rows = [[e.stored.namespace, *r] for e, r in zip(entries, rows, strict=True)]
    return head, rows


@dataclass(frozen=True)
class _Scope:
    """Which objects a watch shows: a namespace (None: all) or named objects, and labels."""

    namespace: str | None
    refs: set[tuple[str, str]]
    selector: list[Requirement]

    def holds(self, namespace: str, name: str) -> bool:
        if self.refs:
            return (namespace, name) in self.refs
        return self.namespace is None or namespace == self.namespace


class _StatusWatch:
    """A raw watch of one kind's status keys from a revision, feeding `sink` with
    ("status", key, value or None for a delete, revision). When the stream breaks (etcd
    restarting) it watches again from the revision after the last one it delivered; when
    that revision is compacted it sends ("error", why) and stops: the CLI cannot know what
    it missed, and says so rather than show a stale view."""

    def __init__(self, store: Store, prefix: str, start_revision: int,
                 sink: Callable[[tuple[Any, ...]], None]) -> None:
        self._store, self._prefix, self._sink = store, prefix, sink
        self._next = start_revision
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="get-watch-status",
                                        daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import pyetcd.events
        import pyetcd.exceptions

        from controller.store.watch import create_prefix_watch

        backoff = 0.05
        while not self._stop.is_set():
            inbox: queue.Queue[Any] = queue.Queue()
            watch_id = None
            try:
                raw = self._store.watch_client.raw
                watch_id = create_prefix_watch(raw, self._prefix, inbox.put,
                                               start_revision=self._next)
                while not self._stop.is_set():
                    try:
                        item = inbox.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    if item is None:
                        raise ConnectionError("watch stream closed")
                    if isinstance(item, BaseException):
                        raise item
                    for ev in item.events:
                        mod = int(ev.mod_revision)
                        if mod < self._next:
                            continue
                        value = (None if isinstance(ev, pyetcd.events.DeleteEvent)
                                 else bytes(ev.value))
                        self._sink(("status", ev.key.decode(), value, mod))
                        self._next = mod + 1
                    backoff = 0.05
            except pyetcd.exceptions.RevisionCompactedError:
                self._sink(("error", f"the status watch fell behind etcd's compaction at "
                                     f"revision {self._next}; run the command again"))
                return
            except Exception:
                if self._stop.is_set():
                    return
                self._stop.wait(backoff)  # etcd restarting: watch again from self._next
                backoff = min(backoff * 2, 2.0)
            finally:
                if watch_id is not None:
                    with contextlib.suppress(Exception):
                        self._store.watch_client.raw.cancel_watch(watch_id)


def _watch(store: Store, kind: Kind, scope: _Scope, output: str | None, *, show_ns: bool,
           timeout: float | None) -> int:
    """`get -w`: the list, then a line per change until Ctrl-C or `timeout` (exit 0)."""
    import json

    import yaml

    from controller.api import ObjectInvalid, StatusBase, decode_status
    from controller.cli._output import (
        CommandError,
        Entry,
        column_widths,
        current_status,
        entry_document,
        name_line,
        selected,
        table_line,
    )
    from controller.store import StoredObject

    # Specs and statuses as of one revision; both watches start right after it.
    objects, revision = store.list(kind.plural)
    status_prefix = store.keys.status_prefix(kind.plural)
    raw_statuses, _ = store.list_raw(status_prefix, revision=revision)

    def decode(value: bytes) -> StatusBase | None:
        try:
            return decode_status(kind.plural, value)
        except ObjectInvalid:  # the controller's data, corrupt: shown as no status
            return None

    def status_ref(key: str) -> tuple[str, str] | None:
        parts = key[len(status_prefix):].split("/")
        return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None

    specs: dict[tuple[str, str], StoredObject] = {}
    statuses: dict[tuple[str, str], StatusBase | None] = {}
    for stored in objects:
        if scope.holds(stored.namespace, stored.name):
            specs[(stored.namespace, stored.name)] = stored
    for key, value, _mod, _c, _v in raw_statuses:
        ref = status_ref(key)
        if ref is not None and scope.holds(*ref):
            statuses[ref] = decode(value)

    def entry(ref: tuple[str, str]) -> Entry:
        stored = specs[ref]
        return Entry(stored, current_status(stored, statuses.get(ref)))

    jobs: list[Entry] = []
    if kind.plural == "cronjobs" and output in (None, "wide"):
        from controller.cli._cronjobs import list_jobs

        jobs = list_jobs(store, scope.namespace)  # AGE and ACTIVE as of the start
    wide = output == "wide"

    def body(e: Entry) -> str:
        """What the view shows of an object, whatever the event: a change prints a line
        only when this differs from what was printed last."""
        if output in (None, "wide"):
            return "\0".join(_table_rows(kind.plural, [e], wide, show_ns, jobs)[1][0])
        return json.dumps(entry_document(e), sort_keys=True)

    def line(event: str, e: Entry) -> str:
        if output == "name":
            return name_line(kind, e.stored.namespace, e.stored.name)
        if output in ("json", "yaml"):
            doc = {"type": event, "object": entry_document(e)}
            if output == "json":
                return json.dumps(doc)
            return "---\n" + yaml.safe_dump(doc, sort_keys=False).rstrip("\n")
        return table_line([event, *body(e).split("\0")], widths)

    initial = sorted(ref for ref in specs if selected(specs[ref].object, scope.selector))
    widths: list[int] = []
    if output in (None, "wide"):
        head, rows = _table_rows(kind.plural, [entry(r) for r in initial], wide, show_ns, jobs)
        head = ["EVENT", *head]
        widths = column_widths(head, [["MODIFIED", *row] for row in rows] or [
            ["MODIFIED", *([""] * (len(head) - 1))]])  # the widest event word
        print(table_line(head, widths), flush=True)
    shown: dict[tuple[str, str], str] = {}  # what was last printed of each object in view

    def show(ref: tuple[str, str]) -> None:
        e = entry(ref)
        now = body(e)
        if shown.get(ref) == now:
            return
        event = "MODIFIED" if ref in shown else "ADDED"
        shown[ref] = now
        print(line(event, e), flush=True)

    def hide(ref: tuple[str, str], last: Entry) -> None:
        if shown.pop(ref, None) is not None:
            print(line("DELETED", last), flush=True)

    for ref in initial:
        show(ref)

    events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    spec_stream = store.watch(kind.plural, revision + 1,
                              known={s.key: s.mod_revision for s in objects})
    status_watch = _StatusWatch(store, status_prefix, revision + 1, events.put)

    def pump() -> None:
        for ev in spec_stream:  # ends once the stream is cancelled
            events.put(("spec", ev))

    threading.Thread(target=pump, name="get-watch-specs", daemon=True).start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                return 0
            try:
                item = events.get(timeout=wait)
            except queue.Empty:
                continue
            if item[0] == "error":
                raise CommandError(str(item[1]))
            if item[0] == "status":
                _tag, key, value, _rev = item
                ref = status_ref(key)
                if ref is None or not scope.holds(*ref):
                    continue
                statuses[ref] = None if value is None else decode(value)
                if ref in specs:
                    show(ref)
                continue
            ev = item[1]
            ref = (ev.namespace, ev.name)
            if not scope.holds(*ref):
                continue
            if ev.object is None:
                if ref in specs:
                    last = entry(ref)
                    del specs[ref]
                    hide(ref, last)
                continue
            specs[ref] = ev.object
            if selected(ev.object.object, scope.selector):
                show(ref)
            else:  # its labels no longer match: it leaves the view
                hide(ref, entry(ref))
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a watch ends
    finally:
        spec_stream.cancel()
        status_watch.cancel()


def _count(value: object) -> str:
    return "-" if value is None else str(value)


def _reason(entry: Entry) -> str:
    """Why the object is where it is: its problems if invalid, else the reason (and message)
    of the newest condition that holds."""
    if entry.invalid is not None:
        return "; ".join(str(p) for p in entry.invalid.problems)
    status = entry.status
    if status is None:
        return ""
    held = [c for c in status.conditions if c.status == "True"]
    if not held:
        return ""
    newest = max(held, key=lambda c: (c.last_transition_time is not None,
                                      c.last_transition_time))
    return f"{newest.reason}: {newest.message}" if newest.message else newest.reason


def _what(entry: Entry) -> str:
    from controller.api import CronJob, Job, Queue, Service, TaskTemplate

    obj = entry.stored.object
    template: TaskTemplate
    if isinstance(obj, Job | Queue | Service):
        template = obj.spec.template
    elif isinstance(obj, CronJob):
        template = obj.spec.job_template.spec.template
    else:
        return "-"
    parts = []
    if template.container is not None and template.container.image:
        parts.append(template.container.image)
    if template.command is not None:
        parts.append(template.command)
    elif template.args:
        parts.append(" ".join(template.args))
    text = " ".join(parts) or "-"
    return text if len(text) <= 40 else text[:37] + "..."


def _job_row(entry: Entry, wide: bool) -> list[str]:
    from controller.api import Job, JobStatus
    from controller.cli._output import age, between, human_duration

    obj = entry.stored.object
    status = entry.status if isinstance(entry.status, JobStatus) else None
    completions = obj.spec.completions if isinstance(obj, Job) else None
    succeeded = status.succeeded if status else (0 if completions else None)
    zero = None if entry.invalid else 0
    row = [
        entry.stored.name, entry.phase,
        f"{_count(succeeded)}/{_count(completions)}",
        _count(status.active if status else zero),
        _count(status.failed if status else zero),
        age(status.start_time if status else None),
    ]
    if wide:
        row += [
            _count(obj.spec.parallelism if isinstance(obj, Job) else None),
            _count(status.system_failures if status else zero),
            human_duration(between(status.start_time, status.completion_time)
                           if status else None),
            _what(entry), _reason(entry),
        ]
    return row


def _cronjob_row(entry: Entry, wide: bool, jobs: list[Entry] | None = None) -> list[str]:
    from controller.api import CronJob, CronJobStatus
    from controller.cli._cronjobs import owned_jobs, scheduled_time
    from controller.cli._output import age, until

    obj = entry.stored.object
    spec = obj.spec if isinstance(obj, CronJob) else None
    status = entry.status if isinstance(entry.status, CronJobStatus) else None
    owned = owned_jobs(jobs or [], entry.stored.namespace, entry.stored.name, entry.stored.uid)
    known: list[datetime | None] = [scheduled_time(j) for j in owned]
    if status is not None:
        known += [status.last_schedule_time, *(c.last_transition_time
                                                for c in status.conditions)]
    since = min((t for t in known if t is not None), default=None)
    if entry.invalid is not None:
        nxt = "<invalid>"
    elif spec is not None and spec.suspend:
        nxt = "<suspended>"
    else:
        nxt = until(status.next_schedule_time if status else None)
    row = [
        entry.stored.name, spec.schedule if spec else "-", spec.time_zone if spec else "-",
        str(spec.suspend).lower() if spec else "-",
        _count(len(status.active) if status else None if entry.invalid else 0),
        age(status.last_schedule_time if status else None), nxt, age(since),
    ]
    if wide:
        row += [
            entry.phase, str(spec.concurrency_policy) if spec else "-",
            age(status.last_successful_time if status else None),
            _count(sum(status.missed.values()) if status else None if entry.invalid else 0),
            _what(entry), _reason(entry),
        ]
    return row


def _queue_row(entry: Entry, wide: bool) -> list[str]:
    from controller.api import Queue, QueueStatus
    from controller.cli._output import age

    obj = entry.stored.object
    spec = obj.spec if isinstance(obj, Queue) else None
    status = entry.status if isinstance(entry.status, QueueStatus) else None
    zero = None if entry.invalid else 0
    row = [
        entry.stored.name, entry.phase, spec.source.type if spec else "-",
        _count(status.pending if status else zero),
        _count(status.in_flight if status else zero),
        _count(status.succeeded if status else zero),
        _count(status.dead_lettered if status else zero),
        _coarse(status.oldest_pending_seconds if status else None),
        _count(status.active if status else zero),
    ]
    if wide:
        row += [
            _count(spec.batch_size if spec else None),
            _count(spec.max_concurrent if spec else None),
            age(status.last_poll_time if status else None),
            _what(entry), _reason(entry),
        ]
    return row


def _coarse(seconds: int | None) -> str:
    """An age in its largest whole unit (45s, 3m, 2h, 4d): how long the oldest message has
    waited, readable at a glance; '-' when nothing waits."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(0, seconds)}s"


def _service_row(entry: Entry, wide: bool) -> list[str]:
    from controller.api import Service, ServiceStatus
    from controller.cli._output import age, human_duration

    obj = entry.stored.object
    spec = obj.spec if isinstance(obj, Service) else None
    status = entry.status if isinstance(entry.status, ServiceStatus) else None
    zero = None if entry.invalid else 0
    healthy = status.healthy if status else zero
    known = [c.last_transition_time for c in status.conditions] if status else []
    if status is not None:
        known.append(status.rollout_started_at)
    row = [
        entry.stored.name, entry.phase,
        f"{_count(healthy)}/{_count(spec.instances if spec else None)}",
        _count(status.running if status else zero), _count(healthy),
        _count(status.updated if status else zero),
        age(min((t for t in known if t is not None), default=None)),
    ]
    if wide:
        backoff = "-"
        if status is not None and status.consecutive_failures:
            backoff = human_duration(status.backoff_delay_seconds)
        row += [status.version if status and status.version else "-",
                _count(status.unavailable if status else zero), backoff,
                _what(entry), _service_reason(entry)]
    return row


def _service_reason(entry: Entry) -> str:
    """What explains a Service's phase: a stuck rollout's condition, a rollout's progress, or
    (Degraded) its availability; otherwise what `_reason` says."""
    from controller.api import ServiceStatus

    status = entry.status if isinstance(entry.status, ServiceStatus) else None
    if entry.invalid is not None or status is None:
        return _reason(entry)
    progressing = status.condition("Progressing")
    available = status.condition("Available")
    pick = None
    if progressing is not None and (progressing.status == "False"
                                    or status.phase == "Deploying"):
        pick = progressing
    elif status.phase == "Degraded" and available is not None:
        pick = available
    if pick is None:
        return _reason(entry)
    return f"{pick.reason}: {pick.message}" if pick.message else pick.reason


_COLUMNS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], Row]] = {
    "jobs": ((("NAME", "PHASE", "COMPLETIONS", "ACTIVE", "FAILED", "AGE"),
              ("PARALLELISM", "SYSTEM-FAILURES", "DURATION", "COMMAND", "REASON")), _job_row),
    "cronjobs": ((("NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE"),
                  ("PHASE", "CONCURRENCY", "LAST-SUCCESS", "MISSED", "COMMAND", "REASON")),
                 _cronjob_row),
    "queues": ((("NAME", "PHASE", "SOURCE", "PENDING", "IN-FLIGHT", "SUCCEEDED", "DEAD",
                 "OLDEST", "ACTIVE"),
                ("BATCH", "MAX-CONCURRENT", "LAST-POLL", "COMMAND", "REASON")), _queue_row),
    "services": ((("NAME", "PHASE", "INSTANCES", "RUNNING", "HEALTHY", "UPDATED", "AGE"),
                  ("VERSION", "UNAVAILABLE", "BACKOFF", "COMMAND", "REASON")), _service_row),
}
