"""The mixed workload every chaos scenario runs (issue 14): Jobs (indexed and not), CronJobs on
short schedules, a Queue on etcd and one on Redis with failing messages, and a Service with
health checks — put into etcd as users put them (raw JSON at the spec key, queue messages
written to the sources directly), produced a little at a time while the faults happen.

The Workload knows what it asked for (`expected()`: plain data the invariants check against)
and when it is done (`unsettled()`: what the controller still owes). It never decides whether
Docket behaved: tests/chaos/invariants.py does, from the sources of truth.

Every task runs on simulated agents (DOCKET_SIM_DURATION); failures are chosen by task id
(DOCKET_SIM_FAIL_TASKS), so the same attempts fail whatever the faults: index 3's first
attempt of each Job; every attempt of queue batches whose number ends in 7 (dead-lettered),
the first attempt of batches ending in 3 (retried, then acked).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.api import CronJobStatus, JobStatus, QueueStatus, ServiceStatus
from controller.queues.redis_source import RedisQueue
from controller.store import Expect, Put
from tests.chaos.world import World

NAMESPACE = "default"
JOB_FAILS = r"\.3\.0$"
QUEUE_FAILS = r"\.[0-9]*7\.[0-9]+$|\.[0-9]*3\.0$"
REDIS_KEY = "chaos-work"


@dataclass(frozen=True)
class WorkloadSize:
    jobs: int = 3  # submitted at start; more every `job_every` real seconds while producing
    completions: int = 6
    parallelism: int = 3
    task_seconds: float = 0.3
    messages: int = 40  # per queue at start; `messages_per_tick` more each production tick
    messages_per_tick: int = 8
    batch_size: int = 4
    instances: int = 3
    job_every: float = 4.0
    produce_every: float = 2.0
    max_jobs: int = 60  # bounds on what production adds, whatever the run's length
    max_messages: int = 2000


SHORT = WorkloadSize()
FULL = WorkloadSize(jobs=4, completions=10, parallelism=4, messages=60, messages_per_tick=10,
                    job_every=6.0, produce_every=3.0)


@dataclass(frozen=True)
class JobExpectation:
    name: str
    completions: int
    indexed: bool


@dataclass(frozen=True)
class CronExpectation:
    name: str
    every_minutes: int  # "*/N * * * *"
    created: datetime  # injected time of the put: slots after it must run


@dataclass
class QueueExpectation:
    name: str
    source: str  # "etcd" or "redis"
    messages: dict[str, str] = field(default_factory=dict)  # id -> message (redis: id = msg)
    redis_key: str = ""


@dataclass(frozen=True)
class ServiceExpectation:
    name: str
    instances: int


@dataclass
class Expected:
    """What the workload asked for, as plain data (the invariants' input)."""

    namespace: str = NAMESPACE
    jobs: dict[str, JobExpectation] = field(default_factory=dict)
    crons: dict[str, CronExpectation] = field(default_factory=dict)
    queues: dict[str, QueueExpectation] = field(default_factory=dict)
    services: dict[str, ServiceExpectation] = field(default_factory=dict)


def sim_template(seconds: float, fail: str | None = None, **extra: Any) -> dict[str, Any]:
    env = {"DOCKET_SIM_DURATION": str(seconds), "DOCKET_SIM_EXIT_CODE": "0"}
    if fail:
        env["DOCKET_SIM_FAIL_TASKS"] = fail
    return {"command": "true", "resources": {"cpus": 0.1, "mem": 16}, "env": env, **extra}


class Workload:
    def __init__(self, world: World, rng: random.Random, size: WorkloadSize = SHORT) -> None:
        self.world = world
        self.rng = rng
        self.size = size
        self.expected = Expected()
        self.producing = False
        self._next_job = 0.0
        self._next_messages = 0.0
        self._message_seq = 0
        self._redis: RedisQueue | None = None

    # --- as a user ---------------------------------------------------------------------------
    def put(self, plural: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        doc = {"apiVersion": "docket.dev/v1", "kind": kind,
               "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}
        store = self.world.user
        store.put_raw(store.keys.object(plural, NAMESPACE, name), json.dumps(doc).encode())

    def start(self) -> None:
        """Put every kind's objects, then produce more on each `tick` until `finish`."""
        self.put_service("web")
        self.put_queue("qe", "etcd")
        if self.world.redis is not None:
            self.put_queue("qr", "redis")
        self.put_cron("every1", 1)
        self.put_cron("every2", 2)
        for _ in range(self.size.jobs):
            self.put_job()
        self.producing = True
        now = time.monotonic()
        self._next_job = now + self.size.job_every
        self._next_messages = now + self.size.produce_every

    def put_service(self, name: str) -> None:
        self.put("services", "Service", name, {
            "instances": self.size.instances,
            "template": sim_template(3600, ports=[{"name": "http"}]),
            "healthCheck": {"type": "HTTP", "portName": "http", "path": "/",
                            "gracePeriodSeconds": 5, "intervalSeconds": 1,
                            "timeoutSeconds": 1, "maxConsecutiveFailures": 3,
                            "delaySeconds": 0},
            "backoffSeconds": 1, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 30,
            # Injected seconds: at 15x, a replacement 1 s after TASK_UNREACHABLE; an
            # original returning later than 4 min is written off.
            "unreachableStrategy": {"inactiveAfterSeconds": 15, "expungeAfterSeconds": 3600}})
        self.expected.services[name] = ServiceExpectation(name, self.size.instances)

    def put_queue(self, name: str, source: str) -> None:
        spec: dict[str, Any] = {
            "batchSize": self.size.batch_size, "maxConcurrent": 3, "backoffLimit": 1,
            "systemRetryLimit": 1000, "backoff": {"initialSeconds": 1, "maxSeconds": 5},
            "template": sim_template(self.size.task_seconds, QUEUE_FAILS)}
        expectation = QueueExpectation(name, source)
        if source == "etcd":
            spec["source"] = {"type": "etcd"}
        else:
            spec["source"] = {"type": "redis", "url": self.world.redis_url, "key": REDIS_KEY}
            spec["pollIntervalSeconds"] = 0.5
            expectation.redis_key = REDIS_KEY
        self.expected.queues[name] = expectation
        self.produce(name, self.size.messages)
        self.put("queues", "Queue", name, spec)

    def put_cron(self, name: str, every: int) -> None:
        schedule = "* * * * *" if every == 1 else f"*/{every} * * * *"
        created = self.world.now()
        self.put("cronjobs", "CronJob", name, {
            "schedule": schedule, "concurrencyPolicy": "Allow",
            # Every Job is kept: the checks count them.
            "successfulJobsHistoryLimit": 100000, "failedJobsHistoryLimit": 100000,
            "jobTemplate": {"spec": {"systemRetryLimit": 1000,
                                     "backoff": {"initialSeconds": 1, "maxSeconds": 5},
                                     "template": sim_template(0.2)}}})
        self.expected.crons[name] = CronExpectation(name, every, created)

    def put_job(self, *, task_seconds: float | None = None, completions: int | None = None,
                parallelism: int | None = None, prefix: str = "") -> str:
        """A Job of the workload's size (or as given); its name."""
        n = len(self.expected.jobs)
        indexed = n % 3 != 2  # two indexed Jobs for each plain one
        name = f"{prefix}{'idx' if indexed else 'plain'}-{n}"
        completions = completions or self.size.completions
        seconds = task_seconds or self.size.task_seconds * self.rng.uniform(0.5, 2.0)
        self.put("jobs", "Job", name, {
            "completions": completions, "parallelism": parallelism or self.size.parallelism,
            "completionMode": "Indexed" if indexed else "NonIndexed",
            "backoffLimit": 6, "systemRetryLimit": 1000,
            "backoff": {"initialSeconds": 1, "maxSeconds": 5},
            "template": sim_template(seconds, JOB_FAILS)})
        self.expected.jobs[name] = JobExpectation(name, completions, indexed)
        return name

    def produce(self, queue: str, count: int) -> None:
        expectation = self.expected.queues[queue]
        ids = [f"{queue}-{self._message_seq + i:06d}" for i in range(count)]
        self._message_seq += count
        if expectation.source == "etcd":
            store = self.world.user
            keys = [store.keys.queue_item(NAMESPACE, queue, i) for i in ids]
            store.commit([Put(k, i.encode()) for k, i in zip(keys, ids, strict=True)],
                         [Expect(k, 0) for k in keys])
        else:
            self.redis_queue().push(ids)
        expectation.messages.update((i, i) for i in ids)

    def redis_queue(self) -> RedisQueue:
        if self._redis is None:
            self._redis = RedisQueue(self.world.redis_url, REDIS_KEY, timeout=5.0)
        return self._redis

    def tick(self) -> None:
        """Produce what is due (a Job every `job_every` s, messages every `produce_every` s),
        within the size's bounds. Call it from the scenario's loop, never while etcd is
        away (it writes there)."""
        if not self.producing:
            return
        now = time.monotonic()
        if now >= self._next_job and len(self.expected.jobs) < self.size.max_jobs:
            self.put_job()
            self._next_job = now + self.size.job_every
        if now >= self._next_messages and self._message_seq < self.size.max_messages:
            for queue in self.expected.queues:
                self.produce(queue, self.size.messages_per_tick)
            self._next_messages = now + self.size.produce_every

    def finish(self) -> None:
        self.producing = False

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    # --- progress ----------------------------------------------------------------------------
    def unsettled(self) -> list[str]:
        """What the controller has not finished yet, from the statuses it writes (empty:
        settled). The verdict on whether it did it right is the invariants'."""
        store = self.world.user
        out: list[str] = []
        for plural in ("jobs", "cronjobs", "queues", "services"):
            statuses = store.list_statuses(plural)
            for name, want in getattr(self.expected, _FIELD[plural]).items():
                found = statuses.get((NAMESPACE, name))
                problem = _unsettled(want, found.status if found is not None else None)
                if problem:
                    out.append(f"{plural[:-1]} {name}: {problem}")
        # Every CronJob's Jobs must finish too.
        jobs, _ = store.list("jobs")
        statuses = store.list_statuses("jobs")
        for obj in jobs:
            if obj.name in self.expected.jobs:
                continue
            found = statuses.get((obj.namespace, obj.name))
            phase = found.status.phase if found is not None else "none"
            if phase != "Succeeded":
                out.append(f"job {obj.name}: phase {phase}")
        return out

    def wait_settled(self, timeout: float) -> tuple[float, list[str]]:
        """Poll until settled or `timeout`: (seconds waited, what is still unsettled)."""
        start = time.monotonic()
        left = self.unsettled()
        while left and time.monotonic() - start < timeout:
            time.sleep(0.2)  # poll interval of a bounded wait
            left = self.unsettled()
        return time.monotonic() - start, left

    def figures(self) -> dict[str, Any]:
        return {"jobs": len(self.expected.jobs),
                "messages": sum(len(q.messages) for q in self.expected.queues.values()),
                "cronjobs": len(self.expected.crons),
                "service_instances": sum(s.instances
                                         for s in self.expected.services.values())}


_FIELD = {"jobs": "jobs", "cronjobs": "crons", "queues": "queues", "services": "services"}


def _unsettled(want: Any, status: Any) -> str:
    if status is None:
        return "no status yet"
    if isinstance(want, JobExpectation):
        assert isinstance(status, JobStatus)
        return "" if status.phase == "Succeeded" else f"phase {status.phase}"
    if isinstance(want, QueueExpectation):
        assert isinstance(status, QueueStatus)
        done = status.succeeded + status.dead_lettered
        if done == len(want.messages) and not (status.pending or status.in_flight
                                               or status.active):
            return ""
        return (f"{done}/{len(want.messages)} done, pending {status.pending}, "
                f"in flight {status.in_flight}, active {status.active}")
    if isinstance(want, ServiceExpectation):
        assert isinstance(status, ServiceStatus)
        if status.phase == "Running" and status.healthy == want.instances \
                and status.running == want.instances:
            return ""
        return f"phase {status.phase}, {status.healthy}/{want.instances} healthy"
    assert isinstance(status, CronJobStatus)
    return ""  # a CronJob's progress is its Jobs'
