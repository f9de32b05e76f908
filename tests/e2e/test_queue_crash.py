"""Queues while their controller is killed with SIGKILL three times at seeded moments and their
Redis is killed and restarted once: no message is lost, none runs twice unless an attempt
before failed or was killed, and the counts are exact at the end. The controller is a real
`docket run` process; etcd, Redis and the embedded Mesos outlive it, as in production. What ran
is read from the embedded Mesos (every task, its batch, its final state)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.localmesos import LocalMesos
from controller.queues.redis_server import RedisServer
from controller.queues.redis_source import RedisQueue
from controller.store import EtcdServer, Store
from tests.e2e.harness import Process, controller_env, template, wait_for
from tests.e2e.test_queues import (
    FAIL_ONCE,
    assert_each_acked_once,
    produce_etcd,
    put_queue,
    queue_status,
    wait_done,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MESSAGES = 200


def test_sigkill_three_times_and_a_redis_restart_lose_and_repeat_nothing(
        local_mesos: Callable[..., LocalMesos], store: Store, etcd_server: EtcdServer,
        etcd_prefix: str, private_redis: RedisServer, tmp_path: Path) -> None:
    lm = local_mesos(simulate=True, cpus=8.0)
    etcd_messages = [f"e{n}" for n in range(MESSAGES)]
    redis_messages = [f"r{n}" for n in range(MESSAGES)]
    produce_etcd(store, "qe", etcd_messages)
    source = RedisQueue(private_redis.url, "work")
    source.push(redis_messages)
    task = template("true", env={"DOCKET_SIM_DURATION": "0.2",
                                 "DOCKET_SIM_FAIL_TASKS": FAIL_ONCE})
    common = {"batchSize": 10, "maxConcurrent": 5, "backoffLimit": 3,
              "backoff": {"initialSeconds": 0.1, "maxSeconds": 0.5}, "template": task}
    env = controller_env(etcd_server.endpoint, etcd_prefix, lm,
                         DOCKET_LEADER_LEASE_SECONDS="2")
    log = tmp_path / "controller.log"
    proc = Process(env, log)
    proc.start()
    try:
        put_queue(store, "qe", {"source": {"type": "etcd"}, **common})
        put_queue(store, "qr", {"source": {"type": "redis", "url": private_redis.url,
                                           "key": "work"}, "pollIntervalSeconds": 0.2,
                                **common})
        rng = random.Random(20261129)

        def launched() -> int:
            return sum(1 for t in lm.tasks() if t.task_id.startswith("queue."))

        for kill in range(3):
            # Each kill lands after a seeded number of further launches: while batches are
            # claimed, launched, finished and acked. (The count chooses when the fault
            # happens; nothing below depends on it.)
            target = launched() + rng.randint(2, 12)
            wait_for(lambda target=target: launched() >= target, 60,
                     lambda kill=kill: f"no progress before kill {kill}; log: "
                                       + log.read_text()[-3000:])
            proc.kill()
            if kill == 1:
                private_redis.kill()
                private_redis.restart()
            proc.start()
        for name, messages in (("qe", etcd_messages), ("qr", redis_messages)):
            status = wait_done(store, name, MESSAGES, timeout=120)
            assert status.succeeded == MESSAGES and status.dead_lettered == 0, status
            failed = sum(1 for t in lm.tasks()
                         if t.task_id.startswith(f"queue.default.{name}.")
                         and t.state == "TASK_FAILED")
            assert status.failed_attempts == failed, (status, failed)
            assert_each_acked_once(lm, name, messages)
        assert store.list_raw(store.keys.queue_items_prefix("default", "qe"))[0] == []
        assert store.list_raw(store.keys.queue_claims_prefix("default", "qe"))[0] == []
        assert source.length() == 0 and source.processing_tags("") == []
        final = queue_status(store, "qr")
        assert final is not None and final.claiming == {}
    finally:
        proc.cleanup()
        source.close()
