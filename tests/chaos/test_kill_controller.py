"""Scenario 1, short (issue 14): the controller killed with SIGKILL at 8 seeded instants while
the mixed workload runs; every invariant holds (tests/chaos/scenarios/kill_controller.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.scenarios import Options, kill_controller

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_sigkill_at_eight_seeded_instants_keeps_every_invariant(tmp_path: Path) -> None:
    report = kill_controller.run(Options(seed=20261130, workdir=tmp_path))
    assert report.ok, report.explain()
    assert report.figures["kills"] == 8
    assert report.figures["work"]["duplicate_launches"] == 0
