"""Scenario 4, short (issue 14): an agent partitioned and healed while the mixed workload and a
Job of long tasks run: its tasks are replaced per kind, the returning duplicates are killed,
a Job index counts once, and every invariant holds (tests/chaos/scenarios/partitions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.scenarios import Options, partitions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_a_partitioned_agent_is_replaced_and_its_returning_duplicates_killed(
        tmp_path: Path) -> None:
    report = partitions.run(Options(seed=20261130, workdir=tmp_path))
    assert report.ok, report.explain()
    assert report.figures["partitions"] == 1 and report.figures["tasks_cut_off"] > 0
    assert report.figures["work"]["unreachable_tasks"] > 0
