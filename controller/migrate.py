"""Migrations of what Docket keeps in etcd, run by the leader before any controller acts.

Layout 2 (docs/architecture.md §3) puts the kind in every execution record's key,
`executions/<plural>/<ns>/<name>/<taskId>`, because two kinds may share a name. Layout 1 had
`executions/<ns>/<name>/<taskId>`: a record there would be invisible to every controller (its
task orphaned and killed, its history gone from `docket describe`), so the leader moves each
one before it starts acting. The two layouts cannot be confused: a layout-1 key has three
segments after `executions/`, a layout-2 key four. The kind comes from the task id alone
(`<kind>.<ns>.<name>.<uid>.<index>.<attempt>`), which every record of layout 1 has.

Each move is one fenced transaction per batch: create the new key (only if absent) and delete
the old one (only if unchanged), so a crash at any point leaves every record in exactly one
place and a rerun carries on with what is left; a deposed leader moves nothing. A record whose
new key already exists (only possible if something else wrote it) is left where it is and
reported rather than overwritten. Keys that are not execution records of Docket's (a task id
of another shape) are left alone and reported.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from controller.api import KINDS
from controller.executor import NotLeader, StalePlan, fenced_commit
from controller.reconcile import parse_task_id
from controller.runtime import Fence
from controller.store import Delete, Expect, Put, Store

log = structlog.get_logger("docket.migrate")

# Two operations and two conditions per record, plus the fence: within etcd's 128.
BATCH = 50

_PLURAL_OF = {k.name: k.plural for k in KINDS}


def migrate_execution_keys(store: Store, fence: Callable[[], Fence | None] | None = None
                           ) -> int:
    """Move every layout-1 execution record to its layout-2 key; the number moved. Raises
    NotLeader if the fence is lost; safe to run again at any time."""
    keys = store.keys
    root = keys.executions_root()
    items, _ = store.list_raw(root)
    moves: list[tuple[str, str, bytes, int]] = []
    for key, value, mod, *_ in items:
        parts = key[len(root):].split("/")
        if len(parts) != 3:
            continue  # layout 2 (or a stray key of no layout: not ours to move)
        namespace, name, task_id = parts
        task = parse_task_id(task_id)
        plural = _PLURAL_OF.get(task.owner.kind) if task is not None else None
        if task is None or plural is None or (task.owner.namespace, task.owner.name) != (
                namespace, name):
            log.warning("leaving a key under executions/ that is not a Docket record",
                        key=key)
            continue
        moves.append((key, keys.execution(plural, namespace, name, task_id), value, mod))
    moved = 0
    for i in range(0, len(moves), BATCH):
        moved += _move(store, fence, moves[i:i + BATCH])
    if moves:
        log.info("execution records moved to the kind-aware layout", moved=moved,
                 found=len(moves))
    return moved


def _move(store: Store, fence: Callable[[], Fence | None] | None,
          batch: list[tuple[str, str, bytes, int]]) -> int:
    ops: list[Put | Delete] = []
    expect: list[Expect] = []
    for old, new, value, mod in batch:
        ops += [Put(new, value), Delete(old)]
        expect += [Expect(new, 0), Expect(old, mod)]
    try:
        fenced_commit(store, fence, ops, expect)
        return len(batch)
    except NotLeader:
        raise
    except StalePlan:
        # Someone changed one of them meanwhile (a controller of layout 1 still running, or a
        # key already at its new place): move them one by one, as they are now.
        pass
    moved = 0
    for old, new, _value, _mod in batch:
        found = store.get_raw(old)
        if found is None:
            continue
        if store.get_raw(new) is not None:
            log.error("execution record exists under both layouts; leaving the old key",
                      old=old, new=new)
            continue
        try:
            fenced_commit(store, fence, [Put(new, found[0]), Delete(old)],
                          [Expect(new, 0), Expect(old, found[1])])
            moved += 1
        except StalePlan:
            log.warning("execution record changed while being moved; the next start moves "
                        "it", key=old)
    return moved
