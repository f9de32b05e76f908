"""`docket describe KIND NS/NAME`: one object in full — what it asks for, where it stands, why,
and what each of its task attempts did.

Read by a person debugging a Job, so times are absolute UTC (comparable across lines and with
logs) and executions are in the order they happened. A CronJob runs no task itself: in place
of executions it lists the Jobs it owns (by owner reference and uid, as the controller counts
them) with their phases, newest first, and its status says when it last ran, when it runs next
and how many slots it missed, by reason.

A Queue's task attempts are grouped by batch: its status' exact counts (pending, in flight,
succeeded, dead-lettered), the recent finished batches it keeps in status (their records are
deleted once done), and its open batches from their execution records — the latest attempt of
each, with how many messages it carries and how many attempts it took.

A Service shows what it keeps and how: instances, version (the digest of template and health
check, as the controller computes it), ports, health check, upgrade strategy, kill selection,
crash-loop backoff and unreachable strategy; its status' counts, rollout (started, last
progress) and backoff delay; then its instances, one line per instance that may be running
(from its execution record, with the host and ports of its endpoint in status): index, task,
state, host, ports, health, version (old ones marked) and start; and its ended instances, with
their exit codes and reasons, as executions.
"""

from __future__ import annotations

import argparse
import math
from datetime import datetime
from typing import TYPE_CHECKING

from controller.cli._output import (
    KIND_CHOICES,
    add_namespace_argument,
    add_store_arguments,
    guarded,
)

if TYPE_CHECKING:
    from controller.api import (
        CronJobStatus,
        ExecutionRecord,
        JobSpec,
        Queue,
        QueueSpec,
        QueueStatus,
        Service,
        ServiceStatus,
        TaskTemplate,
    )
    from controller.cli._output import Entry
    from controller.store import Keys

NAME = "describe"
HELP = ("Show one object in detail: spec summary, status, conditions and recent executions "
        "(a CronJob: its recent Jobs; a Service: its instances).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND", help=f"One of: {', '.join(KIND_CHOICES)}, secret.")
    parser.add_argument("ref", metavar="NS/NAME", help="The object: NS/NAME, or NAME with -n.")
    add_namespace_argument(parser)
    parser.add_argument("--executions", type=int, default=20, metavar="N",
                        help="Show the N most recent executions (a Queue: open batches; a "
                             "Service: ended instances); 0 for all.")
    parser.add_argument("--jobs", type=int, default=10, metavar="N",
                        help="CronJob: show its N most recent Jobs; 0 for all.")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from controller.cli._output import get_entry, open_store, resolve_kind, resolve_name
    from controller.cli._secrets import describe as describe_secret
    from controller.cli._secrets import is_secret

    if is_secret(args.kind):  # keys and sizes, never values
        return describe_secret(args)
    kind = resolve_kind(args.kind)
    namespace, name = resolve_name(args.ref, args.namespace)
    jobs: list[Entry] | None = None
    with open_store(args) as store:
        entry = get_entry(store, kind, namespace, name)
        records = [s.record for s in store.list_executions(kind.plural, namespace, name)]
        key = entry.stored.key
        if kind.plural == "cronjobs":
            from controller.cli._cronjobs import list_jobs, owned_jobs

            jobs = owned_jobs(list_jobs(store, namespace), namespace, name, entry.stored.uid)
    print(render(entry, records, key=key, limit=args.executions, jobs=jobs,
                 jobs_limit=args.jobs, keys=store.keys))
    return 0


