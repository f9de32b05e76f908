"""A standby campaigns often enough that a takeover after a leader's death comes within the
lease TTL + 2 s, whatever the TTL.

Regression (issue 14, chaos scenario 5): standbys campaigned every 2 s whatever the lease, and
etcd expires a lease up to ~0.5 s late, so with a 3 s lease a takeover took up to 5.5 s, more
than TTL + 2 s (seen once in the chaos suite's leader_kill). Now the default interval is
min(2 s, TTL / 4); an explicit one is kept."""

from __future__ import annotations

import pytest

from controller.runtime.leader import LeaderElector
from tests.runtime.test_leader import MemoryLeases

ETCD_EXPIRY_LAG = 0.5


@pytest.mark.parametrize("ttl", [2, 3, 5, 8, 15, 60])
def test_the_default_campaign_interval_bounds_a_takeover_by_ttl_plus_2s(ttl: int) -> None:
    elector = LeaderElector(MemoryLeases(), "/docket/controller/leader", "a", ttl=ttl)
    assert ttl + ETCD_EXPIRY_LAG + elector.retry_seconds <= ttl + 2.0


def test_an_explicit_campaign_interval_is_kept() -> None:
    elector = LeaderElector(MemoryLeases(), "k", "a", ttl=3, retry_seconds=2.5)
    assert elector.retry_seconds == 2.5
