"""Scenario 3, short (issue 14): two Mesos masters in HA through a real ZooKeeper, the
controller given the zk:// URL; the leading master killed twice (each time the standby takes
over, Docket subscribes again with its FrameworkID and reconciles, and the killed master
rejoins as a standby) and the streams made half-open once (detected within two heartbeat
intervals); every invariant holds (tests/chaos/scenarios/master_failover.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.scenarios import Options, master_failover

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_the_leading_master_killed_twice_and_streams_half_open_keep_every_invariant(
        tmp_path: Path) -> None:
    report = master_failover.run(Options(seed=20261130, workdir=tmp_path))
    assert report.ok, report.explain()
    figures = report.figures
    assert figures["failovers"] == master_failover.SHORT_KILLS, figures
    assert len(figures["resubscribe_each"]) == master_failover.SHORT_KILLS, figures
    assert figures["half_opens"] == master_failover.SHORT_HALF_OPENS, figures
    assert figures["half_open_detect_seconds"]["max"] <= (
        figures["half_open_bound_seconds"] + master_failover.DETECT_SLACK), figures
    assert figures["work"]["duplicate_launches"] == 0, figures