def render(entry: Entry, records: list[ExecutionRecord], *, key: str, limit: int = 20,
           jobs: list[Entry] | None = None, jobs_limit: int = 10,
           keys: Keys | None = None) -> str:
    """`jobs`: a CronJob's Jobs, newest first; shown instead of executions when given.
    `keys`: the store's key layout (where a Queue's messages are); /docket when not given."""
    from controller.api import CronJob, Job, Queue, QueueStatus, Service
    from controller.store import Keys

    stored = entry.stored
    obj = stored.object
    lines = [
        f"Name:       {stored.name}",
        f"Namespace:  {stored.namespace}",
        f"Kind:       {obj.kind}",
        f"Key:        {key} (uid {stored.uid}, revision {stored.mod_revision})",
    ]
    if entry.invalid is not None:
        lines.append("Spec:       invalid, not acted on:")
        lines += [f"  {p}" for p in entry.invalid.problems]
    else:
        assert isinstance(obj, Job | CronJob | Queue | Service)
        if obj.metadata.labels:
            lines.append("Labels:     " + ", ".join(
                f"{k}={v}" for k, v in sorted(obj.metadata.labels.items())))
        lines.append("Spec:")
        lines += [f"  {line}" for line in _spec_lines(obj, entry, keys or Keys())]
    lines.append("Status:")
    lines += [f"  {line}" for line in _status_lines(entry)]
    lines.append("Conditions:")
    lines.append(_conditions(entry))
    if jobs is not None:
        lines.append(_jobs(jobs, jobs_limit))
    elif obj.kind == "Queue":
        status = entry.status if isinstance(entry.status, QueueStatus) else None
        lines.append(_recent_batches(status))
        lines.append(_open_batches(records, stored.uid, limit))
    elif obj.kind == "Service":
        lines += _service_instances(entry, records, limit)
    else:
        lines.append(_executions(records, limit))
    return "\n".join(lines)


def _template_lines(t: TaskTemplate) -> list[str]:
    out = []
    if t.command is not None:
        out.append(f"Command:      {t.command}")
    elif t.args:
        out.append("Args:         " + " ".join(t.args))
    if t.container is not None:
        image = f", image {t.container.image}" if t.container.image else ""
        out.append(f"Container:    {t.container.type}{image}")
    r = t.resources
    out.append(f"Resources:    cpus {r.cpus:g}, mem {r.mem:g} MiB, disk {r.disk:g} MiB"
               + (f", gpus {r.gpus}" if r.gpus else "") + (f", ports {r.ports}" if r.ports else ""))
    if t.constraints:
        out.append("Constraints:  " + "; ".join(
            " ".join(x for x in (c.field, str(c.operator), c.value) if x) for c in t.constraints))
    if t.env:
        out.append("Env:          " + ", ".join(sorted(t.env)))
    return out


def _retry_lines(spec: JobSpec | QueueSpec) -> list[str]:
    b = spec.backoff
    timeout = f"{spec.task_timeout_seconds:g}s" if spec.task_timeout_seconds else "none"
    return [
        f"Retries:      backoffLimit {spec.backoff_limit}, systemRetryLimit "
        f"{spec.system_retry_limit}, backoff {b.initial_seconds:g}s x{b.factor:g} "
        f"up to {b.max_seconds:g}s",
        f"Task timeout: {timeout}",
    ]


def _spec_lines(obj: object, entry: Entry, keys: Keys) -> list[str]:
    from controller.api import CronJob, Job, Queue, Service

    if isinstance(obj, Job):
        s = obj.spec
        out = _template_lines(s.template)
        out.append(f"Completions:  {s.completions} ({s.completion_mode}), "
                   f"parallelism {s.parallelism}")
        out += _retry_lines(s)
        extra = []
        if s.active_deadline_seconds:
            extra.append(f"activeDeadlineSeconds {s.active_deadline_seconds:g}")
        if s.start_at:
            extra.append(f"startAt {s.start_at.isoformat()}")
        if s.ttl_seconds_after_finished is not None:
            extra.append(f"ttlSecondsAfterFinished {s.ttl_seconds_after_finished}")
        if s.suspend:
            extra.append("suspended")
        if extra:
            out.append("Limits:       " + ", ".join(extra))
        return out
    if isinstance(obj, CronJob):
        c = obj.spec
        out = [f"Schedule:     {c.schedule} ({c.time_zone}), concurrency {c.concurrency_policy}"
               + (", suspended" if c.suspend else "")]
        deadline = (f"{c.starting_deadline_seconds}s after its slot"
                    if c.starting_deadline_seconds else "none")
        out.append(f"Deadline:     startingDeadlineSeconds {deadline}")
        out.append(f"History:      keep {c.successful_jobs_history_limit} succeeded, "
                   f"{c.failed_jobs_history_limit} failed")
        job = c.job_template.spec
        out += _template_lines(job.template)
        out.append(f"Completions:  {job.completions}, parallelism {job.parallelism}")
        out += _retry_lines(job)
        return out
    if isinstance(obj, Queue):
        return _queue_spec_lines(obj, entry, keys)
    if isinstance(obj, Service):
        return _service_spec_lines(obj)
    return []


