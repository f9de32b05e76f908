"""Chaos scenario 6, short (issue 14): 150 fuzzed documents (every mutation class)
put into a running controller beside the mixed workload: no crash, every status caught up and
Invalid naming the field, nothing launched, memory bounded, the workload unaffected. The full
length (10,000 documents) runs by hand: `python -m tests.chaos --scenario fuzz_specs
--minutes M`."""

from __future__ import annotations

import pytest

from tests.chaos.fuzz import MUTATIONS
from tests.chaos.scenarios import Options
from tests.chaos.scenarios.fuzz_specs import run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_fuzzed_specs_short() -> None:
    report = run(Options(seed=6))
    assert report.ok, report.explain()
    figures = report.figures
    assert all(figures["by_mutation"][m] > 0 for m in MUTATIONS), figures
    assert figures["fuzz_launches"] == 0, figures
