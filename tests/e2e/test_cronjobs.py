"""CronJobs end to end on the real core (real etcd, the embedded Mesos, real tasks), with an
injected clock: each test moves time to a slot and looks at what was created, so minutes of
schedule take seconds and nothing depends on when the test happens to run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.api import CronJobStatus, Job, JobStatus, decode_object
from controller.clock import FakeClock
from controller.localmesos import LocalMesos
from controller.reconcile.cronjob import SCHEDULED_TIME
from controller.reconcile.schedule import slot_id
from controller.store import Store
from tests.e2e.harness import Docket, template, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = datetime(2026, 11, 2, 10, 0, 30, tzinfo=UTC)


@pytest.fixture
def cron(store: Store, local_mesos: Callable[..., LocalMesos]) -> Iterator[Any]:
    clock = FakeClock(wall=T0)
    d = Docket(store, local_mesos(), clock=clock).start()

    class Cron:
        def __init__(self) -> None:
            self.d, self.store, self.clock = d, store, clock

        def put(self, name: str, spec: dict[str, Any]) -> None:
            doc = {"apiVersion": "docket.dev/v1", "kind": "CronJob", "spec": spec}
            store.put_raw(store.keys.object("cronjobs", "default", name),
                          json.dumps(doc).encode())

        def status(self, name: str) -> CronJobStatus | None:
            found = store.get_status("cronjobs", "default", name)
            return found.status if found is not None else None  # type: ignore[return-value]

        def at(self, when: datetime, name: str) -> None:
            """Move time to `when`, then wake the CronJob (its own wake-up is in real time)."""
            clock.jump_to(when)
            d.jobs.controller("CronJob").wake("default", name)

        def jobs(self) -> dict[str, Job]:
            found = {}
            for obj in store.list("jobs")[0]:
                if isinstance(obj.object, Job):
                    found[obj.name] = obj.object
            return found

    yield Cron()
    d.stop()


def minute(n: int) -> datetime:
    return T0.replace(second=0) + timedelta(minutes=n)


def test_each_slot_runs_once_and_an_outage_runs_only_the_latest(cron: Any) -> None:
    cron.put("tick", {"schedule": "* * * * *", "jobTemplate": {
        "metadata": {"labels": {"team": "a"}},
        "spec": {"template": template("echo tick")}}})
    first = wait_for(lambda: cron.status("tick"), 20, lambda: "no status")
    assert first.phase == "Active" and first.next_schedule_time == minute(1)
    assert cron.jobs() == {}  # nothing owed before the controller first saw it

    for n in (1, 2):
        cron.at(minute(n) + timedelta(seconds=2), "tick")
        name = f"tick-{slot_id(minute(n))}"
        wait_for(lambda name=name: name in cron.jobs(), 20, lambda name=name: f"no {name}")
        cron.d.wait_phase(name, "Succeeded")
    job = cron.jobs()[f"tick-{slot_id(minute(1))}"]
    assert job.metadata.labels == {"team": "a", "docket.dev/cronjob": "tick"}
    assert job.metadata.annotations[SCHEDULED_TIME] == minute(1).isoformat()
    (ref,) = job.metadata.owner_references
    owner = cron.store.get("cronjobs", "default", "tick")
    assert (ref.kind, ref.name, ref.uid) == ("CronJob", "tick", owner.uid)

    # Down from 10:02 to 10:10:05: only the 10:10 slot runs; the seven before are counted.
    cron.at(minute(10) + timedelta(seconds=5), "tick")
    latest = f"tick-{slot_id(minute(10))}"
    wait_for(lambda: latest in cron.jobs(), 20, lambda: f"no {latest}")
    status = wait_for(lambda: (s := cron.status("tick")) and s.missed and s, 20,
                      lambda: f"missed not counted: {cron.status('tick')}")
    assert status.missed == {"MissedDuringDowntime": 7}
    assert sorted(cron.jobs()) == sorted(f"tick-{slot_id(minute(n))}" for n in (1, 2, 10))
    assert status.last_schedule_time == minute(10)
    assert status.next_schedule_time == minute(11)
    # The CronJob learns of its Jobs' success from their status, without being woken by hand.
    cron.d.wait_phase(latest, "Succeeded")
    wait_for(lambda: cron.status("tick").last_successful_time is not None
             and cron.status("tick").active == [], 20,
             lambda: f"the CronJob never saw its Jobs finish: {cron.status('tick')}")


def test_history_limits_and_deleting_the_cronjob_delete_its_jobs(cron: Any) -> None:
    cron.put("keep", {"schedule": "* * * * *", "successfulJobsHistoryLimit": 1,
                      "jobTemplate": {"spec": {"template": template("true")}}})
    wait_for(lambda: cron.status("keep"), 20, lambda: "no status")
    for n in (1, 2, 3):
        cron.at(minute(n) + timedelta(seconds=1), "keep")
        name = f"keep-{slot_id(minute(n))}"
        wait_for(lambda name=name: name in cron.jobs(), 20, lambda name=name: f"no {name}")
        cron.d.wait_phase(name, "Succeeded")
    # Only the newest succeeded Job is kept; the older ones go with their status and records.
    newest = f"keep-{slot_id(minute(3))}"
    wait_for(lambda: sorted(cron.jobs()) == [newest], 20, lambda: f"kept {sorted(cron.jobs())}")
    for n in (1, 2):
        old = f"keep-{slot_id(minute(n))}"
        wait_for(lambda old=old: cron.store.get_status("jobs", "default", old) is None, 20,
                 lambda old=old: f"{old}'s status was not removed")
        assert cron.store.list_executions("jobs", "default", old) == []

    cron.store.delete_object("cronjobs", "default", "keep")
    wait_for(lambda: cron.jobs() == {} and cron.status("keep") is None, 30,
             lambda: f"left behind: {sorted(cron.jobs())}, {cron.status('keep')}")


def test_forbid_skips_a_slot_while_its_job_runs(cron: Any) -> None:
    cron.put("slow", {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
                      "jobTemplate": {"spec": {"template": template("sleep 30")}}})
    wait_for(lambda: cron.status("slow"), 20, lambda: "no status")
    cron.at(minute(1) + timedelta(seconds=1), "slow")
    first = f"slow-{slot_id(minute(1))}"
    wait_for(lambda: (s := cron.d.status(first)) is not None and s.active == 1, 20,
             lambda: f"{first} never ran: {cron.d.status(first)}")
    cron.at(minute(2) + timedelta(seconds=1), "slow")
    status = wait_for(lambda: (s := cron.status("slow")) and s.missed and s, 20,
                      lambda: f"the forbidden slot was not counted: {cron.status('slow')}")
    assert status.missed == {"ConcurrencyForbid": 1}
    assert sorted(cron.jobs()) == [first]
    assert isinstance(cron.d.status(first), JobStatus)


def test_a_job_document_decodes_as_users_write_it(cron: Any) -> None:
    """What the controller writes is a plain Job a user could have written."""
    cron.put("plain", {"schedule": "* * * * *",
                       "jobTemplate": {"spec": {"template": template("true")}}})
    wait_for(lambda: cron.status("plain"), 20, lambda: "no status")
    cron.at(minute(1), "plain")
    name = f"plain-{slot_id(minute(1))}"
    wait_for(lambda: name in cron.jobs(), 20, lambda: f"no {name}")
    raw = cron.store.get_raw(cron.store.keys.object("jobs", "default", name))
    decoded = decode_object(raw[0], plural="jobs", namespace="default", name=name)
    assert isinstance(decoded, Job)