def _queue_spec_lines(queue: Queue, entry: Entry, keys: Keys) -> list[str]:
    from controller.cli._queues import dead_letter_text, source_text

    q = queue.spec
    ns, name = entry.stored.namespace, entry.stored.name
    poll = (f", polled every {q.poll_interval_seconds:g}s" if q.source.type == "redis"
            else ", watched")
    return [
        f"Source:       {source_text(queue, keys.queue_items_prefix(ns, name))}{poll}",
        f"Batches:      up to {q.batch_size} message(s) and {q.max_batch_bytes} bytes each "
        f"(separator {q.batch_separator!r}), max concurrent {q.max_concurrent}"
        + (", suspended" if q.suspend else ""),
        f"Dead letter:  {dead_letter_text(queue, keys.queue_dead_prefix(ns, name))}",
        *_template_lines(q.template), *_retry_lines(q),
    ]


def _status_lines(entry: Entry) -> list[str]:
    from controller.api import CronJobStatus, JobStatus, QueueStatus, ServiceStatus
    from controller.cli._output import between, human_duration, timestamp

    status = entry.status
    if status is None:
        note = "" if entry.invalid is not None else " (the controller has not written any yet)"
        return [f"Phase:        {entry.phase}{note}"]
    out = [f"Phase:        {entry.phase}"]
    if isinstance(status, JobStatus):
        out.append(f"Tasks:        {status.active} active, {status.succeeded} succeeded, "
                   f"{status.failed} failed, {status.system_failures} system failures")
        out.append(f"Started:      {timestamp(status.start_time)}")
        out.append(f"Completed:    {timestamp(status.completion_time)}")
        out.append(f"Duration:     "
                   f"{human_duration(between(status.start_time, status.completion_time))}")
        if status.completed_indexes:
            out.append("Completed indexes: " + ",".join(map(str, status.completed_indexes)))
    elif isinstance(status, CronJobStatus):
        out += _cronjob_status_lines(status)
    elif isinstance(status, QueueStatus):
        out += _queue_status_lines(status)
    elif isinstance(status, ServiceStatus):
        out += _service_status_lines(status)
    else:
        skip = {"phase", "conditions", "observed_revision", "uid"}
        for field, value in status.model_dump(exclude_none=True).items():
            if field not in skip:
                out.append(f"{field}: {value}")
    out.append(f"Observed:     spec revision {status.observed_revision or '-'}")
    return out


def _cronjob_status_lines(status: CronJobStatus) -> list[str]:
    from controller.cli._output import age, timestamp, until

    def ago(t: datetime | None) -> str:
        return f"{timestamp(t)} ({age(t)} ago)" if t is not None else "-"

    nxt = status.next_schedule_time
    missed = ", ".join(f"{reason} {n}" for reason, n in sorted(status.missed.items()) if n)
    return [
        f"Active Jobs:  {', '.join(status.active) or '<none>'}",
        f"Last slot:    {ago(status.last_schedule_time)}",
        f"Last success: {ago(status.last_successful_time)}",
        f"Next slot:    {f'{timestamp(nxt)} ({until(nxt)})' if nxt is not None else '-'}",
        f"Accounted:    every slot up to {timestamp(status.scheduled_through)}",
        f"Missed:       {missed or 'none'}",
    ]


def _queue_status_lines(status: QueueStatus) -> list[str]:
    from controller.cli._output import human_duration, timestamp

    oldest = "-"
    if status.oldest_pending_seconds is not None:
        oldest = (f"{human_duration(status.oldest_pending_seconds)} (seen first "
                  f"{timestamp(status.oldest_pending_since)})")
    out = [
        f"Messages:     {status.pending} pending, {status.in_flight} in flight, "
        f"{status.succeeded} succeeded, {status.dead_lettered} dead-lettered",
        f"Tasks:        {status.active} active, {status.failed_attempts} failed attempts",
        f"Oldest:       {oldest}",
        f"Next batch:   {status.next_batch}",
    ]
    if status.claiming:
        out.append("Claiming:     " + ", ".join(
            f"batch {b} ({state})" for b, state in sorted(status.claiming.items())))
    if status.last_poll_time is not None:
        out.append(f"Last poll:    {timestamp(status.last_poll_time)}")
    return out


