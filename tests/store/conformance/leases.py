"""Conformance: leases (bound keys go with revocation and expiry, keep-alive, etcd's minimum
TTL) and leader election (`LeaderElector`) with fencing on top of them."""

from __future__ import annotations

import threading

import pytest

from controller.runtime.leader import LeaderElector
from controller.store import (
    Conflict,
    Expect,
    Put,
    Store,
    StoreError,
)
from tests.store.conformance.backend import (
    Backend,
    eventually,
    head,
    job_doc,
    job_key,
    next_events,
    summary,
)


class Campaigns:
    """A LeaseStore that tells the test when its candidate has lost a campaign."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lost = threading.Event()

    def grant_lease(self, ttl: int) -> int:
        return self.store.grant_lease(ttl)

    def refresh_lease(self, lease_id: int) -> int:
        return self.store.refresh_lease(lease_id)

    def revoke_lease(self, lease_id: int) -> None:
        self.store.revoke_lease(lease_id)

    def put_if_absent(self, key: str, value: bytes, lease: int | None = None) -> bool:
        won = self.store.put_if_absent(key, value, lease)
        if not won:
            self.lost.set()
        return won

    def get_raw(self, key: str) -> tuple[bytes, int, int] | None:
        return self.store.get_raw(key)


class LeaseConformance:
    # --- leases -----------------------------------------------------------------------------
    def test_keys_bound_to_a_lease_go_when_it_is_revoked(self, backend: Backend) -> None:
        store = backend.store()
        leader = store.keys.controller("leader")
        _, rev = store.list("jobs")
        stream = backend.watch(store, "jobs", rev + 1)
        lease = store.grant_lease(5)
        assert store.put_if_absent(leader, b"me", lease)
        assert not store.put_if_absent(leader, b"you")
        for name in ("b", "a", "free"):
            store.put_raw(job_key(store, name), job_doc(name), lease=lease)
        store.put_raw(job_key(store, "free"), job_doc("free", 2))  # now bound to no lease
        assert store.refresh_lease(lease) == 5
        next_events(stream, 4, backend.patience)
        store.revoke_lease(lease)
        revoked = head(store)
        assert summary(next_events(stream, 2, backend.patience)) == [
            ("DELETE", "a", revoked), ("DELETE", "b", revoked)]
        assert store.get_raw(leader) is None and store.get_raw(job_key(store, "free"))
        assert store.refresh_lease(lease) == 0
        with pytest.raises(StoreError, match="lease not found"):
            store.revoke_lease(lease)
        assert store.put_if_absent(leader, b"you")

    def test_a_lease_expires_unless_kept_alive(self, backend: Backend) -> None:
        store = backend.store()
        key = job_key(store, "leased")
        _, rev = store.list("jobs")
        stream = backend.watch(store, "jobs", rev + 1)
        lease = store.grant_lease(1)
        assert store.refresh_lease(lease) == 2, "etcd's shortest TTL is 2 s"
        put = store.put_raw(key, job_doc("leased"), lease=lease)
        backend.pass_time(1.2)
        assert store.refresh_lease(lease) == 2
        backend.pass_time(1.2)
        assert store.get_raw(key) is not None, "kept alive past its first TTL"
        backend.pass_time(2.5)
        # No call needed: watchers learn of the expiry by themselves.
        events = next_events(stream, 2, backend.patience)
        assert [(e.type, e.name) for e in events] == [("PUT", "leased"), ("DELETE", "leased")]
        assert events[1].revision > put and store.get_raw(key) is None
        assert store.refresh_lease(lease) == 0
        with pytest.raises(StoreError, match="lease not found"):
            store.put_raw(key, b"again", lease=lease)

    # --- leader election --------------------------------------------------------------------
    def elector(self, backend: Backend, campaigns: Campaigns, identity: str) -> LeaderElector:
        return LeaderElector(campaigns, campaigns.store.keys.controller("leader"), identity,
                             ttl=2, retry_seconds=0.02, clock=backend.clock)

    def test_one_leader_at_a_time_and_a_fast_handover(self, backend: Backend) -> None:
        a_side, b_side = Campaigns(backend.store()), Campaigns(backend.store())
        a, b = self.elector(backend, a_side, "a"), self.elector(backend, b_side, "b")
        a.start()
        try:
            eventually(a.is_leader, backend.patience)
            b.start()
            assert b_side.lost.wait(backend.patience), "b campaigns against a sitting leader"
            assert a.is_leader() and not b.is_leader()
            key = a_side.store.keys.controller("leader")
            a_fence = a.fence
            assert a_fence is not None
            assert a_side.store.get_raw(key) == (b"a", a_fence.revision, a_fence.revision)
            a.stop()  # revokes: b need not wait for the TTL
            eventually(b.is_leader, backend.patience)
            b_fence = b.fence
            assert b_fence is not None and b_fence.revision > a_fence.revision
            fenced = job_key(a_side.store, "fenced")
            with pytest.raises(Conflict):
                a_side.store.commit([Put(fenced, b"a")], [Expect(key, a_fence.revision)])
            b_side.store.commit([Put(fenced, b"b")], [Expect(key, b_fence.revision)])
        finally:
            a.stop()
            b.stop()
        assert a_side.store.get_raw(a_side.store.keys.controller("leader")) is None

    def test_a_crashed_leaders_lease_expires_and_a_successor_takes_over(
            self, backend: Backend) -> None:
        dead = backend.store()
        key = dead.keys.controller("leader")
        assert dead.put_if_absent(key, b"dead", dead.grant_lease(2))  # and never renews
        found = dead.get_raw(key)
        assert found is not None
        successor = Campaigns(backend.store())
        b = self.elector(backend, successor, "b")
        b.start()
        try:
            assert successor.lost.wait(backend.patience)
            assert not b.is_leader()
            backend.pass_time(3)
            eventually(b.is_leader, backend.patience)
            b_fence = b.fence
            assert b_fence is not None and dead.get_raw(key) == (
                b"b", b_fence.revision, b_fence.revision)
            with pytest.raises(Conflict):  # the crashed leader's late write is fenced off
                dead.commit([Put(job_key(dead, "late"), b"x")], [Expect(key, found[1])])
        finally:
            b.stop()
