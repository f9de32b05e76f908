"""Leader election: one leader at a time, step-down when renewals fail, fast hand-over on stop,
fencing token; with an in-memory lease store and with the real store on etcd."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from controller.runtime.leader import LeaderElector, LeaseStore
from controller.store import Expect, Put, Store
from controller.store.client import Conflict


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


class MemoryLeases:
    """Leases without expiry by time: tests expire them by hand with `expire`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.leases: set[int] = set()
        self.keys: dict[str, tuple[bytes, int, int]] = {}  # key -> (value, revision, lease)
        self.revision = 0
        self.unreachable = False
        # What the candidates did, for tests to wait on instead of sleeping: every
        # put_if_absent as (value, created), and the calls refused while unreachable.
        self.campaigns: list[tuple[bytes, bool]] = []
        self.refused = 0
        # time.monotonic() when a lease was last confirmed (leader key created or lease
        # refreshed): never earlier than the moment the elector counts its renewal from.
        self.renewed_at = 0.0

    def check(self) -> None:
        if self.unreachable:
            with self.lock:
                self.refused += 1
            raise ConnectionError("etcd unreachable")

    def lost_campaigns(self, identity: str) -> int:
        with self.lock:
            return sum(1 for value, created in self.campaigns
                       if value == identity.encode() and not created)

    def grant_lease(self, ttl: int) -> int:
        self.check()
        with self.lock:
            lease = next(self.ids)
            self.leases.add(lease)
            return lease

    def refresh_lease(self, lease_id: int) -> int:
        self.check()
        with self.lock:
            if lease_id not in self.leases:
                return 0
            self.renewed_at = time.monotonic()
            return 10

    def revoke_lease(self, lease_id: int) -> None:
        self.check()
        with self.lock:
            self.expire_locked(lease_id)

    def expire(self, lease_id: int) -> None:
        with self.lock:
            self.expire_locked(lease_id)

    def expire_locked(self, lease_id: int) -> None:
        self.leases.discard(lease_id)
        self.keys = {k: v for k, v in self.keys.items() if v[2] != lease_id}

    def put_if_absent(self, key: str, value: bytes, lease: int | None = None) -> bool:
        self.check()
        with self.lock:
            self.campaigns.append((value, key not in self.keys))
            if key in self.keys:
                return False
            self.revision += 1
            self.keys[key] = (value, self.revision, lease or 0)
            self.renewed_at = time.monotonic()
            return True

    def get_raw(self, key: str) -> tuple[bytes, int, int] | None:
        with self.lock:
            found = self.keys.get(key)
            return None if found is None else (found[0], found[1], found[1])


def elector(store: LeaseStore, identity: str,
            on_started_leading: Callable[[], None] | None = None,
            on_stopped_leading: Callable[[], None] | None = None) -> LeaderElector:
    return LeaderElector(store, "/docket/controller/leader", identity, ttl=3,
                         renew_deadline=0.6, retry_seconds=0.02,
                         on_started_leading=on_started_leading,
                         on_stopped_leading=on_stopped_leading)


def test_only_one_leader_and_handover_on_stop() -> None:
    leases = MemoryLeases()
    events: list[str] = []
    a = elector(leases, "a", on_started_leading=lambda: events.append("a+"),
                on_stopped_leading=lambda: events.append("a-"))
    b = elector(leases, "b")
    a.start()
    eventually(a.is_leader)
    b.start()
    try:
        # b has campaigned against a sitting leader and lost (twice: not just a first race).
        eventually(lambda: leases.lost_campaigns("b") >= 2)
        assert a.is_leader() and not b.is_leader()
        assert REGISTRY.get_sample_value("docket_leader") == 1
        fence = a.fence
        assert fence is not None and fence.key == "/docket/controller/leader"
        assert b.fence is None
        a.stop()
        assert events == ["a+", "a-"]
        eventually(b.is_leader, timeout=2)
        b_fence = b.fence
        assert b_fence is not None and b_fence.revision > fence.revision
    finally:
        a.stop()
        b.stop()
    assert not b.is_leader()
    assert leases.keys == {}, "stopping revokes the lease and frees the key"


def test_steps_down_when_lease_is_lost_and_campaigns_again() -> None:
    leases = MemoryLeases()
    stopped = threading.Event()
    a = elector(leases, "a", on_stopped_leading=stopped.set)
    a.start()
    try:
        eventually(a.is_leader)
        fence = a.fence
        assert fence is not None
        leases.expire(fence.lease_id)
        assert stopped.wait(5)
        eventually(a.is_leader)  # the key was freed: it wins again, under a new lease
        new = a.fence
        assert new is not None and new.lease_id != fence.lease_id
    finally:
        a.stop()