def _recent_batches(status: QueueStatus | None) -> str:
    """The last finished batches the controller keeps in status, newest first."""
    from controller.cli._output import table, timestamp

    recent = list(reversed(status.recent_batches)) if status is not None else []
    if not recent:
        return "Recent batches:\n  <none>"
    return f"Recent batches ({len(recent)}, newest first):\n" + table(
        ("BATCH", "TASK", "MESSAGES", "RESULT", "REASON", "ATTEMPTS", "EXIT-CODE",
         "FINISHED"),
        [(str(b.batch), b.task_id, str(b.messages), b.result, b.reason or "-",
          str(b.attempts), "-" if b.exit_code is None else str(b.exit_code),
          timestamp(b.finished_at)) for b in recent], indent="  ")


def _open_batches(records: list[ExecutionRecord], uid: int, limit: int) -> str:
    """A Queue's batches that still have execution records (running, waiting for a retry,
    or being acked or dead-lettered): the latest attempt of each, oldest batch first."""
    from controller.cli._output import table, timestamp
    from controller.reconcile.taskid import parse_task_id

    batches: dict[int, list[ExecutionRecord]] = {}
    earlier = 0
    for r in records:
        parts = parse_task_id(r.task_id)
        if parts is not None and parts.uid != uid:
            earlier += 1  # of a Queue deleted before this one was created: being cleaned up
            continue
        batches.setdefault(r.index, []).append(r)
    note = (f"  ({earlier} execution record(s) of an earlier Queue of this name, being "
            "cleaned up)") if earlier else ""
    if not batches:
        return "Open batches:\n  <none>" + ("\n" + note if note else "")
    indexes = sorted(batches)
    shown = indexes[-limit:] if limit > 0 else indexes
    title = (f"Open batches ({len(indexes)}):" if len(shown) == len(indexes)
             else f"Open batches (latest {len(shown)} of {len(indexes)}):")
    rows = []
    for index in shown:
        attempts = batches[index]
        r = max(attempts, key=lambda x: x.attempt)
        count = r.message_count if r.message_count is not None else len(r.message_ids or ())
        rows.append((str(index), r.task_id, str(count), r.state,
                     r.kill_reason or r.reason or "-",
                     "-" if r.exit_code is None else str(r.exit_code), str(len(attempts)),
                     r.hostname or "-", timestamp(r.started_at)))
    text = title + "\n" + table(
        ("BATCH", "TASK", "MESSAGES", "STATE", "REASON", "EXIT-CODE", "ATTEMPTS", "HOST",
         "STARTED"), rows, indent="  ")
    return text + ("\n" + note if note else "")


def _jobs(jobs: list[Entry], limit: int) -> str:
    """A CronJob's Jobs (given newest first), with how each was started and where it is."""
    from controller.api import Job, JobStatus
    from controller.cli._cronjobs import is_manual, scheduled_time
    from controller.cli._output import between, human_duration, table, timestamp

    if not jobs:
        return "Jobs:\n  <none>"
    shown = jobs[:limit] if limit > 0 else jobs
    title = (f"Jobs ({len(jobs)}, newest first):" if len(shown) == len(jobs)
             else f"Jobs (latest {len(shown)} of {len(jobs)}, newest first):")
    rows = []
    for entry in shown:
        job = entry.stored.object
        status = entry.status if isinstance(entry.status, JobStatus) else None
        completions = job.spec.completions if isinstance(job, Job) else None
        rows.append((
            entry.stored.name, entry.phase,
            f"{status.succeeded if status else 0}/{completions if completions else '-'}",
            "manual" if is_manual(entry) else "schedule", timestamp(scheduled_time(entry)),
            timestamp(status.completion_time if status else None),
            human_duration(between(status.start_time, status.completion_time)
                           if status else None)))
    return title + "\n" + table(
        ("NAME", "PHASE", "COMPLETIONS", "TRIGGER", "SCHEDULED", "FINISHED", "DURATION"),
        rows, indent="  ")


def _conditions(entry: Entry) -> str:
    from controller.cli._output import table, timestamp

    conditions = entry.status.conditions if entry.status is not None else []
    if not conditions:
        return "  <none>"
    ordered = sorted(conditions, key=lambda c: (c.last_transition_time is None,
                                                c.last_transition_time))
    return table(("TYPE", "STATUS", "REASON", "LAST-TRANSITION", "MESSAGE"),
                 [(c.type, c.status, c.reason or "-", timestamp(c.last_transition_time),
                   c.message or "-") for c in ordered], indent="  ")


