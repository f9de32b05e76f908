"""Producing messages into an etcd-backed Queue, for `docket queue push` and the Python client:
sortable, unique item ids and transactions that write each item only if absent, so a push is
never applied twice (a retried transaction finds its items there) and never overwrites."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from controller.store import Conflict, Expect, Put, Store

PUSH_PER_TXN = 100
"""Items per transaction (etcd allows 128 operations in one)."""
PUSH_TXN_BYTES = 1024 * 1024
"""Bytes of messages per transaction (etcd refuses requests over 1.5 MiB by default)."""
ATTEMPTS = 5


class ItemIds:
    """Sortable, unique item ids: the UTC time to the microsecond, strictly increasing within
    one generator (so one push keeps its order even within a microsecond), then 8 random hex
    digits (so two producers never pick the same id). Thread-safe."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            micros = max(time.time_ns() // 1000, self._last + 1)
            self._last = micros
        seconds, fraction = divmod(micros, 1_000_000)
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S")
        return f"{stamp}.{fraction:06d}Z-{secrets.token_hex(4)}"


class PushIncomplete(Exception):
    """A push stopped part way: `pushed` messages were written, in order, before `cause`."""

    def __init__(self, pushed: int, cause: str) -> None:
        super().__init__(cause)
        self.pushed = pushed


def push_items(store: Store, namespace: str, queue: str, messages: Sequence[bytes],
               ids: ItemIds | None = None) -> int:
    """Write `messages` as new items of the queue, in order; how many were written. Raises
    PushIncomplete (with how many were written before) when ids kept colliding or etcd
    failed."""
    ids = ids or ItemIds()
    pushed = 0
    for chunk in _chunks(messages):
        for _ in range(ATTEMPTS):
            keyed = [(store.keys.queue_item(namespace, queue, ids.next()), m) for m in chunk]
            try:
                store.commit([Put(k, m) for k, m in keyed], [Expect(k, 0) for k, _ in keyed])
                break
            except Conflict:
                # Either etcd applied it and the store retried after a lost answer (every key
                # holds its message: done), or an id was taken (pick new ones).
                if all((found := store.get_raw(k)) is not None and found[0] == m
                       for k, m in keyed):
                    break
            except Exception as exc:
                raise PushIncomplete(pushed, str(exc)) from exc
        else:
            raise PushIncomplete(pushed, f"{ATTEMPTS} attempts found their item ids taken")
        pushed += len(chunk)
    return pushed


def _chunks(messages: Sequence[bytes]) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for m in messages:
        if chunk and (len(chunk) >= PUSH_PER_TXN or size + len(m) > PUSH_TXN_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(m)
        size += len(m)
    if chunk:
        yield chunk
