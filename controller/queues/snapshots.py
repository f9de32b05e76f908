"""Read-only snapshots of a live dict that later changes do not alter, without copying it:
the `items` and `claims` of a Queue's view (`controller/queues/etcd_items.py`).

A snapshot reads through to the live dict; every change made after it was taken first records
the old value in the snapshot's own undo log (only while the snapshot is alive: weak
references). Taking one is O(1), a change O(1) per live snapshot, and a read O(1).

Reads take no lock: the writer records the old value in the undo log before changing the live
dict, and a reader looks in the undo log after reading the live dict, so under CPython's
interpreter lock a reader sees either the old value or a consistent record of it.
"""

from __future__ import annotations

import enum
import threading
import weakref
from collections.abc import Callable, ItemsView, Iterator, Mapping, ValuesView
from typing import Any, Generic, Literal, TypeVar

V = TypeVar("V")


class _Mark(enum.Enum):
    UNTOUCHED = 0  # not in a snapshot's undo log: read the live dict
    ABSENT = 1  # in an undo log: the key did not exist when the snapshot was taken


class UndoLog(Generic[V]):
    """A dict that hands out read-only snapshots in O(1) (see the module docstring). Changes
    are made under `lock` (the cache's), and so is every iteration of a snapshot; looking a
    key up in a snapshot takes no lock (`Snapshot.__getitem__` says why that is safe)."""

    __slots__ = ("_latest", "_snapshots", "data", "lock")

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        # Read (not changed) by the owner directly; changed only through set/pop/reorder.
        self.data: dict[str, V] = {}
        self._snapshots: list[weakref.ref[Snapshot[V]]] = []
        # The snapshot handed out since the last change, handed out again until the next one
        # (a view per pass with no change in between costs no new snapshot).
        self._latest: Snapshot[V] | None = None

    def _live_snapshots(self) -> list[Snapshot[V]]:
        self._latest = None
        if not self._snapshots:
            return []
        alive = [s for s in (ref() for ref in self._snapshots) if s is not None]
        if len(alive) != len(self._snapshots):
            self._snapshots = [weakref.ref(s) for s in alive]
        return alive

    def _touch(self, key: str) -> None:
        """Record the value of `key` in every live snapshot that has not recorded it yet:
        always BEFORE the live dict changes (lock-free readers rely on that order)."""
        for snap in self._live_snapshots():
            if key not in snap.undo:
                snap.undo[key] = self.data.get(key, _Mark.ABSENT)

    def set(self, key: str, value: V) -> None:
        self._touch(key)
        self.data[key] = value

    def pop(self, key: str) -> None:
        if key in self.data:
            self._touch(key)
            del self.data[key]

    def reorder(self, key: Callable[[str], Any]) -> None:
        """Sort the keys by `key`. The dict is emptied and refilled, which a lock-free reader
        could see half done: every live snapshot records every key first (a rare path: a
        watch never needs it)."""
        for snap in self._live_snapshots():
            for k, v in self.data.items():
                snap.undo.setdefault(k, v)
        ordered = sorted(self.data.items(), key=lambda kv: key(kv[0]))
        self.data.clear()
        self.data.update(ordered)

    def snapshot(self) -> Snapshot[V]:
        if self._latest is None:
            self._latest = Snapshot(self)
            self._snapshots.append(weakref.ref(self._latest))
        return self._latest


class Snapshot(Mapping[str, V]):
    """The contents of an `UndoLog` when this was taken. Iteration order is not meaningful."""

    __slots__ = ("__weakref__", "_len", "_live", "_lock", "undo")

    def __init__(self, owner: UndoLog[V]) -> None:
        self._live = owner.data  # the same dict object for the owner's whole life
        self._lock = owner.lock
        self._len = len(owner.data)
        self.undo: dict[str, V | Literal[_Mark.ABSENT]] = {}

    def __getitem__(self, key: str) -> V:
        # No lock: the planner looks up thousands of ids per pass. Safe because the writer
        # records a key's old value in `undo` before it changes the live dict, and this reads
        # the live dict before `undo`: if `undo` has no entry yet, the live value read just
        # before cannot be a change made after this snapshot. (Each dict operation is atomic
        # and they are seen in order, as CPython's GIL guarantees.)
        live: V | Literal[_Mark.ABSENT] = self._live.get(key, _Mark.ABSENT)
        old = self.undo.get(key, _Mark.UNTOUCHED)
        if old is _Mark.UNTOUCHED:
            if live is _Mark.ABSENT:
                raise KeyError(key)
            return live
        if old is _Mark.ABSENT:
            raise KeyError(key)
        return old

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        present = key in self._live  # the order of __getitem__, for the same reason
        old = self.undo.get(key, _Mark.UNTOUCHED)
        if old is not _Mark.UNTOUCHED:
            return old is not _Mark.ABSENT
        return present

    def __len__(self) -> int:
        return self._len

    def _pairs(self) -> list[tuple[str, V]]:
        with self._lock:  # iterating the live dict must not race a change
            undo = self.undo
            pairs = [(k, v) for k, v in self._live.items() if k not in undo]
            pairs += [(k, v) for k, v in undo.items() if v is not _Mark.ABSENT]
        return pairs

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, _ in self._pairs()])

    def items(self) -> ItemsView[str, V]:
        return _Items(self, self._pairs())

    def values(self) -> ValuesView[V]:
        return _Values(self, [v for _, v in self._pairs()])

    def __repr__(self) -> str:
        return f"<snapshot of {self._len} keys>"


class _Items(ItemsView[str, V]):
    """A snapshot's items, read under one lock rather than one lookup per key."""

    def __init__(self, mapping: Snapshot[V], pairs: list[tuple[str, V]]) -> None:
        super().__init__(mapping)
        self._pairs = pairs

    def __iter__(self) -> Iterator[tuple[str, V]]:
        return iter(self._pairs)


class _Values(ValuesView[V]):
    def __init__(self, mapping: Snapshot[V], values: list[V]) -> None:
        super().__init__(mapping)
        self._values = values

    def __iter__(self) -> Iterator[V]:
        return iter(self._values)
