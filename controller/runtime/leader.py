"""Leader election on an etcd lease, so only one controller acts at a time.

A candidate grants a lease and creates the leader key bound to it only if the key is absent;
whoever created it leads while it keeps the lease alive. Two rules keep a deposed leader from
acting (fencing):
- it stops calling itself leader as soon as it has not renewed for `renew_deadline` seconds,
  which is shorter than the lease TTL, so it steps down before anyone else can take over;
- `fence` gives the leader key and the revision at which this process created it; writers can
  add it as a compare to their transactions (`Expect(fence.key, fence.revision)`), so a write
  by a process that lost the key fails in etcd itself.
Stopping revokes the lease, so a successor takes over at once instead of after the TTL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from controller import metrics
from controller.clock import Clock, RealClock

log = structlog.get_logger("docket.runtime.leader")


class LeaseStore(Protocol):
    """The part of controller.store.Store that leader election uses."""

    def grant_lease(self, ttl: int) -> int: ...
    def refresh_lease(self, lease_id: int) -> int: ...
    def revoke_lease(self, lease_id: int) -> None: ...
    def put_if_absent(self, key: str, value: bytes, lease: int | None = None) -> bool: ...
    def get_raw(self, key: str) -> tuple[bytes, int, int] | None: ...


@dataclass(frozen=True)
class Fence:
    key: str
    revision: int  # mod_revision of the leader key as this process created it
    lease_id: int


class LeaderElector:
    def __init__(self, store: LeaseStore, key: str, identity: str, *, ttl: int = 15,
                 renew_deadline: float | None = None, retry_seconds: float = 2.0,
                 clock: Clock | None = None,
                 on_started_leading: Callable[[], None] | None = None,
                 on_stopped_leading: Callable[[], None] | None = None) -> None:
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        self._store = store
        self.key = key
        self.identity = identity
        self._ttl = ttl
        self._renew_deadline = renew_deadline if renew_deadline is not None else ttl * 2 / 3
        if not 0 < self._renew_deadline < ttl:
            raise ValueError("renew_deadline must be positive and shorter than the ttl")
        self._retry = retry_seconds
        self._clock: Clock = clock or RealClock()
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._lock = threading.Lock()
        self._fence: Fence | None = None
        self._renewed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- queries ----------------------------------------------------------------------------
    def is_leader(self) -> bool:
        """True only while the last renewal is recent enough that the lease cannot have
        expired: checked against the clock, not just the last known state."""
        return self.fence is not None

    @property
    def fence(self) -> Fence | None:
        """The fencing token while this process leads, else None."""
        with self._lock:
            if self._fence is None:
                return None
            if self._clock.now() - self._renewed_at >= self._renew_deadline:
                return None
            return self._fence

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Step down (revoking the lease, so a successor need not wait) and stop campaigning."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._try_acquire():
                    self._hold()
                else:
                    self._stop.wait(self._retry)
        finally:
            self._step_down(revoke=True)

    def _try_acquire(self) -> bool:
        try:
            lease = self._store.grant_lease(self._ttl)
        except Exception as exc:
            log.warning("cannot grant a lease", key=self.key, error=repr(exc))
            return False
        granted_at = self._clock.now()
        try:
            won = self._store.put_if_absent(self.key, self.identity.encode(), lease)
            found = self._store.get_raw(self.key) if won else None
        except Exception as exc:
            log.warning("cannot campaign", key=self.key, error=repr(exc))
            won, found = False, None
        if not won or found is None:
            self._revoke(lease)
            return False
        with self._lock:
            self._fence = Fence(self.key, found[1], lease)
            self._renewed_at = granted_at
        metrics.LEADER.set(1)
        log.info("became leader", key=self.key, identity=self.identity, lease=lease)
        if self._on_started is not None:
            self._on_started()
        return True

    def _hold(self) -> None:
        interval = self._renew_deadline / 3
        while not self._stop.wait(interval):
            with self._lock:
                fence = self._fence
            if fence is None:
                return
            attempted_at = self._clock.now()
            try:
                remaining = self._store.refresh_lease(fence.lease_id)
            except Exception as exc:
                log.warning("lease renewal failed", key=self.key, error=repr(exc))
                remaining = None
            if remaining is not None and remaining > 0:
                with self._lock:
                    self._renewed_at = attempted_at
            elif remaining is not None or not self.is_leader():
                # The lease is gone, or we could not renew in time: someone else may lead.
                log.warning("lost leadership", key=self.key, identity=self.identity)
                self._step_down(revoke=remaining is None)
                return

    def _step_down(self, *, revoke: bool) -> None:
        with self._lock:
            fence, self._fence = self._fence, None
        if fence is None:
            return
        metrics.LEADER.set(0)
        if revoke:
            self._revoke(fence.lease_id)
        if self._on_stopped is not None:
            self._on_stopped()

    def _revoke(self, lease: int) -> None:
        try:
            self._store.revoke_lease(lease)
        except Exception as exc:  # it expires by itself after the TTL
            log.info("cannot revoke lease", lease=lease, error=repr(exc))
