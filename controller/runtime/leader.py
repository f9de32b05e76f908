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

etcd out of reach. The elector's store should fail fast (no retry loop of its own): this loop
is the retry, and a call stuck in a 30 s retry would keep it from noticing anything. Renewals
that fail past the deadline make it step down, but it does not revoke (it cannot reach etcd
anyway) and remembers its fence: when etcd answers again and the leader key still holds this
process's identity at the revision it created it, and the lease is still alive, it leads
again at once with the same fence. No one else can have led in between, since anyone else
would have had to create the key anew. Without this, a controller that outlived an etcd
restart waited for its own old lease to expire before it could lead again (a TTL's worth of
nothing done). An attempt that failed on an error is retried sooner than one lost to another
candidate: the error is usually etcd coming back.
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
                 renew_deadline: float | None = None, retry_seconds: float | None = None,
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
        # A standby campaigns this often: by default every 1.5 s, more often under a short
        # lease, so that a takeover comes within the TTL + 2 s (etcd expires a lease up to
        # ~0.5 s late, and the campaign that follows must come within the rest).
        self._retry = retry_seconds if retry_seconds is not None else min(1.5, ttl / 4)
        self._clock: Clock = clock or RealClock()
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._lock = threading.Lock()
        self._fence: Fence | None = None
        self._renewed_at = 0.0
        self._last: Fence | None = None  # stepped down without revoking: may lead again
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- queries ----------------------------------------------------------------------------
    @property
    def retry_seconds(self) -> float:
        """How often a standby campaigns."""
        return self._retry

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
                won = self._try_acquire()
                if won:
                    self._hold()
                else:
                    self._stop.wait(self._retry if won is False else min(self._retry, 0.2))
        finally:
            last, self._last = self._last, None
            self._step_down(revoke=True)
            if last is not None:  # a lease kept for resuming is of no use to anyone now
                self._revoke(last.lease_id)

    def _try_acquire(self) -> bool | None:
        """True: this process leads; False: another does; None: etcd did not answer."""
        if self._last is not None:
            resumed = self._resume(self._last)
            if resumed is not False:
                return resumed
        try:
            lease = self._store.grant_lease(self._ttl)
        except Exception as exc:
            log.warning("cannot grant a lease", key=self.key, error=repr(exc))
            return None
        granted_at = self._clock.now()
        try:
            won = self._store.put_if_absent(self.key, self.identity.encode(), lease)
            found = self._store.get_raw(self.key) if won else None
        except Exception as exc:
            log.warning("cannot campaign", key=self.key, error=repr(exc))
            self._revoke(lease)
            return None
        if not won or found is None:
            self._revoke(lease)
            return False
        self._lead(Fence(self.key, found[1], lease), granted_at)
        return True

    def _resume(self, last: Fence) -> bool | None:
        """Lead again with the fence of before, if etcd still holds it (see the module
        docstring); False when it does not, and the fence is forgotten."""
        attempted_at = self._clock.now()
        try:
            found = self._store.get_raw(self.key)
            mine = (found is not None and found[0] == self.identity.encode()
                    and found[1] == last.revision)
            remaining = self._store.refresh_lease(last.lease_id) if mine else 0
        except Exception as exc:
            log.warning("cannot check the leader key", key=self.key, error=repr(exc))
            return None
        self._last = None
        if remaining <= 0:
            return False
        self._lead(last, attempted_at)
        return True

    def _lead(self, fence: Fence, renewed_at: float) -> None:
        with self._lock:
            self._fence = fence
            self._renewed_at = renewed_at
        metrics.LEADER.set(1)
        log.info("became leader", key=self.key, identity=self.identity, lease=fence.lease_id,
                 revision=fence.revision)
        if self._on_started is not None:
            self._on_started()

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
                log.warning("lost leadership", key=self.key, identity=self.identity,
                            lease_gone=remaining is not None)
                self._step_down(revoke=False, may_resume=remaining is None)
                return

    def _step_down(self, *, revoke: bool, may_resume: bool = False) -> None:
        with self._lock:
            fence, self._fence = self._fence, None
        if fence is None:
            return
        metrics.LEADER.set(0)
        self._last = fence if may_resume else None
        if revoke:
            self._revoke(fence.lease_id)
        if self._on_stopped is not None:
            self._on_stopped()

    def _revoke(self, lease: int) -> None:
        try:
            self._store.revoke_lease(lease)
        except Exception as exc:  # it expires by itself after the TTL
            log.info("cannot revoke lease", lease=lease, error=repr(exc))
