"""A key range followed into memory: list it, then watch it from the list's revision, on a
thread of its own; list again after any failure (backoff doubling to a ceiling). The
admission caches (controller/policy.py, controller/secrets.py) are such followers: each says
only how to list and what to do with a watch response.

Why one class: both need the same lifecycle — start once, stop promptly even while the watch
is idle, a `wait_for_sync` that means "listed at least once" — and the same watch loop on a
shared client (`create_prefix_watch`, one creation at a time), where a stream closed or broken
is an error that sends the loop back to listing, so no change is ever missed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import TYPE_CHECKING, Any

from controller.store.watch import create_prefix_watch

if TYPE_CHECKING:
    from controller.store.store import Store

_WAKE = object()


class Follower:
    """Subclasses implement `_list` (read the range, apply it, return the revision to watch
    from) and `_on_response` (apply one watch response), and may override `_failed`."""

    def __init__(self, store: Store, prefix: str, name: str, *, max_backoff: float = 2.0
                 ) -> None:
        self._store = store
        self._prefix = prefix
        self._name = name
        self._max_backoff = max_backoff
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inbox: queue.Queue[Any] | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"watch-{self._name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        inbox = self._inbox
        if inbox is not None:
            inbox.put(_WAKE)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def wait_for_sync(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # --- for subclasses --------------------------------------------------------------------
    def _list(self) -> int:
        raise NotImplementedError

    def _on_response(self, response: Any) -> None:
        raise NotImplementedError

    def _failed(self, exc: BaseException) -> None:
        """A list or watch failed (it is listed again after a backoff)."""

    # --- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                start = self._list()
                self._synced.set()
                backoff = 0.05
                self._watch(start)
                return  # only once stopped
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._failed(exc)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _watch(self, start_revision: int) -> None:
        inbox: queue.Queue[Any] = queue.Queue()
        self._inbox = inbox
        raw = self._store.watch_client.raw
        watch_id = create_prefix_watch(raw, self._prefix, inbox.put,
                                       start_revision=start_revision)
        try:
            while not self._stop.is_set():
                try:
                    item = inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _WAKE:
                    continue
                if item is None:
                    raise ConnectionError(f"{self._name} watch stream closed")
                if isinstance(item, BaseException):
                    raise item
                self._on_response(item)
        finally:
            with contextlib.suppress(Exception):
                raw.cancel_watch(watch_id)
