"""Scenario 2, short (issue 14): etcd killed for 3 s, then frozen (SIGSTOP) for 3 s, while the
mixed workload runs: the controller stays up, /readyz says etcd is failing, updates Mesos made
meanwhile are recorded afterwards, and every invariant holds
(tests/chaos/scenarios/etcd_down.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.scenarios import Options, etcd_down

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

def test_etcd_killed_then_frozen_the_controller_waits_says_why_and_resumes(
        tmp_path: Path) -> None:
    report = etcd_down.run(Options(seed=20261130, workdir=tmp_path))
    assert not report.violations, report.explain()
    outages = report.figures["outages"]
    for mode in ("killed", "frozen"):
        assert outages[mode]["readyz_said"].startswith("[-]etcd failed"), outages
