"""Execution records written in layout 1 (`executions/<ns>/<name>/<taskId>`, no kind) are moved
to layout 2 (`executions/<plural>/<ns>/<name>/<taskId>`) once, by the leader, before anything
acts on them (controller/migrate.py): nothing is lost, a rerun moves nothing, a deposed leader
moves nothing, and a Job whose history is in layout 1 carries on from it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from controller.api import ExecutionRecord, encode_model
from controller.executor import NotLeader
from controller.migrate import BATCH, migrate_execution_keys
from controller.reconcile import ObjectKey, task_id
from controller.runtime import Fence
from controller.store import Store
from tests.e2e.harness import Docket, template

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _finished(owner: ObjectKey, uid: int, index: int) -> ExecutionRecord:
    tid = task_id(owner, uid, index, 0)
    return ExecutionRecord(task_id=tid, index=index, attempt=0, state="TASK_FINISHED",
                           exit_code=0, submitted_at=NOW, finished_at=NOW)


def _write_layout_1(store: Store, owner: ObjectKey, uid: int, indexes: range) -> dict[str, bytes]:
    """Records as the code before layout 2 wrote them (Keys.execution had no kind then)."""
    written = {}
    for index in indexes:
        rec = _finished(owner, uid, index)
        value = encode_model(rec)
        store.put_raw(store.keys.legacy_execution(owner.namespace, owner.name, rec.task_id),
                      value)
        written[rec.task_id] = value
    return written


def _all(store: Store) -> dict[str, bytes]:
    items, _ = store.list_raw(store.keys.executions_root())
    return {key: value for key, value, *_ in items}


def test_every_record_moves_once_byte_for_byte(store: Store) -> None:
    a = _write_layout_1(store, ObjectKey("Job", "default", "a"), 7, range(BATCH + 13))
    b = _write_layout_1(store, ObjectKey("Job", "team", "b"), 9, range(3))
    # A namespace called "jobs" must not be mistaken for the plural of layout 2.
    c = _write_layout_1(store, ObjectKey("Job", "jobs", "c"), 11, range(2))
    stray = store.keys.executions_root() + "default/a/not-a-task-id"
    store.put_raw(stray, b"{}")

    assert migrate_execution_keys(store) == len(a) + len(b) + len(c)

    after = _all(store)
    keys = store.keys
    expected = {keys.execution("jobs", "default", "a", t): v for t, v in a.items()}
    expected |= {keys.execution("jobs", "team", "b", t): v for t, v in b.items()}
    expected |= {keys.execution("jobs", "jobs", "c", t): v for t, v in c.items()}
    expected[stray] = b"{}"  # not Docket's: left where it is
    assert after == expected
    # What the controller reads is there: the per-object listing of layout 2.
    assert len(store.list_executions("jobs", "default", "a")) == len(a)
    # A second run (a restart, another leader) finds nothing to move.
    assert migrate_execution_keys(store) == 0
    assert _all(store) == expected


def test_a_rerun_after_a_partial_move_finishes_it(store: Store) -> None:
    owner = ObjectKey("Job", "default", "half")
    written = _write_layout_1(store, owner, 3, range(6))
    # As if a previous leader died after moving the first three (each move is atomic).
    for tid in sorted(written)[:3]:
        store.put_raw(store.keys.execution("jobs", "default", "half", tid), written[tid])
        store.delete_raw(store.keys.legacy_execution("default", "half", tid))
    assert migrate_execution_keys(store) == 3
    assert {k.rsplit("/", 1)[1]: v for k, v in _all(store).items()} == written
    assert all(k.startswith(store.keys.executions_kind_prefix("jobs")) for k in _all(store))


def test_a_record_at_both_places_is_not_overwritten(store: Store) -> None:
    owner = ObjectKey("Job", "default", "both")
    written = _write_layout_1(store, owner, 5, range(2))
    tid = sorted(written)[0]
    newer = b'{"newer": true}'
    store.put_raw(store.keys.execution("jobs", "default", "both", tid), newer)
    assert migrate_execution_keys(store) == 1
    assert store.get_raw(store.keys.execution("jobs", "default", "both", tid))[0] == newer
    # The conflicting old key is kept, for an operator to look at, not silently dropped.
    assert store.get_raw(store.keys.legacy_execution("default", "both", tid)) is not None


def test_a_deposed_leader_moves_nothing(store: Store) -> None:
    written = _write_layout_1(store, ObjectKey("Job", "default", "fenced"), 5, range(4))
    leader_key = store.keys.controller("leader")
    revision = store.put_raw(leader_key, b"someone-else")
    before = _all(store)
    stale = Fence(leader_key, revision - 1, 0)  # the revision at which *we* had created it
    with pytest.raises(NotLeader):
        migrate_execution_keys(store, lambda: stale)
    assert _all(store) == before
    assert migrate_execution_keys(store, lambda: Fence(leader_key, revision, 0)) == len(written)


def test_a_job_carries_on_from_its_layout_1_history(
        store: Store, local_mesos: Callable[..., object]) -> None:
    """Index 0 succeeded under the old layout: after the move, only index 1 runs."""
    lm = local_mesos()
    spec = {"completions": 2, "completionMode": "Indexed", "template": template("true")}
    doc = json.dumps({"apiVersion": "docket.dev/v1", "kind": "Job", "spec": spec})
    revision = store.put_raw(store.keys.object("jobs", "default", "old"), doc.encode())
    uid = revision  # create_revision of the spec key
    owner = ObjectKey("Job", "default", "old")
    (done,) = _write_layout_1(store, owner, uid, range(1))
    migrate_execution_keys(store)
    d = Docket(store, lm).start()  # type: ignore[arg-type]
    try:
        status = d.wait_phase("old", "Succeeded", "Failed")
    finally:
        d.stop()
    assert status.phase == "Succeeded" and status.succeeded == 2, status
    records = d.executions("old")
    assert [(r.index, r.task_id) for r in records] == [
        (0, done), (1, task_id(owner, uid, 1, 0))]
    # Mesos ran index 1 only: index 0's success came from the migrated record.
    assert [t.task_id for t in lm.tasks()] == [task_id(owner, uid, 1, 0)]  # type: ignore[attr-defined]