def _when(record: ExecutionRecord) -> tuple[bool, object, int, int]:
    first = record.submitted_at or record.started_at or record.finished_at
    return (first is None, first, record.index, record.attempt)


def _executions(records: list[ExecutionRecord], limit: int, what: str = "Executions") -> str:
    from controller.cli._output import human_duration, table, timestamp

    ordered = sorted(records, key=_when)
    shown = ordered[-limit:] if limit > 0 else ordered
    title = (f"{what} ({len(records)}):" if len(shown) == len(records)
             else f"{what} (latest {len(shown)} of {len(records)}):")
    if not records:
        return f"{what}:\n  <none>"
    rows = []
    for r in shown:
        duration = r.duration_seconds
        if duration is None and r.started_at and r.finished_at:
            duration = (r.finished_at - r.started_at).total_seconds()
        reason = r.kill_reason or r.reason or "-"
        rows.append((r.task_id, str(r.index), str(r.attempt), r.state, reason,
                     "-" if r.exit_code is None else str(r.exit_code), r.hostname or "-",
                     timestamp(r.started_at), timestamp(r.finished_at),
                     human_duration(duration)))
    return title + "\n" + table(
        ("TASK-ID", "INDEX", "ATTEMPT", "STATE", "REASON", "EXIT", "HOST", "STARTED",
         "FINISHED", "DURATION"), rows, indent="  ")


# --- Services -----------------------------------------------------------------------------------
def _seconds(value: float) -> str:
    return f"{value:g}s"


def _service_spec_lines(service: Service) -> list[str]:
    from controller.reconcile.service import service_version

    s = service.spec
    t = s.template
    out = [f"Instances:    {s.instances} (kill selection {s.kill_selection})",
           f"Version:      {service_version(s)} (digest of the template and health check)",
           *_template_lines(t)]
    ports = [f"{p.name} (PORT{i}, {p.protocol}"
             + (f", container port {p.container_port})" if p.container_port else ")")
             for i, p in enumerate(t.ports)]
    mapped = len(t.container.port_mappings) if t.container is not None else 0
    if mapped:
        ports.append(f"{mapped} port mapping(s)")
    if t.resources.ports:
        ports.append(f"{t.resources.ports} unnamed")
    out.append("Ports:        " + (", ".join(ports) or "none"))
    if t.labels:
        out.append("Task labels:  " + ", ".join(f"{k}={v}" for k, v in sorted(t.labels.items())))
    out.append(f"Health check: {_health_check_text(service)}")
    u = s.upgrade_strategy
    floor = math.ceil(s.instances * u.minimum_health_capacity - 1e-9)
    ceiling = math.floor(s.instances * (1 + u.maximum_over_capacity) + 1e-9)
    out.append(f"Upgrade:      minimumHealthCapacity {u.minimum_health_capacity:g} (at least "
               f"{floor} healthy), maximumOverCapacity {u.maximum_over_capacity:g} (at most "
               f"{ceiling} instances); progress deadline {_seconds(s.progress_deadline_seconds)}"
               f"; old instances killed with {_seconds(t.kill_grace_period_seconds)} grace")
    out.append(f"Backoff:      {_seconds(s.backoff_seconds)} x{s.backoff_factor:g} per "
               f"consecutive failure, up to {_seconds(s.max_launch_delay_seconds)}")
    un = s.unreachable_strategy
    out.append(f"Unreachable:  replaced after {_seconds(un.inactive_after_seconds)}, written off "
               f"(killed if it returns) after {_seconds(un.expunge_after_seconds)}")
    return out


def _health_check_text(service: Service) -> str:
    hc = service.spec.health_check
    if hc is None:
        return "none (an instance is healthy once RUNNING)"
    if hc.type == "COMMAND":
        probe = f"COMMAND {hc.command!r}"
    else:
        port = hc.port_name if hc.port_name is not None else f"PORT{hc.port_index or 0}"
        probe = (f"HTTP GET {hc.path} on port {port}" if hc.type == "HTTP"
                 else f"TCP on port {port}")
    killed = (f"killed after {hc.max_consecutive_failures} failures in a row"
              if hc.max_consecutive_failures else "never killed")
    return (f"{probe}; every {_seconds(hc.interval_seconds)} (timeout "
            f"{_seconds(hc.timeout_seconds)}) from {_seconds(hc.delay_seconds)} after the start;"
            f" failures ignored for {_seconds(hc.grace_period_seconds)} until the first "
            f"success; {killed}")


