"""Queues end to end (docs/architecture.md §8): real etcd, real Redis and the embedded Mesos.

What a task received is read from the embedded Mesos itself (every task it was asked to launch,
with its environment and final state), not from Docket's status: each message must reach
exactly one TASK_FINISHED task, and any other task that carried it must have failed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.api import QueueStatus
from controller.localmesos import LocalMesos
from controller.localmesos.agents import task_env
from controller.queues.redis_server import RedisServer
from controller.queues.redis_source import RedisQueue
from controller.store import Expect, Put, Store
from tests.e2e.harness import Docket, sim, template, wait_for

pytestmark = pytest.mark.integration

# Batches whose number ends in 3 fail their first attempt: 10 % of batches fail once.
FAIL_ONCE = r"\.[0-9]*3\.0$"


def put_queue(store: Store, name: str, spec: dict[str, Any], namespace: str = "default") -> None:
    doc = {"apiVersion": "docket.dev/v1", "kind": "Queue",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    store.put_raw(store.keys.object("queues", namespace, name), json.dumps(doc).encode())


def produce_etcd(store: Store, queue: str, messages: list[str], namespace: str = "default"
                 ) -> None:
    for start in range(0, len(messages), 100):
        ops = []
        expect = []
        for n, message in enumerate(messages[start:start + 100], start):
            key = store.keys.queue_item(namespace, queue, f"item-{n:06d}")
            ops.append(Put(key, message.encode()))
            expect.append(Expect(key, 0))
        store.commit(ops, expect)


def queue_status(store: Store, name: str, namespace: str = "default") -> QueueStatus | None:
    found = store.get_status("queues", namespace, name)
    if found is None:
        return None
    assert isinstance(found.status, QueueStatus)
    return found.status


def wait_done(store: Store, name: str, total: int, timeout: float = 120.0) -> QueueStatus:
    def done() -> QueueStatus | None:
        st = queue_status(store, name)
        return st if st is not None and st.succeeded + st.dead_lettered == total \
            and st.pending == 0 and st.in_flight == 0 and st.active == 0 else None
    found: QueueStatus = wait_for(done, timeout,
                                  lambda: f"queue {name}: {queue_status(store, name)}")
    return found


def counted(queue: str, result: str) -> float:
    return REGISTRY.get_sample_value("docket_queue_messages_total", {
        "namespace": "default", "queue": queue, "result": result}) or 0.0


def runs_by_message(lm: LocalMesos, queue: str) -> dict[str, list[tuple[str, str]]]:
    """message -> [(task id, final state)] for every task of `queue` the Mesos master saw."""
    out: dict[str, list[tuple[str, str]]] = {}
    for task in lm.tasks():
        if not task.task_id.startswith(f"queue.default.{queue}."):
            continue
        env = task_env(task.info)
        for message in env["DOCKET_BATCH"].split("\n"):
            out.setdefault(message, []).append((task.task_id, task.state))
    return out


def assert_each_acked_once(lm: LocalMesos, queue: str, messages: list[str]) -> None:
    runs = runs_by_message(lm, queue)
    assert sorted(runs) == sorted(messages), "a message never ran, or one ran that was not sent"
    for message, tasks in runs.items():
        finished = [t for t, state in tasks if state == "TASK_FINISHED"]
        assert len(finished) == 1, f"{message}: finished in {finished}"
        others = [(t, s) for t, s in tasks if s != "TASK_FINISHED"]
        assert all(s in ("TASK_FAILED", "TASK_KILLED", "TASK_LOST") for _, s in others), others


def test_etcd_and_redis_queues_ack_every_message_exactly_once(
        store: Store, local_mesos: Callable[..., LocalMesos], redis_server: RedisServer) -> None:
    lm = local_mesos(simulate=True, cpus=8.0, sim_default_duration=0.01)
    etcd_messages = [f"e{n}" for n in range(1000)]
    redis_messages = [f"r{n}" for n in range(1000)]
    produce_etcd(store, "qe", etcd_messages)
    redis_queue = RedisQueue(redis_server.url, "work")
    redis_queue.push(redis_messages)
    task = template(
        "true", env={"DOCKET_SIM_DURATION": "0.01", "DOCKET_SIM_FAIL_TASKS": FAIL_ONCE})
    common = {"batchSize": 10, "maxConcurrent": 5, "backoffLimit": 2,
              "backoff": {"initialSeconds": 0.05, "maxSeconds": 0.2}, "template": task}
    before = counted("qe", "succeeded")
    d = Docket(store, lm, resync_seconds=300).start()
    try:
        put_queue(store, "qe", {"source": {"type": "etcd"}, **common})
        put_queue(store, "qr", {"source": {"type": "redis", "url": redis_server.url,
                                           "key": "work"}, "pollIntervalSeconds": 0.2,
                                **common})
        for name, messages in (("qe", etcd_messages), ("qr", redis_messages)):
            status = wait_done(store, name, len(messages))
            assert (status.succeeded, status.dead_lettered, status.failed_attempts) == \
                (1000, 0, 10), status
            assert_each_acked_once(lm, name, messages)
        # The sources are empty: nothing claimed, nothing left in processing, nothing dead.
        assert store.list_raw(store.keys.queue_items_prefix("default", "qe"))[0] == []
        assert store.list_raw(store.keys.queue_claims_prefix("default", "qe"))[0] == []
        assert redis_queue.length() == 0
        assert redis_queue.processing_tags("") == []
        assert redis_queue.dead("work:dead") == []
        # Most executions were forgotten; the recent ones are summarised.
        status = queue_status(store, "qe")
        assert status is not None and len(status.recent_batches) == 10
        # What the controller exports agrees.
        assert counted("qe", "succeeded") - before == 1000
        assert REGISTRY.get_sample_value("docket_queue_pending_messages",
                                         {"namespace": "default", "queue": "qe"}) == 0
        assert REGISTRY.get_sample_value("docket_queue_source_up",
                                         {"namespace": "default", "queue": "qr"}) == 1
        assert (REGISTRY.get_sample_value("docket_queue_batch_duration_seconds_count") or 0) > 0
    finally:
        d.stop()
        redis_queue.close()


def test_a_poison_message_is_dead_lettered_and_requeued_with_the_cli(
        store: Store, local_mesos: Callable[..., LocalMesos], tmp_path: Any,
        etcd_server: Any) -> None:
    import subprocess
    import sys

    lm = local_mesos(work_dir=tmp_path / "mesos")
    out = tmp_path / "delivered"
    out.mkdir()
    # A real task: it keeps what it was given, and fails on the poison message.
    command = (f'printf "%s" "$DOCKET_BATCH" > {out}/$DOCKET_TASK_ID; '
               'case "$DOCKET_BATCH" in *poison*) exit 1;; esac')
    produce_etcd(store, "mail", ["hello", "poison"])
    d = Docket(store, lm, resync_seconds=300).start()
    try:
        put_queue(store, "mail", {"source": {"type": "etcd"}, "batchSize": 1,
                                  "maxConcurrent": 2, "backoffLimit": 1,
                                  "backoff": {"initialSeconds": 0.1},
                                  "template": template(command)})
        status = wait_done(store, "mail", 2, timeout=60)
        assert (status.succeeded, status.dead_lettered, status.failed_attempts) == (1, 1, 2)
        dead = store.list_raw(store.keys.queue_dead_prefix("default", "mail"))[0]
        assert len(dead) == 1
        entry = json.loads(dead[0][1])
        assert entry["message"] == "poison" and entry["reason"] == "BackoffLimitExceeded"
        assert entry["execution"].startswith("queue.default.mail.") and \
            entry["execution"].endswith(".1")
        delivered = sorted(p.read_text() for p in out.iterdir())
        assert delivered == ["hello", "poison", "poison"]
        # Requeued with the CLI, it runs (and fails) again, and is dead once more.
        result = subprocess.run(
            [sys.executable, "-m", "controller.cli.main", "queue", "requeue", "default/mail",
             "--all", "--etcd", etcd_server.endpoint, "--prefix", store.keys.prefix],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        wait_for(lambda: (s := queue_status(store, "mail")) is not None
                 and s.dead_lettered == 2 and s.in_flight == 0 and s.active == 0, 60,
                 lambda: f"{queue_status(store, 'mail')}")
        assert Counter(p.read_text() for p in out.iterdir())["poison"] == 4
    finally:
        d.stop()


def test_a_queue_whose_redis_is_down_waits_and_recovers_while_a_job_runs(
        store: Store, local_mesos: Callable[..., LocalMesos], private_redis: RedisServer) -> None:
    lm = local_mesos(simulate=True)
    url = private_redis.url
    private_redis.stop()
    d = Docket(store, lm, resync_seconds=300).start()
    try:
        put_queue(store, "q", {"source": {"type": "redis", "url": url, "key": "k"},
                               "pollIntervalSeconds": 0.2, "template": sim(0.01)})
        d.put_job("beside", {"template": sim(0.01)})

        def unavailable() -> bool:
            st = queue_status(store, "q")
            cond = st.condition("SourceUnavailable") if st is not None else None
            return cond is not None and cond.status == "True" and "127.0.0.1" in cond.message
        wait_for(unavailable, 30, lambda: f"{queue_status(store, 'q')}")
        d.wait_phase("beside", "Succeeded")
        private_redis.start()
        source = RedisQueue(url, "k")
        try:
            source.push(["a", "b", "c"])
        finally:
            source.close()
        status = wait_done(store, "q", 3, timeout=60)
        assert status.condition("SourceUnavailable") is None
    finally:
        d.stop()


def test_deleting_a_queue_kills_its_tasks_and_gives_its_messages_back(
        store: Store, local_mesos: Callable[..., LocalMesos], redis_server: RedisServer) -> None:
    lm = local_mesos(simulate=True)
    produce_etcd(store, "de", [f"e{n}" for n in range(5)])
    source = RedisQueue(redis_server.url, "dr")
    source.push([f"r{n}" for n in range(5)])
    common = {"batchSize": 1, "maxConcurrent": 2, "template": sim(600)}
    d = Docket(store, lm, resync_seconds=300).start()
    try:
        put_queue(store, "de", {"source": {"type": "etcd"}, **common})
        put_queue(store, "dr", {"source": {"type": "redis", "url": redis_server.url,
                                           "key": "dr"}, **common})

        def running(queue: str) -> list[str]:
            return [t.task_id for t in lm.tasks()
                    if t.task_id.startswith(f"queue.default.{queue}.")
                    and t.state == "TASK_RUNNING"]
        for name in ("de", "dr"):
            wait_for(lambda name=name: len(running(name)) == 2, 30,
                     lambda name=name: f"{name}: {queue_status(store, name)}")
        assert source.length() == 3
        for name in ("de", "dr"):
            store.delete_object("queues", "default", name)
        for name in ("de", "dr"):
            wait_for(lambda name=name: queue_status(store, name) is None
                     and not store.list_executions("queues", "default", name), 30,
                     lambda name=name: f"{name}: {queue_status(store, name)}")
            states = {t.state for t in lm.tasks()
                      if t.task_id.startswith(f"queue.default.{name}.")}
            assert states == {"TASK_KILLED"}
        # Every message is back where it was, in order; nothing is claimed or dead.
        items, _ = store.list_raw(store.keys.queue_items_prefix("default", "de"))
        assert [value for _, value, *_ in items] == [f"e{n}".encode() for n in range(5)]
        assert store.list_raw(store.keys.queue_claims_prefix("default", "de"))[0] == []
        assert source.processing_tags("") == []
        assert source.batch("unused") is None
        import redis as redis_py

        client = redis_py.Redis.from_url(redis_server.url)
        try:
            assert client.lrange("dr", 0, -1) == [f"r{n}".encode() for n in range(5)]
        finally:
            client.close()
    finally:
        d.stop()
        source.close()
