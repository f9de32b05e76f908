"""A write-through cache of what the controller itself writes: each object's status and
execution records, with their etcd mod_revisions.

Why: the controller is the only writer of these keys, so after one bulk load at start it can
know them without reading etcd on every reconcile and every Mesos update (which bounded
throughput at a few round trips per event). Why it stays safe: the cache is never trusted for
correctness — every write made from it is a compare-and-swap on the cached mod_revision, so a
stale entry only makes a write fail (Conflict), and the owner is then dropped from the cache
and read again from etcd on its next use. Any write whose outcome is unknown (an error) drops
the owner too.

Entries are replaced only by higher revisions, so a worker loading an owner from etcd while the
Mesos-event thread records an update cannot move a record back in time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller.api import ExecutionRecord, StatusBase, decode_status
from controller.store import Store, StoreError


@dataclass
class OwnerRecords:
    status: StatusBase | None = None
    status_revision: int = 0
    executions: dict[str, tuple[ExecutionRecord, int]] = field(default_factory=dict)


def _decode_record(key: str, value: bytes) -> ExecutionRecord:
    try:
        return ExecutionRecord.model_validate_json(value)
    except ValueError as exc:
        raise StoreError(f"execution record {key} is corrupt: {exc}") from None


class RecordCache:
    def __init__(self, store: Store, plural: str) -> None:
        self.store = store
        self.plural = plural
        self._lock = threading.Lock()
        self._owners: dict[tuple[str, str], OwnerRecords] = {}
        # True once everything was loaded: an owner missing from the cache then has nothing
        # in etcd either (until invalidated, when it is read again).
        self._complete = False
        self._stale: set[tuple[str, str]] = set()

    # --- loading -----------------------------------------------------------------------------
    def load_all(self) -> None:
        """Read every status and execution record of the kind (two range reads)."""
        keys = self.store.keys
        statuses, _ = self.store.list_raw(keys.status_prefix(self.plural))
        execs, revision = self.store.list_raw(keys.executions_kind_prefix(self.plural))
        owners: dict[tuple[str, str], OwnerRecords] = {}
        head = len(keys.status_prefix(self.plural))
        for key, value, mod, *_ in statuses:
            parts = key[head:].split("/")
            if len(parts) == 2:
                owner = owners.setdefault((parts[0], parts[1]), OwnerRecords())
                owner.status = decode_status(self.plural, value)
                owner.status_revision = mod
        head = len(keys.executions_kind_prefix(self.plural))
        for key, value, mod, *_ in execs:
            parts = key[head:].split("/")
            if len(parts) == 3:
                owner = owners.setdefault((parts[0], parts[1]), OwnerRecords())
                owner.executions[parts[2]] = (_decode_record(key, value), mod)
        with self._lock:
            for ident, loaded in owners.items():
                self._merge_locked(ident, loaded, revision)
            self._complete = True
            self._stale.clear()

    def _load_owner(self, namespace: str, name: str) -> None:
        keys = self.store.keys
        found = self.store.get_raw(keys.status(self.plural, namespace, name))
        items, revision = self.store.list_raw(keys.executions_prefix(self.plural, namespace,
                                                                     name))
        loaded = OwnerRecords()
        if found is not None:
            loaded.status = decode_status(self.plural, found[0])
            loaded.status_revision = found[1]
        for key, value, mod, *_ in items:
            loaded.executions[key.rsplit("/", 1)[1]] = (_decode_record(key, value), mod)
        with self._lock:
            self._stale.discard((namespace, name))
            self._owners.pop((namespace, name), None)
            self._merge_locked((namespace, name), loaded, revision)

    def _merge_locked(self, ident: tuple[str, str], loaded: OwnerRecords, revision: int) -> None:
        current = self._owners.get(ident)
        if current is None:
            self._owners[ident] = loaded
            return
        if loaded.status_revision > current.status_revision:
            current.status, current.status_revision = loaded.status, loaded.status_revision
        for tid, (rec, mod) in loaded.executions.items():
            have = current.executions.get(tid)
            if have is None or have[1] < mod:
                current.executions[tid] = (rec, mod)
        for tid in [t for t, (_, mod) in current.executions.items()
                    if t not in loaded.executions and mod <= revision]:
            del current.executions[tid]

    def _owner(self, namespace: str, name: str) -> OwnerRecords | None:
        with self._lock:
            ident = (namespace, name)
            if ident not in self._stale and (ident in self._owners or self._complete):
                return self._owners.setdefault(ident, OwnerRecords())
        return None

    # --- reads -------------------------------------------------------------------------------
    def _loaded(self, namespace: str, name: str) -> OwnerRecords:
        """The cached owner, loaded from etcd first when not cached."""
        owner = self._owner(namespace, name)
        if owner is None:
            self._load_owner(namespace, name)
            owner = self._owner(namespace, name)
            assert owner is not None
        return owner

    def get(self, namespace: str, name: str) -> OwnerRecords:
        """A copy of the owner's status and records (loaded from etcd when not cached)."""
        owner = self._loaded(namespace, name)
        with self._lock:
            return OwnerRecords(owner.status, owner.status_revision, dict(owner.executions))

    def execution(self, namespace: str, name: str, task_id: str
                  ) -> tuple[ExecutionRecord, int] | None:
        owner = self._loaded(namespace, name)
        with self._lock:
            return owner.executions.get(task_id)

    def all_executions(self) -> list[ExecutionRecord]:
        with self._lock:
            return [rec for o in self._owners.values() for rec, _ in o.executions.values()]

    def count_by_owner(self, counts: Callable[[ExecutionRecord], bool]
                       ) -> dict[tuple[str, str], int]:
        """Per owner (namespace, name), how many of its cached records `counts` accepts;
        owners with none are left out. One pass under the lock, nothing copied: the throttles
        ask this at every round of offers."""
        out: dict[tuple[str, str], int] = {}
        with self._lock:
            for ident, owner in self._owners.items():
                n = sum(1 for rec, _ in owner.executions.values() if counts(rec))
                if n:
                    out[ident] = n
        return out

    def owners(self) -> list[tuple[str, str]]:
        with self._lock:
            return [ident for ident, o in self._owners.items()
                    if o.status is not None or o.executions]

    # --- after writes ------------------------------------------------------------------------
    def wrote(self, namespace: str, name: str, revision: int,
              records: Iterable[ExecutionRecord] = (), status: StatusBase | None = None) -> None:
        with self._lock:
            owner = self._owners.get((namespace, name))
            if owner is None:
                if not self._complete:
                    return
                owner = self._owners.setdefault((namespace, name), OwnerRecords())
            for rec in records:
                have = owner.executions.get(rec.task_id)
                if have is None or have[1] < revision:
                    owner.executions[rec.task_id] = (rec, revision)
            if status is not None and owner.status_revision < revision:
                owner.status, owner.status_revision = status, revision

    def forgot(self, namespace: str, name: str, task_ids: Iterable[str]) -> None:
        """Those execution records were deleted (a Queue's done batch)."""
        with self._lock:
            owner = self._owners.get((namespace, name))
            if owner is not None:
                for tid in task_ids:
                    owner.executions.pop(tid, None)

    def deleted(self, namespace: str, name: str) -> None:
        """Status and records were deleted."""
        with self._lock:
            self._owners[(namespace, name)] = OwnerRecords()

    def invalidate(self, namespace: str, name: str) -> None:
        """The cache may be wrong about this owner: read it from etcd next time."""
        with self._lock:
            self._owners.pop((namespace, name), None)
            self._stale.add((namespace, name))
