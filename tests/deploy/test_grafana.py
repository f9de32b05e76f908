"""deploy/grafana: the dashboard is valid Grafana JSON, reads only series the controller
exports (or Prometheus makes), never by a per-task label, and covers every area operators
watch."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import (
    EXTERNAL_SERIES,
    PER_TASK_LABELS,
    TARGET_LABELS,
    exported,
    legend_labels,
    reads,
)

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "docket-overview.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, expr, legend) of every PromQL query: panel targets and template variables."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"], target.get("legendFormat", "")
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            text = query["query"] if isinstance(query, dict) else query
            assert text.startswith("label_values("), text
            inner = text.removeprefix("label_values(").removesuffix(")")
            series, _, label = inner.rpartition(",")
            yield f"variable {var['name']}", series, "{{" + label.strip() + "}}"


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "docket-overview"
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["type"] == "query"
    assert variables["instance"]["type"] == "query"
    assert variables["instance"]["includeAll"] is True

    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"panel {panel['title']!r} is wider than the grid"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            # Every series is narrowed to the chosen job or instances.
            assert "$job" in target["expr"] or "$instance" in target["expr"], (
                f"{panel['title']}: {target['expr']}")


def test_rows_cover_every_area(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Controller health", "Reconciliation", "Workqueue", "Tasks",
                    "Mesos offers", "etcd", "Objects", "CronJobs", "Queues", "Services",
                    "Throttles"]
    used = set().union(*(reads(expr).metrics for _, expr, _ in queries(dashboard)))
    for series in ("up", "docket_leader", "docket_mesos_connected", "probe_success",
                   "docket_reconcile_total", "docket_reconcile_duration_seconds_bucket",
                   "docket_workqueue_depth", "docket_workqueue_queue_duration_seconds_bucket",
                   "docket_workqueue_retries_total", "docket_mesos_tasks_launched_total",
                   "docket_tasks_finished_total", "docket_tasks_failed_total",
                   "docket_tasks_killed_total", "docket_tasks_active",
                   "docket_mesos_offers_received_total", "docket_mesos_offers_declined_total",
                   "docket_mesos_offers_used_total", "docket_mesos_offers_rescinded_total",
                   "docket_mesos_pending_launches", "docket_mesos_offers_suppressed",
                   "docket_etcd_request_duration_seconds_bucket",
                   "docket_etcd_request_errors_total", "docket_etcd_watch_restarts_total",
                   "docket_informer_objects", "docket_invalid_objects",
                   "docket_cronjob_schedule_lateness_seconds_bucket",
                   "docket_cronjob_missed_schedules_total", "docket_cronjob_jobs_created_total",
                   "docket_queue_pending_messages", "docket_queue_in_flight_messages",
                   "docket_queue_messages_total", "docket_queue_oldest_pending_seconds",
                   "docket_queue_batch_duration_seconds_bucket", "docket_queue_source_up",
                   "docket_service_instances", "docket_service_rollouts_total",
                   "docket_service_health_check_failures_total",
                   "docket_service_restarts_total", "docket_throttle_running",
                   "docket_throttle_limit", "docket_throttle_waiting"):
        assert series in used, f"no panel shows {series}"


def test_every_series_is_exported(dashboard: dict[str, Any]) -> None:
    known = exported().names | EXTERNAL_SERIES
    for where, expr, _ in queries(dashboard):
        unknown = reads(expr).metrics - known
        assert not unknown, f"{where}: {sorted(unknown)} not exported by the controller ({expr})"


def test_no_per_task_labels(dashboard: dict[str, Any]) -> None:
    docket = exported()
    allowed = TARGET_LABELS | {label for name, labels in docket.labels.items()
                               if name.startswith("docket_") for label in labels}
    assert not allowed & PER_TASK_LABELS, "a controller metric has a per-task label"
    for where, expr, legend in queries(dashboard):
        got = reads(expr)
        used = got.grouped_by | got.matched_on | legend_labels(legend)
        assert used <= allowed, f"{where}: labels {sorted(used - allowed)} ({expr})"


def test_provisioning_points_grafana_at_a_folder() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards.yaml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


@pytest.mark.integration
def test_promtool_parses_every_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Grafana only sends the queries; promtool parses them as recording rules, with the
    dashboard's variables replaced as Grafana would."""
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: it comes with Debian's 'prometheus' package "
                    "(scripts/install.sh installs it when run as root with apt-get)")
    substitutions = {"$__rate_interval": "1m", "$job": "docket", "$instance": ".*"}
    checks = []
    for i, (where, expr, _) in enumerate(queries(dashboard)):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: unknown variable in {expr}"
        checks.append({"record": f"dashboard:query_{i}:check", "expr": expr})
    rule_file = tmp_path / "dashboard_queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": checks}]}))
    result = subprocess.run([tool, "check", "rules", str(rule_file)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
