"""The executor's hand-over of launches against a real etcd: the controller hears of a
launch before its intent is written (so a reconciliation meanwhile leaves it out), and hears
that it was dropped when it never reaches the backend."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from controller.api.template import TaskTemplate
from controller.executor import Executor, Snapshot, StalePlan, log
from controller.mesos.backend import LaunchRequest
from controller.reconcile.actions import Launch, ObjectKey, Plan
from controller.store import Conflict, Store

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OWNER = ObjectKey("Job", "default", "race")


class Backend:
    """Only what the executor calls for launches."""

    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, requests: Iterable[LaunchRequest]) -> None:
        self.launched += [r.task_id for r in requests]

    def cancel(self, task_id: str) -> bool:
        return False


def plan(*task_ids: str) -> Plan:
    template = TaskTemplate.model_validate({"command": "true"})
    return Plan(actions=tuple(Launch(task_id=t, owner=OWNER, index=i, attempt=0,
                                     template=template) for i, t in enumerate(task_ids)))


def test_launches_are_announced_before_their_intents_are_written(store: Store) -> None:
    backend = Backend()
    seen_in_etcd: list[bool] = []

    def on_launch(ids: Iterable[str]) -> None:
        for tid in ids:
            seen_in_etcd.append(
                store.get_raw(store.keys.execution("jobs", "default", "race", tid)) is not None)

    executor = Executor(store, backend, on_launch=on_launch)  # type: ignore[arg-type]
    out = executor.apply(plan("job.default.race.5.0.0", "job.default.race.5.1.0"),
                         Snapshot("jobs", "default", "race", 0, {}), NOW)
    assert seen_in_etcd == [False, False]
    assert backend.launched == list(out.launched) == ["job.default.race.5.0.0",
                                                      "job.default.race.5.1.0"]


def test_launches_whose_intents_fail_are_dropped(store: Store) -> None:
    backend = Backend()
    announced: list[str] = []
    dropped: list[str] = []
    executor = Executor(store, backend, on_launch=announced.extend,  # type: ignore[arg-type]
                        on_launch_dropped=dropped.extend)
    tid = "job.default.race.5.0.0"
    store.put_raw(store.keys.execution("jobs", "default", "race", tid), b"{}")  # someone was first
    with pytest.raises((Conflict, StalePlan)):
        executor.apply(plan(tid), Snapshot("jobs", "default", "race", 0, {}), NOW)
    assert announced == dropped == [tid]
    assert backend.launched == []


def test_apply_many_commits_plans_together_and_keeps_each_outcome_its_own(
        store: Store) -> None:
    """Three objects' plans in one call: the one whose intent someone else wrote meanwhile
    is stale (nothing of it launched, its launch taken back); the others are written and
    launched together, in one etcd request."""
    backend = Backend()
    announced: list[str] = []
    dropped: list[str] = []
    written: list[str] = []
    executor = Executor(store, backend, on_launch=announced.extend,  # type: ignore[arg-type]
                        on_launch_dropped=dropped.extend,
                        on_written=lambda snap, rev, recs, status: written.extend(
                            r.task_id for r in recs))
    ids = {name: f"job.default.{name}.5.0.0" for name in ("a", "b", "c")}
    # Someone was first:
    store.put_raw(store.keys.execution("jobs", "default", "b", ids["b"]), b"{}")
    items = [(plan(ids[name]), Snapshot("jobs", "default", name, 0, {}), log)
             for name in ("a", "b", "c")]
    outcomes = executor.apply_many(items, NOW)
    assert isinstance(outcomes[1], StalePlan)
    a, c = outcomes[0], outcomes[2]
    assert not isinstance(a, BaseException) and not isinstance(c, BaseException)
    assert a.launched == (ids["a"],) and c.launched == (ids["c"],)
    assert a.revision == c.revision, "written by one etcd request"
    assert announced == [ids["a"], ids["b"], ids["c"]] and dropped == [ids["b"]]
    assert backend.launched == [ids["a"], ids["c"]] and written == [ids["a"], ids["c"]]
    for name in ("a", "c"):
        assert store.get_raw(store.keys.execution("jobs", "default", name, ids[name])) is not None


def test_apply_many_for_a_deposed_leader_writes_and_launches_nothing(store: Store) -> None:
    from controller.executor import NotLeader
    from controller.runtime import Fence

    backend = Backend()
    fence_key = store.keys.controller("leader-test")
    revision = store.put_raw(fence_key, b"me")
    store.put_raw(fence_key, b"someone else")  # the lease changed hands
    executor = Executor(store, backend,  # type: ignore[arg-type]
                        fence=lambda: Fence(fence_key, revision, 0))
    tid = "job.default.deposed.5.0.0"
    outcomes = executor.apply_many(
        [(plan(tid), Snapshot("jobs", "default", "deposed", 0, {}), log)], NOW)
    assert isinstance(outcomes[0], NotLeader)
    assert backend.launched == []
    assert store.get_raw(store.keys.execution("jobs", "default", "deposed", tid)) is None
