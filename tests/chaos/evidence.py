"""What the invariants are checked against, read from the sources of truth — never from
Docket's status alone: the embedded Mesos (its launch log, every launch it accepted in order,
duplicates included; its `/tasks` endpoint, paged, with every status of every task; the
TaskInfos, for the batch a queue task carried), the queue sources (etcd items and dead letters,
the Redis list, its processing lists and dead letter) and etcd (Job objects, execution
records, object uids). `Evidence` is plain data, so the checks (tests/chaos/invariants.py)
are tested on doctored copies without any server.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import redis

from controller.api import ExecutionRecord, Job
from controller.localmesos.agents import task_env
from controller.queues.redis_source import RedisQueue

if TYPE_CHECKING:
    from tests.chaos.workload import Expected
    from tests.chaos.world import Window, World

_PAGE = 1000
_MAX_PAGES = 1000  # a million tasks: far beyond any scenario, but a bound


@dataclass(frozen=True)
class MesosTask:
    """One task as the master reports it."""

    task_id: str
    state: str
    states: tuple[str, ...] = ()  # every status' state, in order
    healthy: bool | None = None  # the latest health verdict, if any
    batch: tuple[str, ...] = ()  # the messages of a queue task (DOCKET_BATCH)
    unacked: int = 0  # updates the master still waits to have acknowledged
    last_update: float = 0.0  # time.time() of its latest status

    @property
    def was_unreachable(self) -> bool:
        return "TASK_UNREACHABLE" in self.states


@dataclass(frozen=True)
class JobObject:
    name: str
    uid: int
    version: int  # writes of the spec key since its creation
    owner: str | None  # the CronJob that created it


@dataclass
class Evidence:
    launches: list[str] = field(default_factory=list)  # task ids, duplicates included
    tasks: dict[str, MesosTask] = field(default_factory=dict)
    jobs: dict[str, JobObject] = field(default_factory=dict)
    uids: dict[tuple[str, str], int] = field(default_factory=dict)  # (plural, name) -> uid
    records: dict[str, str] = field(default_factory=dict)  # task id -> recorded state
    queue_left: dict[str, set[str]] = field(default_factory=dict)  # in the source still
    queue_dead: dict[str, set[str]] = field(default_factory=dict)  # dead-lettered
    now: datetime | None = None  # the controllers' (injected) time when collected
    collected_at: float = 0.0  # time.time() when collected
    windows: list[Window] = field(default_factory=list)


def mesos_tasks(master_url: str) -> list[dict[str, object]]:
    """Every task of the master's /tasks, page by page."""
    out: list[dict[str, object]] = []
    for page in range(_MAX_PAGES):
        url = f"{master_url}/tasks?limit={_PAGE}&offset={page * _PAGE}&order=asc"
        with urllib.request.urlopen(url, timeout=30) as resp:
            tasks = json.loads(resp.read())["tasks"]
        out.extend(tasks)
        if len(tasks) < _PAGE:
            break
    return out


def collect(world: World, expected: Expected) -> Evidence:
    """Read every source of truth; etcd and Redis must be up."""
    import time

    ev = Evidence(now=world.now(), collected_at=time.time(), windows=list(world.windows))
    ev.launches = [task_id for _t, _fw, task_id, _agent in world.lm.launches()]
    infos = {t.task_id: (t.info, len(t.pending)) for t in world.lm.tasks()}
    for raw in mesos_tasks(world.lm.master_url):
        task_id = str(raw["id"])
        statuses = raw.get("statuses") or []
        assert isinstance(statuses, list)
        health = [s["healthy"] for s in statuses if "healthy" in s]
        info, unacked = infos.get(task_id, ({}, 0))
        batch: tuple[str, ...] = ()
        if task_id.startswith("queue."):
            joined = task_env(info).get("DOCKET_BATCH", "")
            batch = tuple(joined.split("\n")) if joined else ()
        ev.tasks[task_id] = MesosTask(
            task_id, str(raw["state"]), tuple(str(s["state"]) for s in statuses),
            health[-1] if health else None, batch, unacked,
            max((float(s["timestamp"]) for s in statuses), default=0.0))

    store = world.user
    ns = expected.namespace
    objects, _ = store.list("jobs")
    for obj in objects:
        if obj.namespace != ns:
            continue
        owner = None
        if isinstance(obj.object, Job):
            refs = obj.object.metadata.owner_references or []
            owner = next((r.name for r in refs if r.kind == "CronJob"), None)
        ev.jobs[obj.name] = JobObject(obj.name, obj.uid, obj.version, owner)
        ev.uids[("jobs", obj.name)] = obj.uid
    for plural in ("cronjobs", "queues", "services"):
        for obj in store.list(plural)[0]:
            if obj.namespace == ns:
                ev.uids[(plural, obj.name)] = obj.uid
    prefix = store.keys.executions_root()
    for _key, value, *_ in store.list_raw(prefix)[0]:
        record = ExecutionRecord.model_validate_json(value)
        ev.records[record.task_id] = record.state

    for name, queue in expected.queues.items():
        if queue.source == "etcd":
            items = store.keys.queue_items_prefix(ns, name)
            dead = store.keys.queue_dead_prefix(ns, name)
            ev.queue_left[name] = {k[len(items):] for k, *_ in store.list_raw(items)[0]}
            ev.queue_dead[name] = {k[len(dead):] for k, *_ in store.list_raw(dead)[0]}
            continue
        source = RedisQueue(world.redis_url, queue.redis_key, timeout=10.0)
        client = redis.Redis.from_url(world.redis_url, socket_timeout=10)
        try:
            left = {m.decode() if isinstance(m, bytes) else str(m)
                    for m in client.lrange(queue.redis_key, 0, -1)}
            for tag in source.processing_tags(""):
                left.update(m.decode() for m in source.batch(tag) or [])
            ev.queue_left[name] = left
            ev.queue_dead[name] = {d.message.decode()
                                   for d in source.dead(f"{queue.redis_key}:dead")}
        finally:
            source.close()
            client.close()
    return ev
