"""End to end: Jobs written into a real etcd as users write them, run by the controller on the
embedded Mesos, status and executions read back from etcd."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from controller.localmesos import TERMINAL_STATES as TERMINAL
from controller.localmesos import LocalMesos
from controller.metrics import RECONCILE_RESULTS
from controller.store import Store
from tests.e2e.harness import Docket, sim, template, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


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


FAST_BACKOFF = {"initialSeconds": 0.2, "maxSeconds": 1, "factor": 2}


def test_retries_with_backoff_until_success(
        local_mesos: Callable[..., LocalMesos], docket_factory: Callable[[LocalMesos], Docket],
        tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    # Fails twice (exit 1), then succeeds: the count of runs lives in a file.
    script = (f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; "
              f"[ $n -ge 2 ]")
    d = docket_factory(local_mesos())
    d.put_job("flaky", {"backoffLimit": 3, "backoff": FAST_BACKOFF, "template": template(script)})
    status = d.wait_phase("flaky", "Succeeded", "Failed")
    assert status.phase == "Succeeded", status
    assert (status.succeeded, status.failed) == (1, 2)
    records = d.executions("flaky")
    assert [(r.index, r.attempt, r.state) for r in records] == [
        (0, 0, "TASK_FAILED"), (0, 1, "TASK_FAILED"), (0, 2, "TASK_FINISHED")]
    assert [r.exit_code for r in records] == [1, 1, 0]
    # The second retry waited at least the doubled backoff after the second failure.
    gap = records[2].submitted_at - records[1].finished_at  # type: ignore[operator]
    assert gap.total_seconds() >= 0.35, gap


def reconciles(kind: str) -> float:
    """Reconciles of `kind` finished so far in this process, whatever their result."""
    return sum(REGISTRY.get_sample_value("docket_reconcile_total",
                                         {"kind": kind, "result": result}) or 0.0
               for result in RECONCILE_RESULTS)


def test_backoff_limit_exceeded_fails_the_job(
        local_mesos: Callable[..., LocalMesos],
        docket_factory: Callable[[LocalMesos], Docket]) -> None:
    lm = local_mesos()
    d = docket_factory(lm)
    d.put_job("broken", {"backoffLimit": 1, "backoff": FAST_BACKOFF,
                         "template": template("sh -c 'exit 3'")})
    status = d.wait_phase("broken", "Failed", "Succeeded")
    assert status.phase == "Failed"
    cond = status.condition("Failed")
    assert cond is not None and cond.reason == "BackoffLimitExceeded", cond
    records = d.executions("broken")
    assert [r.exit_code for r in records] == [3, 3]
    assert status.failed == 2
    # Nothing more is launched after the job failed: the controller has reconciled it again
    # (on resync) since, and still there are two executions and two tasks in Mesos.
    before = reconciles("Job")
    wait_for(lambda: reconciles("Job") >= before + 2, 10, lambda: "no reconcile after failure")
    assert len(d.executions("broken")) == 2
    assert len(lm.tasks()) == 2


def test_task_timeout_kills_and_counts_a_failure(
        local_mesos: Callable[..., LocalMesos],
        docket_factory: Callable[[LocalMesos], Docket]) -> None:
    lm = local_mesos()
    d = docket_factory(lm)
    d.put_job("slow", {"backoffLimit": 0, "taskTimeoutSeconds": 1,
                       "template": template("sleep 60", killGracePeriodSeconds=0.5)})
    status = d.wait_phase("slow", "Failed", "Succeeded", timeout=20)
    cond = status.condition("Failed")
    assert cond is not None and cond.reason == "BackoffLimitExceeded", status
    [record] = d.executions("slow")
    assert record.kill_reason == "TaskTimeout"
    wait_for(lambda: d.executions("slow")[0].state == "TASK_KILLED", 10,
             lambda: str(d.executions("slow")))
    assert all(t.state in TERMINAL for t in lm.tasks())


def test_active_deadline_fails_the_job_and_kills_its_tasks(
        local_mesos: Callable[..., LocalMesos],
        docket_factory: Callable[[LocalMesos], Docket]) -> None:
    lm = local_mesos()
    d = docket_factory(lm)

    def counted(metric: str, reason: str) -> float:
        return REGISTRY.get_sample_value(metric, {"reason": reason}) or 0.0

    killed_before = counted("docket_tasks_killed_total", "deadline")
    failed_before = counted("docket_tasks_failed_total", "deadline")
    d.put_job("late", {"completions": 2, "parallelism": 2, "activeDeadlineSeconds": 1.5,
                       "template": template("sleep 60", killGracePeriodSeconds=0.5)})
    status = d.wait_phase("late", "Failed", "Succeeded", timeout=20)
    cond = status.condition("Failed")
    assert cond is not None and cond.reason == "DeadlineExceeded", status
    wait_for(lambda: len(lm.tasks()) == 2 and all(t.state in TERMINAL for t in lm.tasks()),
             10, lambda: str([(t.task_id, t.state) for t in lm.tasks()]))
    records = wait_for(lambda: [r for r in d.executions("late") if r.state == "TASK_KILLED"]
                       if all(r.state == "TASK_KILLED" for r in d.executions("late")) else None,
                       10, lambda: str(d.executions("late")))
    assert {r.kill_reason for r in records} == {"DeadlineExceeded"}
    # Each task counted once, however many passes repeated its kill.
    assert counted("docket_tasks_killed_total", "deadline") - killed_before == 2
    # Counted right after the record is committed: allow the pump its moment.
    wait_for(lambda: counted("docket_tasks_failed_total", "deadline") - failed_before == 2, 5,
             lambda: str(counted("docket_tasks_failed_total", "deadline") - failed_before))


def test_agent_removed_gives_a_system_retry_on_another_agent(
        local_mesos: Callable[..., LocalMesos],
        docket_factory: Callable[[LocalMesos], Docket]) -> None:
    lm = local_mesos(agents=2, simulate=True, cpus=1.0)
    d = docket_factory(lm)
    d.put_job("moved", {"backoffLimit": 0, "template": sim(duration=2.0, resources={
        "cpus": 0.6, "mem": 16})})
    first = wait_for(lambda: [r for r in d.executions("moved") if r.state == "TASK_RUNNING"],
                     15, lambda: str(d.executions("moved")))[0]
    lm.remove_agent(first.agent_id)
    status = d.wait_phase("moved", "Succeeded", "Failed", timeout=20)
    assert status.phase == "Succeeded", status
    assert (status.system_failures, status.failed, status.succeeded) == (1, 0, 1)
    old, new = d.executions("moved")
    assert old.state == "TASK_GONE_BY_OPERATOR" and old.attempt == 0
    assert new.state == "TASK_FINISHED" and new.attempt == 1
    assert new.agent_id != first.agent_id


def test_suspend_kills_tasks_and_resume_finishes_the_job(
        local_mesos: Callable[..., LocalMesos],
        docket_factory: Callable[[LocalMesos], Docket]) -> None:
    lm = local_mesos(simulate=True)
    d = docket_factory(lm)
    spec = {"completions": 2, "parallelism": 2, "template": sim(duration=1.5)}
    d.put_job("pausable", spec)
    wait_for(lambda: sum(r.state == "TASK_RUNNING" for r in d.executions("pausable")) == 2, 15,
             lambda: str(d.executions("pausable")))
    d.put_job("pausable", {**spec, "suspend": True})
    status = d.wait_phase("pausable", "Suspended")
    wait_for(lambda: all(r.state == "TASK_KILLED" for r in d.executions("pausable")), 10,
             lambda: str(d.executions("pausable")))
    assert all(t.state in TERMINAL for t in lm.tasks())
    now = d.status("pausable")
    assert now is not None and now.active == 0 and now.failed == 0
    assert status.active == 0
    d.put_job("pausable", {**spec, "suspend": False})
    status = d.wait_phase("pausable", "Succeeded", "Failed", timeout=20)
    assert status.phase == "Succeeded" and status.failed == 0 and status.succeeded == 2
    cond = status.condition("Suspended")
    assert cond is not None and cond.status == "False"
    assert len(d.executions("pausable")) == 4


def test_deleting_a_job_kills_its_tasks_and_removes_its_records(
        local_mesos: Callable[..., LocalMesos],
        docket_factory: Callable[[LocalMesos], Docket]) -> None:
    lm = local_mesos(simulate=True)
    d = docket_factory(lm)
    d.put_job("doomed", {"completions": 3, "parallelism": 3, "template": sim(duration=60)})
    wait_for(lambda: sum(r.state == "TASK_RUNNING" for r in d.executions("doomed")) == 3, 15,
             lambda: str(d.executions("doomed")))
    d.delete_job("doomed")
    wait_for(lambda: d.status("doomed") is None and not d.executions("doomed"), 15,
             lambda: f"{d.status('doomed')} {d.executions('doomed')}")
    assert len(lm.tasks()) == 3 and all(t.state == "TASK_KILLED" for t in lm.tasks())


def test_ttl_deletes_a_finished_job_and_its_records(
        local_mesos: Callable[..., LocalMesos],
        docket_factory: Callable[[LocalMesos], Docket]) -> None:
    d = docket_factory(local_mesos(simulate=True))
    d.put_job("brief", {"ttlSecondsAfterFinished": 1, "template": sim(duration=0.1)})
    d.wait_phase("brief", "Succeeded")
    assert d.store.get("jobs", "default", "brief") is not None
    wait_for(lambda: d.store.get("jobs", "default", "brief") is None
             and d.status("brief") is None and not d.executions("brief"), 15,
             lambda: f"{d.status('brief')} {d.executions('brief')}")


def test_invalid_spec_is_reported_and_fixing_it_proceeds(
        local_mesos: Callable[..., LocalMesos],
        docket_factory: Callable[[LocalMesos], Docket]) -> None:
    lm = local_mesos(simulate=True)
    d = docket_factory(lm)
    bad = ('{"apiVersion": "docket.dev/v1", "kind": "Job", "spec": {"completions": 1, '
           '"template": {"command": "true", "resources": {"cpus": -1, "mem": 16}}}}')
    d.put_job("typo", bad)
    d.put_job("fine", {"template": sim(duration=0.1)})
    status = d.wait_phase("typo", "Invalid")
    cond = status.condition("Invalid")
    assert cond is not None and cond.status == "True"
    assert "spec.template.resources.cpus" in cond.message, cond.message
    assert d.wait_phase("fine", "Succeeded").succeeded == 1
    assert not d.executions("typo")
    assert all(t.task_id.startswith("job.default.fine.") for t in lm.tasks())
    # Not JSON or YAML at all: Invalid too, the other jobs unaffected.
    d.put_job("garbage", "{{{ not yaml")
    assert d.wait_phase("garbage", "Invalid").condition("Invalid") is not None
    # A misspelt field is an error, never silently ignored (YAML, as etcdctl users write it).
    d.put_job("misspelt", "apiVersion: docket.dev/v1\nkind: Job\nspec:\n  completions: 1\n"
                          "  paralelism: 2\n  template:\n    command: 'true'\n")
    cond = d.wait_phase("misspelt", "Invalid").condition("Invalid")
    assert cond is not None and "spec.paralelism" in cond.message, cond
    assert not d.executions("misspelt")
    d.put_job("typo", {"template": sim(duration=0.1)})
    status = d.wait_phase("typo", "Succeeded", timeout=20)
    cond = status.condition("Invalid")
    assert cond is not None and cond.status == "False"
