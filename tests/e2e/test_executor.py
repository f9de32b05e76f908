"""The executor's hand-over of launches against a real etcd: the controller hears of a
launch before its intent is written (so a reconciliation meanwhile leaves it out), and hears
that it was dropped when it never reaches the backend."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from controller.api.template import TaskTemplate
from controller.executor import Executor, Snapshot, StalePlan
from controller.mesos.backend import LaunchRequest
from controller.reconcile.actions import Launch, ObjectKey, Plan
from controller.store import Conflict, Store

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
                store.get_raw(store.keys.execution("default", "race", tid)) is not None)

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
    store.put_raw(store.keys.execution("default", "race", tid), b"{}")  # someone was first
    with pytest.raises((Conflict, StalePlan)):
        executor.apply(plan(tid), Snapshot("jobs", "default", "race", 0, {}), NOW)
    assert announced == dropped == [tid]
    assert backend.launched == []
