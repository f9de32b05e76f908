"""deploy/prometheus: the rules read only series the controller exports, group by no
per-task label, every required alert is there with its severity and runbook, and promtool
accepts the rules, their unit tests (each alert firing and not) and the scrape config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import EXTERNAL_SERIES, PER_TASK_LABELS, TARGET_LABELS, exported, reads

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yaml"
RULES_TEST = PROMETHEUS / "rules_test.yaml"
ALERTS = {"DocketDown", "DocketNotLeader", "DocketMesosDisconnected", "DocketEtcdErrors",
          "DocketReconcileErrors", "DocketWorkqueueBacklog", "DocketInvalidObjects",
          "DocketPolicyInvalid",
          "DocketTaskFailuresHigh", "DocketPendingLaunchesStuck", "DocketCronJobMissedSchedules",
          "DocketCronJobLate", "DocketQueueOldestMessageTooOld", "DocketQueueDeadLettersGrowing",
          "DocketQueueSourceUnavailable", "DocketServiceDegraded", "DocketServiceRolloutStuck"}
SEVERITIES = {"critical", "warning", "info"}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: it comes with Debian's 'prometheus' package "
                    "(scripts/install.sh installs it when run as root with apt-get)")
    return subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=60, check=False)


def test_required_alerts_with_severity_and_runbook() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert set(alerts) == ALERTS
    for name, rule in alerts.items():
        assert rule.get("for"), f"{name} fires on one bad sample: give it a `for:`"
        assert rule["labels"]["severity"] in SEVERITIES, name
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key, "").strip(), f"{name} lacks {key}"


def test_recording_rules_follow_the_naming_convention() -> None:
    records = [r["record"] for r in rules() if "record" in r]
    assert "docket:reconcile_errors:rate5m" in records
    for name in records:
        # level:metric:operations, the level being Docket's own aggregation.
        parts = name.split(":")
        assert len(parts) == 3 and parts[0] == "docket" and all(parts), name


def test_every_series_is_exported_or_recorded() -> None:
    recorded: set[str] = set()
    known = exported().names | EXTERNAL_SERIES
    for rule in rules():
        # A rule may read what an earlier rule of the file records.
        unknown = reads(str(rule["expr"])).metrics - known - recorded
        assert not unknown, f"{rule.get('alert') or rule['record']}: {sorted(unknown)}"
        if "record" in rule:
            recorded.add(rule["record"])


def test_no_per_task_labels() -> None:
    docket = exported()
    allowed = TARGET_LABELS | {label for name, labels in docket.labels.items()
                               if name.startswith("docket_") for label in labels}
    for rule in rules():
        got = reads(str(rule["expr"]))
        used = got.grouped_by | got.matched_on | set(rule.get("labels", {})) - {"severity"}
        assert not used & PER_TASK_LABELS, rule
        assert used <= allowed, f"{rule.get('alert') or rule['record']}: {used - allowed}"


def test_each_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    doc = yaml.safe_load(RULES_TEST.read_text())
    assert doc["rule_files"] == ["rules.yaml"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == ALERTS, f"no firing case for {ALERTS - fires}"
    assert quiet == ALERTS, f"no case where it must stay quiet for {ALERTS - quiet}"


@pytest.mark.integration
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.integration
def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.integration
def test_promtool_check_scrape_config() -> None:
    result = promtool("check", "config", "scrape.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "scrape.yaml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # The alerts select job="docket"; the dashboard's Ready panel reads docket-readyz.
    assert jobs["docket"]["metrics_path"] == "/metrics"
    assert "docket-readyz" in jobs
    assert 'job="docket"' in RULES.read_text()
