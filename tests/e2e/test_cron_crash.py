"""A CronJob's controller killed with SIGKILL around slot boundaries, again and again: every
slot still gets exactly one Job, none is skipped, none is repeated. The controller runs as a
real `docket run` process on an injected clock (DOCKET_TEST_TIME_FILE), so eight minutes of
schedule take seconds; etcd and the embedded Mesos outlive it, as in production."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.api import CronJobStatus, Job
from controller.localmesos import LocalMesos
from controller.reconcile.schedule import slot_id
from controller.store import EtcdServer, Store
from tests.e2e.harness import Process, controller_env, sim, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

T0 = datetime(2026, 11, 2, 10, 0, 30, tzinfo=UTC)
SLOTS = 8


def minute(n: int) -> datetime:
    return T0.replace(second=0) + timedelta(minutes=n)


def test_sigkill_around_slot_boundaries_runs_every_slot_exactly_once(
        local_mesos: Callable[..., LocalMesos], store: Store, etcd_server: EtcdServer,
        etcd_prefix: str, tmp_path: Path) -> None:
    lm = local_mesos(agents=2, simulate=True)
    clock = tmp_path / "now"
    clock.write_text(T0.isoformat())
    env = controller_env(etcd_server.endpoint, etcd_prefix, lm,
                         # The clock jumps while nothing is due: the resync is what looks
                         # at the CronJob.
                         DOCKET_RESYNC_SECONDS="0.3", DOCKET_LEADER_LEASE_SECONDS="2",
                         DOCKET_TEST_TIME_FILE=str(clock))
    log = tmp_path / "controller.log"
    proc = Process(env, log)
    proc.start()
    try:
        doc = {"apiVersion": "docket.dev/v1", "kind": "CronJob", "spec": {
            "schedule": "* * * * *", "successfulJobsHistoryLimit": 100,
            "jobTemplate": {"spec": {"template": sim(duration=0.05)}}}}
        store.put_raw(store.keys.object("cronjobs", "default", "tick"), json.dumps(doc).encode())

        def status() -> CronJobStatus | None:
            found = store.get_status("cronjobs", "default", "tick")
            return found.status if found is not None else None  # type: ignore[return-value]

        def jobs() -> dict[str, tuple[Job, int]]:
            return {o.name: (o.object, o.version) for o in store.list("jobs")[0]
                    if isinstance(o.object, Job)}

        wait_for(status, 60, lambda: "no CronJob status; log: " + log.read_text()[-2000:])
        rng = random.Random(20261129)
        kills = 0
        for n in range(1, SLOTS + 1):
            clock.write_text((minute(n) + timedelta(milliseconds=500)).isoformat())
            if rng.random() < 0.6:
                # The kill lands at a seeded instant of the first 0.4 s after the slot became
                # due: before, during or after the creation. (The delay chooses when the fault
                # happens; nothing below depends on it.)
                time.sleep(rng.uniform(0.0, 0.4))
                proc.kill()
                kills += 1
                proc.start()
            name = f"tick-{slot_id(minute(n))}"
            wait_for(lambda name=name: name in jobs(), 60,
                     lambda name=name: f"slot {name} never ran; log: " + log.read_text()[-2000:])
        assert kills >= 3, "the seed killed too rarely for the test to prove anything"

        final = wait_for(lambda: (s := status()) and s.last_schedule_time == minute(SLOTS) and s,
                         30, lambda: f"status never caught up: {status()}")
        found = jobs()
        assert sorted(found) == sorted(f"tick-{slot_id(minute(n))}" for n in range(1, SLOTS + 1))
        # Created once, never rewritten (a second creation of a slot could only overwrite).
        assert {name: version for name, (_, version) in found.items()} == dict.fromkeys(found, 1)
        assert final.missed == {}, final.missed
        assert proc.terminate() == 0
    finally:
        proc.cleanup()
