"""Chaos scenario 5, short (issue 14): three replicas; one kill -9 of the leader (takeover
within the lease TTL + 2 s) and one SIGSTOP of the leader past its lease, thawed after a
standby took over (it writes nothing and launches nothing). The full length runs by hand:
`python -m tests.chaos --scenario leader_kill --minutes M`."""

from __future__ import annotations

import pytest

from tests.chaos.scenarios import Options
from tests.chaos.scenarios.leader_kill import BOUND_SECONDS, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_leader_kill_and_freeze_short() -> None:
    report = run(Options(seed=5))
    assert not report.violations, report.explain()
    figures = report.figures
    assert figures["kills"] == 1 and figures["freezes"] == 1, figures
    assert figures["kill_takeover_seconds"]["max"] <= BOUND_SECONDS, figures
    assert figures["deposed_quiet_window_revisions"] == [0], figures
