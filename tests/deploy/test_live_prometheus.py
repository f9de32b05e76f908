"""The dashboard and the rules against a real Prometheus scraping a real Docket /metrics
endpoint: every rule evaluates without error (vector matching is only checked at run time),
and every dashboard query finds series with the labels it selects on."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import queue_metrics
from controller.api import QueueStatus
from controller.metrics import MetricsServer, set_throttle_limits
from controller.store.etcd_server import free_port
from tests.deploy.test_grafana import DASHBOARD, queries

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
DEADLINE = 30.0


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result


def wait_for(what: str, check: Any) -> Any:
    deadline = time.monotonic() + DEADLINE
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: it comes with Debian's 'prometheus' package "
                    "(scripts/install.sh installs it when run as root with apt-get)")
    # One Queue seen, so that its labelled series exist (a Queue's appear once one is seen).
    queue_metrics.observe_status("default", "live-test", None,
                                 QueueStatus(uid=1, pending=3, in_flight=1))
    set_throttle_limits({"live-test": 10})  # a throttle's series exist once the policy has one
    docket = MetricsServer("127.0.0.1:0")
    docket.start()
    workdir = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS_DIR / "rules.yaml")],
        "scrape_configs": [{"job_name": "docket",
                            "static_configs": [{"targets": [f"127.0.0.1:{docket.port}"]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        server = Prometheus(f"http://127.0.0.1:{port}")

        def scraped_three_times() -> list[dict[str, Any]]:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"prometheus exited with {proc.returncode}: "
                            f"{(workdir / 'prometheus.log').read_text()[-2000:]}")
            # Three scrapes, so rates over a few seconds have two samples or more.
            return server.query('count_over_time(up{job="docket"}[1m]) >= 3')

        wait_for("three scrapes of Docket", scraped_three_times)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        docket.stop()
        queue_metrics.forget("default", "live-test")
        set_throttle_limits({})
        if proc.returncode not in (0, -15):
            print((workdir / "prometheus.log").read_text()[-3000:])


def test_every_rule_evaluates_cleanly(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        # A rule not evaluated yet reports the zero time.
        done = rules and not any(r.get("lastEvaluation", "0001-").startswith("0001-")
                                 for r in rules)
        return rules if done else []

    rules = wait_for("every rule to be evaluated", evaluated)
    expected = yaml.safe_load((PROMETHEUS_DIR / "rules.yaml").read_text())
    assert len(rules) == sum(len(g["rules"]) for g in expected["groups"])
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_every_dashboard_query_finds_series(prometheus: Prometheus) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    substitutions = {"$__rate_interval": "10s", "$job": "docket", "$instance": ".*"}
    for where, expr, _ in queries(dashboard):
        if "probe_success" in expr:
            continue  # made by the Blackbox exporter, which this test does not run
        if where.startswith("variable"):
            expr = f"count by ({_label_of(where, dashboard)}) ({expr})"
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        result = prometheus.query(expr)
        assert result, f"{where}: no series for {expr}"


def _label_of(where: str, dashboard: dict[str, Any]) -> str:
    name = where.removeprefix("variable ")
    (var,) = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    text: str = var["definition"]
    return text.rstrip(")").rpartition(",")[2].strip()