def _service_status_lines(status: ServiceStatus) -> list[str]:
    from controller.cli._output import age, human_duration, timestamp, until

    def ago(t: datetime | None) -> str:
        return f"{timestamp(t)} ({age(t)} ago)" if t is not None else "-"

    out = [f"Instances:    {status.instances} wanted, {status.running} running, "
           f"{status.healthy} healthy, {status.updated} updated, {status.unavailable} "
           "unavailable",
           f"Version:      {status.version or '-'}"]
    if status.rollout_started_at is not None:
        out.append(f"Rollout:      started {ago(status.rollout_started_at)}, last progress "
                   f"{ago(status.last_progress_at)}")
    else:
        out.append("Rollout:      none in progress")
    if status.consecutive_failures:
        nxt = status.next_launch_at
        when = (f"; next launch not before {timestamp(nxt)} ({until(nxt)})" if nxt is not None
                else "; next launch now")
        out.append(f"Backoff:      {human_duration(status.backoff_delay_seconds)} after "
                   f"{status.consecutive_failures} consecutive failure(s){when}")
    else:
        out.append("Backoff:      none (no recent failure)")
    return out


def _service_instances(entry: Entry, records: list[ExecutionRecord], limit: int) -> list[str]:
    """The instances that may be running (one line each, by index), then the ended ones."""
    from controller.api import Endpoint, Service, ServiceStatus
    from controller.cli._output import table, timestamp
    from controller.reconcile.taskid import parse_task_id
    from controller.reconcile.tasks import TERMINAL_STATES

    stored = entry.stored
    service = stored.object if isinstance(stored.object, Service) else None
    status = entry.status if isinstance(entry.status, ServiceStatus) else None
    names = [p.name for p in service.spec.template.ports] if service is not None else []
    has_check = service is not None and service.spec.health_check is not None
    endpoints: dict[str, Endpoint] = {e.task_id: e for e in status.endpoints} if status else {}
    current, earlier = [], 0
    for r in records:
        parts = parse_task_id(r.task_id)
        if parts is not None and parts.uid != stored.uid:
            earlier += 1  # of a Service deleted before this one was created
        else:
            current.append(r)
    live = [r for r in current if r.state not in TERMINAL_STATES
            or (r.state == "TASK_UNREACHABLE" and r.kill_reason is None)]
    ended = [r for r in current if r not in live]

    def ports(found: dict[str, int]) -> str:
        return ",".join(f"{k}={v}" for k, v in found.items()) or "-"

    def version(v: str | None) -> str:
        if v is None:
            return "-"
        return f"{v} (old)" if status is not None and status.version and v != status.version \
            else v

    rows = []
    for r in sorted(live, key=lambda x: (x.index, x.attempt)):
        ep = endpoints.get(r.task_id)
        found = ep.ports if ep is not None else {
            (names[i] if i < len(names) else f"PORT{i}"): p
            for i, p in enumerate(r.host_ports or ())}
        if not has_check:
            health = "-"  # none: healthy once RUNNING
        elif r.healthy is None:
            health = "unknown"  # not reported yet (or within the grace period)
        else:
            health = "healthy" if r.healthy else "unhealthy"
        state = r.state + (f" ({r.kill_reason})" if r.kill_reason else "")
        rows.append((str(r.index), r.task_id, state, r.hostname or (ep.host if ep else None)
                     or "-", ports(found), health, version(r.version), timestamp(r.started_at)))
    known = {r.task_id for r in current}
    for ep in sorted(endpoints.values(), key=lambda e: e.index):
        if ep.task_id not in known:  # its record was read before the status was written
            health = "-" if ep.healthy is None else ("healthy" if ep.healthy else "unhealthy")
            rows.append((str(ep.index), ep.task_id, "TASK_RUNNING (status)", ep.host or "-",
                         ports(ep.ports), health, version(ep.version), "-"))
    out = [f"Instances ({len(rows)}):\n" + table(
        ("INDEX", "TASK", "STATE", "HOST", "PORTS", "HEALTH", "VERSION", "STARTED"), rows,
        indent="  ") if rows else "Instances:\n  <none>"]
    out.append(_executions(ended, limit, "Ended instances"))
    if earlier:
        out.append(f"  ({earlier} execution record(s) of an earlier Service of this name, "
                   "being cleaned up)")
    return out
