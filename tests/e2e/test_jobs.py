"""End to end: Jobs written into a real etcd as users write them, run by the controller on the
embedded Mesos, status and executions read back from etcd."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from controller.localmesos import LocalMesos
from controller.store import Store
from tests.e2e.harness import Docket, template

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def docket_factory(store: Store) -> Iterator[Callable[[LocalMesos], Docket]]:
    made: list[Docket] = []

    def make(lm: LocalMesos, **kw: float) -> Docket:
        d = Docket(store, lm, **kw)  # type: ignore[arg-type]
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()


def test_job_with_three_completions_succeeds_with_three_executions(
        local_mesos: Callable[..., LocalMesos], docket_factory: Callable[[LocalMesos], Docket]
) -> None:
    lm = local_mesos()
    d = docket_factory(lm)
    d.put_job("hello", {"completions": 3, "parallelism": 2,
                        "template": template("echo hello")})
    status = d.wait_phase("hello", "Succeeded", "Failed")
    assert status.phase == "Succeeded", status
    assert (status.succeeded, status.failed, status.system_failures, status.active) == (3, 0, 0, 0)
    assert status.start_time is not None and status.completion_time is not None
    assert status.condition("Complete") is not None
    records = d.executions("hello")
    assert sorted(r.index for r in records) == [0, 1, 2]
    fid = d.store.get_framework_id()
    for r in records:
        assert r.state == "TASK_FINISHED" and r.exit_code == 0, r
        assert r.agent_id and r.hostname
        assert r.submitted_at and r.started_at and r.finished_at
        assert r.duration_seconds is not None and r.duration_seconds >= 0
        assert r.sandbox_path == f"/frameworks/{fid}/executors/{r.task_id}/runs/latest"
        out = lm.resolve_sandbox_path(r.sandbox_path + "/stdout")
        assert out is not None and out.read_text() == "hello\n"
    # Mesos ran exactly three tasks, with the ids recorded.
    assert sorted(t.task_id for t in lm.tasks()) == sorted(r.task_id for r in records)
