"""The invariants every chaos scenario checks at its end (issue 14), as pure functions of the
evidence (tests/chaos/evidence.py: what Mesos, the queue sources and etcd hold) and of what the
workload asked for. Each violation names the invariant, the object, the id (task, message or
slot) and what is wrong, so a failing run says where to look.

- no task id launched twice (the master's launch log);
- no Job index succeeded twice, every index succeeded, and Docket counted each once;
- no cron slot run twice, none missed while a controller was up (Jepsen's Chronos checker
  counts both): a slot may be skipped only when a later slot of the same CronJob also fell in
  one window of unavailability (then only the most recent runs), or was just before it;
- no queue message lost or acked without a successful task, none succeeded twice, none left
  unprocessed, none dead-lettered without a failure or after a success;
- every Service back to its instances, healthy, one live instance per slot;
- every status update recorded (an execution record that still exists says what Mesos says).

A second success is excused only when one of the two tasks was on a partitioned agent
(TASK_UNREACHABLE): Mesos cannot stop a task it cannot reach from finishing.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.localmesos import TERMINAL_STATES
from controller.reconcile.schedule import slot_id, slot_instant
from controller.reconcile.taskid import parse_task_id
from tests.chaos.evidence import Evidence, MesosTask
from tests.chaos.workload import Expected

LIVE_STATES = {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"}
# An update younger than this may still be on its way to etcd: not judged.
SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class Violation:
    invariant: str
    object: str  # "Job default/idx-0"
    id: str  # task id, message id, or slot
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.invariant}: {self.object} {self.id}" + (f": {self.detail}"
                                                               if self.detail else "")


@dataclass
class Report:
    scenario: str
    seed: int
    length: str  # "short", or "full (M min)"
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "seed": self.seed, "length": self.length,
                "ok": self.ok, "figures": self.figures,
                "violations": [str(v) for v in self.violations]}

    def explain(self, limit: int = 40) -> str:
        lines = [f"{self.scenario} (seed {self.seed}, {self.length}): "
                 f"{len(self.violations)} violation(s)"]
        lines += [f"  {v}" for v in self.violations[:limit]]
        if len(self.violations) > limit:
            lines.append(f"  ... and {len(self.violations) - limit} more")
        return "\n".join(lines)


def _tasks_of(ev: Evidence, kind: str, ns: str, name: str) -> list[MesosTask]:
    head = f"{kind}.{ns}.{name}."
    return [t for t in ev.tasks.values() if t.task_id.startswith(head)]


def _second_success_excused(finished: list[MesosTask]) -> bool:
    return sum(t.was_unreachable for t in finished) >= len(finished) - 1


def check_launches(ev: Evidence) -> list[Violation]:
    out = []
    for task_id, n in collections.Counter(ev.launches).items():
        if n > 1:
            out.append(Violation("task-launched-twice", _owner(task_id), task_id,
                                 f"launched {n} times"))
    return out


def _owner(task_id: str) -> str:
    parts = parse_task_id(task_id)
    if parts is None:
        return "(foreign task)"
    return f"{parts.owner.kind} {parts.owner.namespace}/{parts.owner.name}"


def check_jobs(expected: Expected, ev: Evidence,
               statuses: dict[str, tuple[int, list[int]]]) -> list[Violation]:
    """Every expected Job and every Job a CronJob created. `statuses`: name -> Docket's
    (succeeded, completedIndexes), the count checked against what Mesos says."""
    ns = expected.namespace
    out: list[Violation] = []
    wanted = {name: (j.completions, j.indexed) for name, j in expected.jobs.items()}
    for name, job in ev.jobs.items():
        if job.owner is not None and name not in wanted:
            wanted[name] = (1, False)
    for name, (completions, indexed) in sorted(wanted.items()):
        obj = f"Job {ns}/{name}"
        job_obj = ev.jobs.get(name)
        if job_obj is None:
            out.append(Violation("job-missing", obj, name, "not in etcd"))
            continue
        by_index: dict[int, list[MesosTask]] = collections.defaultdict(list)
        for task in _tasks_of(ev, "job", ns, name):
            parts = parse_task_id(task.task_id)
            if parts is None or parts.uid != job_obj.uid:
                continue
            if task.state == "TASK_FINISHED":
                by_index[parts.index].append(task)
        for index, finished in sorted(by_index.items()):
            if index >= completions:
                out.append(Violation("job-index-out-of-range", obj, f"index {index}",
                                     f"{completions} completions"))
            if len(finished) > 1 and not _second_success_excused(finished):
                out.append(Violation("job-index-succeeded-twice", obj, f"index {index}",
                                     ", ".join(t.task_id for t in finished)))
        missing = [i for i in range(completions) if not by_index.get(i)]
        if missing:
            out.append(Violation("job-index-never-succeeded", obj,
                                 f"index {','.join(map(str, missing))}"))
        counted = statuses.get(name)
        expect = (completions, list(range(completions)) if indexed else [])
        if counted is not None and counted != expect:
            out.append(Violation("job-counted-wrong", obj, f"uid {job_obj.uid}",
                                 f"status says succeeded={counted[0]} indexes={counted[1]}, "
                                 f"expected {expect[0]}"))
    return out


def cron_slots(every: int, after: datetime, until: datetime) -> list[datetime]:
    """The slots of "*/every * * * *" in (after, until]."""
    first = slot_id(after) + 1
    return [slot_instant(s) for s in range(first, slot_id(until) + 1)
            if slot_instant(s).minute % every == 0]


def check_crons(expected: Expected, ev: Evidence, lag: timedelta) -> list[Violation]:
    """`lag`: how long (injected time) a controller may take to act on a due slot; the slots
    checked end one minute plus `lag` before the evidence was collected."""
    assert ev.now is not None
    ns = expected.namespace
    out: list[Violation] = []
    until = ev.now - timedelta(minutes=1) - lag
    windows = [(w.start, w.end or ev.now, w.what) for w in ev.windows]
    for name, cron in sorted(expected.crons.items()):
        obj = f"CronJob {ns}/{name}"
        slots = cron_slots(cron.every_minutes, cron.created, until)
        allowed = {f"{name}-{slot_id(s)}" for s in cron_slots(cron.every_minutes, cron.created,
                                                              ev.now + timedelta(minutes=1))}
        for other in ev.jobs.values():
            if other.owner == name and other.name not in allowed:
                out.append(Violation("cron-unexpected-slot", obj, other.name,
                                     "a Job for no slot of the schedule"))
        for n, slot in enumerate(slots):
            job_name = f"{name}-{slot_id(slot)}"
            where = f"slot {slot.isoformat()} ({job_name})"
            job = ev.jobs.get(job_name)
            uids = {p.uid for t in _tasks_of(ev, "job", ns, job_name)
                    if (p := parse_task_id(t.task_id)) is not None}
            if job is not None:
                uids.add(job.uid)
            if len(uids) > 1:
                out.append(Violation("cron-slot-run-twice", obj, where,
                                     f"Jobs of uids {sorted(uids)}"))
            elif job is not None and job.version > 1:
                out.append(Violation("cron-slot-run-twice", obj, where,
                                     f"its Job was written {job.version} times"))
            if uids:
                continue
            later = (slots[n + 1] if n + 1 < len(slots)
                     else cron_slots(cron.every_minutes, slot, slot + timedelta(hours=1))[0])
            excuse = next((what for start, end, what in windows
                           if start - lag <= slot and later <= end), None)
            if excuse is None:
                out.append(Violation("cron-slot-missed", obj, where,
                                     "no Job and no task, while a controller was up"))
    return out


def check_queues(expected: Expected, ev: Evidence) -> list[Violation]:
    ns = expected.namespace
    out: list[Violation] = []
    for name, queue in sorted(expected.queues.items()):
        obj = f"Queue {ns}/{name} ({queue.source})"
        runs: dict[str, list[MesosTask]] = collections.defaultdict(list)
        for task in _tasks_of(ev, "queue", ns, name):
            for message in task.batch:
                runs[message].append(task)
        left = ev.queue_left.get(name, set())
        dead = ev.queue_dead.get(name, set())
        by_message = {message: mid for mid, message in queue.messages.items()}
        for message in sorted(set(runs) - set(by_message)):
            out.append(Violation("queue-message-unknown", obj, message,
                                 "a task ran a message nobody produced"))
        for mid, message in sorted(queue.messages.items()):
            tasks = runs.get(message, [])
            finished = [t for t in tasks if t.state == "TASK_FINISHED"]
            failed = [t for t in tasks if t.state == "TASK_FAILED"]
            in_source, is_dead = mid in left, mid in dead
            if len(finished) > 1 and not _second_success_excused(finished):
                out.append(Violation("queue-message-succeeded-twice", obj, mid,
                                     ", ".join(t.task_id for t in finished)))
            if not finished and not is_dead and not in_source:
                what = ("acked without a successful task" if tasks
                        else "lost: gone from the source, never run")
                out.append(Violation("queue-message-lost", obj, mid, what + "; runs: " + (
                    ", ".join(f"{t.task_id} {t.state}" for t in tasks) or "none")))
            if is_dead and finished:
                out.append(Violation("queue-message-dead-after-success", obj, mid,
                                     finished[0].task_id))
            if is_dead and not failed:
                out.append(Violation("queue-message-dead-without-failure", obj, mid))
            if in_source:
                out.append(Violation("queue-message-unprocessed", obj, mid,
                                     "still in the source" + (" after a success"
                                                              if finished else "")))
    return out


def check_services(expected: Expected, ev: Evidence) -> list[Violation]:
    ns = expected.namespace
    out: list[Violation] = []
    for name, service in sorted(expected.services.items()):
        obj = f"Service {ns}/{name}"
        uid = ev.uids.get(("services", name))
        live: dict[int, list[MesosTask]] = collections.defaultdict(list)
        for task in _tasks_of(ev, "service", ns, name):
            parts = parse_task_id(task.task_id)
            if parts is not None and task.state in LIVE_STATES:
                if parts.uid != uid:
                    out.append(Violation("service-orphan-running", obj, task.task_id,
                                         f"of uid {parts.uid}, not {uid}"))
                    continue
                live[parts.index].append(task)
        for index, tasks in sorted(live.items()):
            if len(tasks) > 1:
                out.append(Violation("service-slot-duplicate", obj, f"slot {index}",
                                     ", ".join(t.task_id for t in tasks)))
            if index >= service.instances:
                out.append(Violation("service-slot-extra", obj, f"slot {index}"))
        for index in range(service.instances):
            healthy = [t for t in live.get(index, [])
                       if t.state == "TASK_RUNNING" and t.healthy is True]
            if not healthy:
                states = [(t.task_id, t.state, t.healthy) for t in live.get(index, [])]
                out.append(Violation("service-instance-not-healthy", obj, f"slot {index}",
                                     f"live tasks {states or 'none'}"))
    return out


def check_records(ev: Evidence) -> list[Violation]:
    """Mesos resends what was not acknowledged, so every update ends up recorded: a record
    still in etcd says what Mesos says of its task, once the task has been quiet a while."""
    out: list[Violation] = []
    quiet = ev.collected_at - SETTLE_SECONDS
    for task_id, recorded in sorted(ev.records.items()):
        task = ev.tasks.get(task_id)
        if task is None or task.last_update > quiet:
            continue
        if recorded != task.state:
            out.append(Violation("update-not-recorded", _owner(task_id), task_id,
                                 f"Mesos says {task.state}, the record {recorded}"))
        elif task.unacked and task.state in TERMINAL_STATES:
            out.append(Violation("update-not-acknowledged", _owner(task_id), task_id,
                                 f"{task.unacked} update(s) pending"))
    return out


def check_all(expected: Expected, ev: Evidence,
              job_statuses: dict[str, tuple[int, list[int]]], lag: timedelta
              ) -> list[Violation]:
    return (check_launches(ev) + check_jobs(expected, ev, job_statuses)
            + check_crons(expected, ev, lag) + check_queues(expected, ev)
            + check_services(expected, ev) + check_records(ev))


def figures(expected: Expected, ev: Evidence) -> dict[str, Any]:
    """Work done, from the evidence."""
    states = collections.Counter(t.state for t in ev.tasks.values())
    by_kind = collections.Counter(t.task_id.split(".", 1)[0] for t in ev.tasks.values())
    messages = sum(len(q.messages) for q in expected.queues.values())
    dead = sum(len(d) for d in ev.queue_dead.values())
    cron_jobs = [j for j in ev.jobs.values() if j.owner is not None]
    return {
        "launches": len(ev.launches),
        "duplicate_launches": len(ev.launches) - len(set(ev.launches)),
        "tasks": dict(sorted(by_kind.items())),
        "task_states": dict(sorted(states.items())),
        "unreachable_tasks": sum(t.was_unreachable for t in ev.tasks.values()),
        "jobs": len(expected.jobs),
        "cron_slots_run": len(cron_jobs),
        "messages": messages,
        "messages_dead_lettered": dead,
        "service_instances": sum(s.instances for s in expected.services.values()),
        "windows": len(ev.windows),
    }
