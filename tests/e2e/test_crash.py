"""A controller killed with SIGKILL in the middle of a 50-task Job and started again: every
index completes exactly once and no attempt id reaches Mesos twice. The controller runs as a
real `docket run` process; etcd and the embedded Mesos outlive it, as in production."""

from __future__ import annotations

import collections
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from controller.store import EtcdServer, Store
from tests.e2e.harness import Docket, Process, controller_env, sim, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def controller_process(etcd_server: EtcdServer, etcd_prefix: str,
                       tmp_path: Path) -> Iterator[Callable[[LocalMesos], Process]]:
    made: list[Process] = []

    def make(lm: LocalMesos) -> Process:
        # A short lease: the restarted process waits out the killed one's before it leads.
        env = controller_env(etcd_server.endpoint, etcd_prefix, lm,
                             DOCKET_LEADER_LEASE_SECONDS="2")
        p = Process(env, tmp_path / "controller.log")
        made.append(p)
        return p

    yield make
    for p in made:
        p.cleanup()


def test_sigkill_mid_job_and_restart_completes_every_index_once(
        local_mesos: Callable[..., LocalMesos], store: Store,
        controller_process: Callable[[LocalMesos], Process], tmp_path: Path) -> None:
    lm = local_mesos(agents=4, simulate=True)
    # Count every task Mesos is asked to launch, by id (the master's own record keeps only
    # the latest task of an id).
    launches: collections.Counter[str] = collections.Counter()
    original = lm.master._launch

    def counting(fw: Any, agent: Any, role: str, info: dict[str, Any], available: Any) -> Any:
        launches[info["task_id"]["value"]] += 1
        return original(fw, agent, role, info, available)

    lm.master._launch = counting  # type: ignore[method-assign]

    user = Docket(store, lm)  # only its user-side helpers are used: never started
    proc = controller_process(lm)
    proc.start()
    user.put_job("big", {"completions": 50, "parallelism": 10, "systemRetryLimit": 100,
                         # Intents cut off by the kill come back GONE/UNKNOWN: retried soon.
                         "backoff": {"initialSeconds": 0.1, "maxSeconds": 0.5},
                         "completionMode": "Indexed", "template": sim(duration=0.3)})

    def finished() -> int:
        return sum(r.state == "TASK_FINISHED" for r in user.executions("big"))

    wait_for(lambda: finished() >= 15, 60, lambda: f"only {finished()} finished; log: "
             + (tmp_path / "controller.log").read_text()[-3000:])
    proc.kill()
    at_kill = finished()
    assert at_kill < 50, "the job finished before the kill: the test proves nothing"
    proc.start()
    status = user.wait_phase("big", "Succeeded", "Failed", timeout=90)
    assert status.phase == "Succeeded", status
    assert status.succeeded == 50 and status.completed_indexes == list(range(50))
    assert proc.terminate() == 0

    records = user.executions("big")
    done = [r.index for r in records if r.state == "TASK_FINISHED"]
    assert sorted(done) == list(range(50)), "an index completed twice or never"
    twice = {tid: n for tid, n in launches.items() if n > 1}
    assert not twice, f"attempt ids launched more than once: {twice}"
    assert set(launches) <= {r.task_id for r in records}, "a launch without a recorded intent"
    # What Mesos itself says, through its HTTP endpoint.
    with urllib.request.urlopen(f"{lm.master_url}/tasks?limit=1000") as resp:
        tasks = json.loads(resp.read())["tasks"]
    ids = [t["id"] for t in tasks]
    assert len(ids) == len(set(ids))
    finished_indexes = [int(t["id"].rsplit(".", 2)[1]) for t in tasks
                        if t["state"] == "TASK_FINISHED"]
    assert sorted(finished_indexes) == list(range(50))
