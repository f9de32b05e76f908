"""A leader failover in the middle of a Job costs no backoff and runs no index twice (issue 9 §6).

Two `docket run` replicas share a real etcd and the embedded Mesos, as an operator runs them.
The leader is killed with SIGKILL while it holds launch intents that Mesos never received: the
Mesos cluster is too small for the Job's parallelism, so some intents always wait for offers in
the leader's memory, exactly what a crash throws away. The standby takes over when the lease
expires, reconciliation answers TASK_UNKNOWN for those intents, and the Job must then finish in
less time than any backoff of the Job would take: its backoff starts at 120 s, so a single
written-off intent counted as a failure (the bug: every one of them was, and the job-wide
backoff then held every launch for minutes) fails the test. What ran is checked against the
master's own launches and its /tasks endpoint: every index launched exactly once, no task id
twice, and the intents the dead leader never sent were never launched under their ids.
"""

from __future__ import annotations

import collections
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.api import LAUNCHING, JobPhase
from controller.localmesos import LocalMesos
from controller.reconcile.job import NEVER_LAUNCHED
from controller.store import EtcdServer, Store
from tests.e2e.harness import Docket, Process, controller_env, sim, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

COMPLETIONS = 40
PARALLELISM = 10
# The cluster fits CAPACITY tasks at once, fewer than PARALLELISM: the others wait as intents.
CAPACITY = 5
TASK_CPUS = 0.1
BACKOFF_SECONDS = 120.0
# From the standby taking over to the Job's success: the remaining tasks take a few seconds;
# any backoff, even the first step of one, takes BACKOFF_SECONDS.
BOUND_SECONDS = 30.0
# A short lease: what is tested does not depend on its length, and the standby waits it out
# after the kill (it campaigns every 0.5 s under a 2 s lease).
LEASE_SECONDS = 2


class Replica(Process):
    """One `docket run` process of several, with the identity it leads under."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        super().__init__(env, log)
        self.name = name

    @property
    def identity(self) -> str:
        """What it writes into the leader key when it leads (LeaderElector's identity)."""
        assert self.proc is not None
        return f"{socket.gethostname()}:{self.proc.pid}"

    def tail(self) -> str:
        text = self.log.read_text() if self.log.exists() else ""
        return f"\n--- {self.name} log (tail) ---\n{text[-3000:]}"


@pytest.fixture
def replicas(etcd_server: EtcdServer, etcd_prefix: str,
             tmp_path: Path) -> Iterator[Callable[[LocalMesos, str], Replica]]:
    made: list[Replica] = []

    def make(lm: LocalMesos, name: str) -> Replica:
        env = controller_env(etcd_server.endpoint, etcd_prefix, lm,
                             DOCKET_LEADER_LEASE_SECONDS=str(LEASE_SECONDS))
        replica = Replica(name, env, tmp_path / f"{name}.log")
        made.append(replica)
        return replica

    yield make
    for replica in made:
        replica.cleanup()


def test_sigkill_of_the_leader_with_pending_intents_costs_no_backoff_and_no_duplicate(
        local_mesos: Callable[..., LocalMesos], store: Store,
        replicas: Callable[[LocalMesos, str], Replica]) -> None:
    lm = local_mesos(agents=1, simulate=True, cpus=CAPACITY * TASK_CPUS)
    # Every launch the master accepts, by task id (its /tasks keeps only the latest of an id).
    launches: collections.Counter[str] = collections.Counter()
    original = lm.master._launch

    def counting(fw: Any, agent: Any, role: str, info: dict[str, Any], available: Any) -> Any:
        launches[info["task_id"]["value"]] += 1
        return original(fw, agent, role, info, available)

    lm.master._launch = counting  # type: ignore[method-assign]

    user = Docket(store, lm)  # only its user-side helpers: never started
    leader_key = store.keys.controller("leader")

    def leader() -> str | None:
        found = store.get_raw(leader_key)
        return found[0].decode() if found is not None else None

    first, second = replicas(lm, "first"), replicas(lm, "second")
    first.start()
    wait_for(lambda: leader() == first.identity, 30,
             lambda: f"the first replica never led (leader {leader()!r})" + first.tail())
    second.start()

    user.put_job("big", {
        "completions": COMPLETIONS, "parallelism": PARALLELISM, "completionMode": "Indexed",
        "backoff": {"initialSeconds": BACKOFF_SECONDS, "maxSeconds": 360},
        "template": sim(duration=0.4, resources={"cpus": TASK_CPUS, "mem": 16}),
    })

    def mesos_tasks() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{lm.master_url}/tasks?limit=1000") as resp:
            tasks: list[dict[str, Any]] = json.loads(resp.read())["tasks"]
        return tasks

    def pending_intents() -> list[str]:
        """Intents in etcd that Mesos has never heard of."""
        known = {t["id"] for t in mesos_tasks()}
        return [r.task_id for r in user.executions("big")
                if r.state == LAUNCHING and r.task_id not in known]

    def finished() -> int:
        return sum(r.state == "TASK_FINISHED" for r in user.executions("big"))

    # Mid-job, with intents only the leader's memory holds.
    wait_for(lambda: finished() >= CAPACITY and len(pending_intents()) >= 3, 60,
             lambda: f"{finished()} finished, pending intents {pending_intents()}"
             + first.tail())
    assert leader() == first.identity, "the standby led before the kill: nothing is tested"
    first.kill()
    assert finished() < COMPLETIONS, "the job finished before the kill: nothing is tested"

    wait_for(lambda: leader() == second.identity, LEASE_SECONDS + 15,
             lambda: f"the standby never took over (leader {leader()!r})" + second.tail())
    took_over = time.monotonic()
    status = user.wait_phase("big", JobPhase.SUCCEEDED, JobPhase.FAILED, timeout=BOUND_SECONDS)
    elapsed = time.monotonic() - took_over
    assert status.phase == JobPhase.SUCCEEDED, f"{status}" + second.tail()
    assert elapsed < BOUND_SECONDS
    assert status.completed_indexes == list(range(COMPLETIONS))
    # A controller's crash is nobody's failure.
    assert (status.failed, status.system_failures) == (0, 0), status
    assert second.terminate() == 0

    records = user.executions("big")
    written_off = [r for r in records if r.kill_reason == NEVER_LAUNCHED]
    assert written_off, "no intent was written off: the kill hit no pending launch"
    assert all(r.state == "TASK_UNKNOWN" for r in written_off)
    assert not {r.task_id for r in written_off} & set(launches), \
        "an intent written off as never launched had reached Mesos"
    assert set(launches) <= {r.task_id for r in records}, "a launch without a recorded intent"
    twice = {tid: n for tid, n in launches.items() if n > 1}
    assert not twice, f"task ids launched more than once: {twice}"

    # What Mesos itself says: each index ran exactly once, and finished.
    tasks = mesos_tasks()
    ids = [t["id"] for t in tasks]
    assert len(ids) == len(set(ids))
    by_index = collections.Counter(int(t["id"].rsplit(".", 2)[1]) for t in tasks)
    assert by_index == dict.fromkeys(range(COMPLETIONS), 1), \
        f"indexes run other than once: {sorted(i for i, n in by_index.items() if n != 1)}"
    assert all(t["state"] == "TASK_FINISHED" for t in tasks)
