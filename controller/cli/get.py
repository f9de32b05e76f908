"""`docket get KIND [-n NS | -A] [-o wide|json|yaml]`: objects with their status, kubectl-like.

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
import functools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from controller.cli._output import (
    KIND_CHOICES,
    add_namespace_argument,
    add_store_arguments,
    guarded,
)

if TYPE_CHECKING:
    from controller.cli._output import Entry

NAME = "get"
HELP = "List jobs, cronjobs, queues or services with their status."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND",
                        help=f"What to list: {', '.join(KIND_CHOICES)}.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="Only these objects (NAME or NS/NAME).")
    add_namespace_argument(parser)
    parser.add_argument("-A", "--all-namespaces", action="store_true",
                        help="List objects of every namespace.")
    parser.add_argument("-o", "--output", choices=("wide", "json", "yaml"), default=None,
                        help="wide: more columns; json, yaml: the objects with their status "
                             "(default: a table).")
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
        open_store,
        print_documents,
        resolve_kind,
        resolve_name,
        table,
    )

    kind = resolve_kind(args.kind)
    if args.all_namespaces and args.namespace:
        raise CommandError("give either -n NAMESPACE or -A, not both")
    namespace = None if args.all_namespaces else (args.namespace or "default")
    jobs: list[Entry] = []
    with open_store(args) as store:
        if args.names:
            refs = [resolve_name(ref, args.namespace) for ref in args.names]
            entries = [get_entry(store, kind, ns, name) for ns, name in refs]
            namespace = None
        else:
            entries = list_entries(store, kind, namespace)
        if kind.plural == "cronjobs" and entries and args.output not in ("json", "yaml"):
            from controller.cli._cronjobs import list_jobs

            jobs = list_jobs(store, namespace)
    if args.output in ("json", "yaml"):
        docs = [entry_document(e) for e in entries]
        print_documents(docs, args.output, as_list=len(args.names) != 1)
        return 0
    if not entries:
        where = "any namespace" if args.all_namespaces else \
            f"namespace {args.namespace or 'default'}"
        print(f"No {kind.plural} found in {where}.")
        return 0
    wide = args.output == "wide"
    headers, row = _COLUMNS[kind.plural]
    if kind.plural == "cronjobs":
        row = functools.partial(_cronjob_row, jobs=jobs)
    head = list(headers[0] if not wide else headers[0] + headers[1])
    rows = [row(e, wide) for e in entries]
    show_ns = args.all_namespaces or len({e.stored.namespace for e in entries}) > 1
    if show_ns:
        head.insert(0, "NAMESPACE")
        rows = [[e.stored.namespace, *r] for e, r in zip(entries, rows, strict=True)]
    print(table(head, rows))
    return 0


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
