"""Throttles and pools across objects (issue 16), end to end: 50 Jobs of 4 tasks whose names
match one throttle of 10 and one pool, beside Jobs of other names, while the controller (a
real `docket run`) is killed with SIGKILL twice. What ran is read from the embedded Mesos —
its task list sampled all along and its launch log — never from Docket's status: never more
than 10 throttled tasks live at once, every one on the pool's agents, each task launched once,
all 200 succeed; the other Jobs run beside them, anywhere, unthrottled."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.api import JobStatus
from controller.localmesos import LocalMesos
from controller.store import EtcdServer, Store
from tests.e2e.harness import Process, controller_env, template, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

JOBS, TASKS, LIMIT = 50, 4, 10
LIVE = {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"}

POLICY = {
    "apiVersion": "docket.dev/v1", "kind": "Policy",
    "spec": {
        "throttles": [{"name": "mail", "match": {"kinds": ["Job"], "name": "mail-.*"},
                       "maxRunning": LIMIT}],
        "pools": [{"name": "email", "match": {"name": "mail-.*"},
                   "constraints": [["pool", "IS", "email"]]}],
    },
}


def _job(store: Store, name: str, duration: float) -> None:
    doc = {"apiVersion": "docket.dev/v1", "kind": "Job",
           "spec": {"completions": TASKS, "parallelism": TASKS,
                    "template": template("true", env={"DOCKET_SIM_DURATION": str(duration)})}}
    store.put_raw(store.keys.object("jobs", "default", name), json.dumps(doc).encode())


def _status(store: Store, name: str) -> JobStatus | None:
    found = store.get_status("jobs", "default", name)
    return found.status if found is not None else None  # type: ignore[return-value]


class Sampler:
    """Samples the master's live throttled tasks as fast as it can, until stopped."""

    def __init__(self, lm: LocalMesos) -> None:
        self.lm = lm
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            live = sum(1 for t in self.lm.tasks()
                       if ".mail-" in t.task_id and t.state in LIVE)
            self.peak = max(self.peak, live)
            self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_throttle_and_a_pool_hold_across_objects_and_two_sigkills(
        local_mesos: Callable[..., LocalMesos], store: Store, etcd_server: EtcdServer,
        etcd_prefix: str, tmp_path: Path) -> None:
    lm = local_mesos(simulate=True, cpus=4.0)  # the first agent: no pool attribute
    email = lm.add_agent(cpus=4.0, attributes={"pool": "email"})
    store.put_raw(f"{etcd_prefix}/policy", json.dumps(POLICY).encode())
    env = controller_env(etcd_server.endpoint, etcd_prefix, lm,
                         DOCKET_LEADER_LEASE_SECONDS="2")
    log = tmp_path / "controller.log"
    proc = Process(env, log)
    proc.start()
    try:
        with Sampler(lm) as sampler:
            for n in range(JOBS):
                _job(store, f"mail-{n:02d}", 0.2)
            for n in range(3):
                _job(store, f"other-{n}", 1.0)

            def finished() -> int:
                return sum(1 for t in lm.tasks()
                           if ".mail-" in t.task_id and t.state == "TASK_FINISHED")

            # The others are not held by the mail throttle: all twelve run at once, early.
            wait_for(lambda: sum(1 for t in lm.tasks() if ".other-" in t.task_id
                                 and t.state in LIVE | {"TASK_FINISHED"}) == 12, 60,
                     lambda: "the other Jobs were held; log: " + log.read_text()[-3000:])
            for kill_at in (60, 130):  # SIGKILL twice, mid-run
                wait_for(lambda kill_at=kill_at: finished() >= kill_at, 120,
                         lambda: f"{finished()} finished; log: " + log.read_text()[-3000:])
                proc.kill()
                proc.start()
            wait_for(lambda: all((s := _status(store, f"mail-{n:02d}")) is not None
                                 and s.phase == "Succeeded" for n in range(JOBS)), 120,
                     lambda: f"{finished()} finished; log: " + log.read_text()[-3000:])
        assert sampler.samples > 100 and sampler.peak <= LIMIT, (sampler.peak, sampler.samples)

        mail = [t for t in lm.tasks() if ".mail-" in t.task_id]
        assert len(mail) == JOBS * TASKS and all(t.state == "TASK_FINISHED" for t in mail)
        assert {t.agent_id for t in mail} == {email}  # the pool's agent only
        launched = [tid for _, _, tid, _ in lm.launches() if ".mail-" in tid]
        assert len(launched) == len(set(launched)) == JOBS * TASKS  # each launched once
        # The throttle bound (it was not a queue of one) and held: at most 10 at once, from
        # each launch's acceptance to the task's last status as the master recorded them.
        assert LIMIT - 3 <= _live_at_once(lm) <= LIMIT, _live_at_once(lm)
        others = [t for t in lm.tasks() if ".other-" in t.task_id]
        assert len(others) == 12 and all(t.state == "TASK_FINISHED" for t in others)
    finally:
        proc.cleanup()


def _live_at_once(lm: LocalMesos) -> int:
    """The most throttled tasks ever live together, from the launch log and each task's end
    as the master recorded it (not from sampling)."""
    ends = {t.task_id: max(s["timestamp"] for s in t.statuses) for t in lm.tasks()
            if ".mail-" in t.task_id}
    events = []
    for at, _, task_id, _ in lm.launches():
        if task_id in ends:
            events += [(at, 1), (ends[task_id], -1)]
    live = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        live += delta
        peak = max(peak, live)
    return peak