def test_stops_calling_itself_leader_when_renewals_fail() -> None:
    leases = MemoryLeases()
    a = elector(leases, "a")
    a.start()
    try:
        eventually(a.is_leader)
        old = a.fence
        assert old is not None
        leases.unreachable = True
        # The elector renews from one thread: once a renewal has been refused, none that
        # began before the outage can still complete, so the last renewal time is final.
        eventually(lambda: leases.refused >= 1)
        with leases.lock:
            last_renewal = leases.renewed_at
        # Once the renew deadline (0.6 s) has passed since the last renewal, it does not call
        # itself leader, however late its own thread runs: that is what keeps it from acting
        # after the 3 s lease could have gone to another candidate. (How fast it steps down
        # is a question for a benchmark, not a bound here.)
        eventually(lambda: time.monotonic() >= last_renewal + 0.6)
        assert not a.is_leader()
        # It campaigns on, and every attempt is refused while etcd is unreachable.
        refused = leases.refused
        eventually(lambda: leases.refused >= refused + 3)
        assert not a.is_leader(), "cannot win while etcd is unreachable"
        leases.unreachable = False
        leases.expire(old.lease_id)  # what etcd does once the TTL runs out
        eventually(a.is_leader)
    finally:
        a.stop()



def test_leads_again_with_its_fence_when_etcd_returns_before_its_lease_expires() -> None:
    """etcd restarted (or out of reach) past the renew deadline: the leader steps down, and
    once etcd answers, its key and lease are still there. It leads again at once with the
    same fence, instead of campaigning against its own key until the lease runs out (a
    whole TTL of nothing done after every etcd restart; chaos suite, etcd down)."""
    leases = MemoryLeases()
    stopped = threading.Event()
    a = elector(leases, "a", on_stopped_leading=stopped.set)
    a.start()
    try:
        eventually(a.is_leader)
        old = a.fence
        assert old is not None
        campaigns = len(leases.campaigns)
        leases.unreachable = True
        assert stopped.wait(5), "it never stepped down"
        refused = leases.refused
        eventually(lambda: leases.refused >= refused + 2)  # it keeps trying meanwhile
        leases.unreachable = False
        eventually(a.is_leader)  # MemoryLeases never expires a lease by itself
        assert a.fence == old
        assert len(leases.campaigns) == campaigns, "it campaigned against its own key"
    finally:
        a.stop()
    assert old.lease_id not in leases.leases, "stopping revokes the lease it resumed"


def test_does_not_resume_a_key_that_changed_hands() -> None:
    leases = MemoryLeases()
    a = elector(leases, "a")
    a.start()
    try:
        eventually(a.is_leader)
        old = a.fence
        assert old is not None
        leases.unreachable = True
        eventually(lambda: not a.is_leader() and leases.refused >= 2)
        # Meanwhile the lease expired and another process took the key.
        with leases.lock:
            leases.expire_locked(old.lease_id)
            lease_b = next(leases.ids)
            leases.leases.add(lease_b)
            leases.revision += 1
            leases.keys[old.key] = (b"b", leases.revision, lease_b)
        leases.unreachable = False
        eventually(lambda: leases.lost_campaigns("a") >= 1)  # campaigning, not resuming
        assert not a.is_leader()
    finally:
        a.stop()


def test_bad_timings_refused() -> None:
    with pytest.raises(ValueError):
        LeaderElector(MemoryLeases(), "k", "a", ttl=2, renew_deadline=2)
    with pytest.raises(ValueError):
        LeaderElector(MemoryLeases(), "k", "a", ttl=0)


class CountingCampaigns:
    """The real store, counting the campaigns it refused (the leader key already existed)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lost = 0

    def grant_lease(self, ttl: int) -> int:
        return self.store.grant_lease(ttl)

    def refresh_lease(self, lease_id: int) -> int:
        return self.store.refresh_lease(lease_id)

    def revoke_lease(self, lease_id: int) -> None:
        self.store.revoke_lease(lease_id)

    def put_if_absent(self, key: str, value: bytes, lease: int | None = None) -> bool:
        created = self.store.put_if_absent(key, value, lease)
        if not created:
            self.lost += 1
        return created

    def get_raw(self, key: str) -> tuple[bytes, int, int] | None:
        return self.store.get_raw(key)


@pytest.mark.integration
def test_with_real_etcd_and_fenced_writes(store: Store) -> None:
    key = store.keys.controller("leader")
    b_store = CountingCampaigns(store)
    a = LeaderElector(store, key, "a", ttl=2, retry_seconds=0.05)
    b = LeaderElector(b_store, key, "b", ttl=2, retry_seconds=0.05)
    a.start()
    try:
        eventually(a.is_leader)
        b.start()
        eventually(lambda: b_store.lost >= 2)  # b campaigned against a and lost
        assert not b.is_leader()
        fence = a.fence
        assert fence is not None
        found = store.get_raw(key)
        assert found is not None and found[0] == b"a"
        target = store.keys.controller("fenced-write")
        store.commit([Put(target, b"1")], [Expect(fence.key, fence.revision)])
        a.stop()
        eventually(b.is_leader, timeout=5)
        # The old leader's fence no longer holds: its writes are refused by etcd.
        with pytest.raises(Conflict):
            store.commit([Put(target, b"2")], [Expect(fence.key, fence.revision)])
    finally:
        a.stop()
        b.stop()
    assert store.get_raw(key) is None
