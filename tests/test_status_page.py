"""The controller's status page (controller/statuspage.py), served at `/` on the metrics
address: the pure renderer on hand-made snapshots (escaping, counts, what each section says),
the metrics server's route with no Manager (health only), and — marked `integration` — the
page of a real controller (`run_controller` on the test etcd and simulated agents), with
objects of every kind, loaded in headless Chromium."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from controller.api import (
    Condition,
    ExecutionRecord,
    JobStatus,
    QueueStatus,
    ServiceStatus,
)
from controller.api.status import CronJobStatus
from controller.config import load_settings
from controller.localmesos import LocalMesos
from controller.manager import run_controller
from controller.metrics import CheckResult, MetricsServer, ReadinessChecks
from controller.statuspage import FailedExecution, ObjectRow, Snapshot, render
from controller.store import EtcdServer, Put, Store
from tests.e2e.harness import sim, wait_for

NOW = datetime(2026, 11, 2, 10, 0, 0, tzinfo=UTC)
SCRIPT = "<script>window.__pwned=1</script>"
CHECKS = [CheckResult("etcd", True), CheckResult("leader", True),
          CheckResult("mesos", False, "RuntimeError('<i>down</i>')")]


def _snapshot() -> Snapshot:
    failed_job = JobStatus(phase="Failed", failed=1, conditions=[Condition(
        type="Failed", status="True", reason="BackoffLimitExceeded",
        message=f"task said {SCRIPT} <b>bold</b>")])
    queue = QueueStatus(phase="Idle", pending=7, in_flight=2, succeeded=5, dead_lettered=1,
                        oldest_pending_since=NOW - timedelta(seconds=95),
                        conditions=[Condition(type="SourceUnavailable", status="True",
                                              reason="RedisDown", message="connection refused")])
    rows = [
        ObjectRow("Job", "default", "ok-1", status=JobStatus(phase="Succeeded")),
        ObjectRow("Job", "default", "ok-2", status=JobStatus(phase="Succeeded")),
        ObjectRow("Job", "default", "broken", labels={"team": SCRIPT}, status=failed_job),
        ObjectRow("CronJob", "default", "bad-cron", invalid="spec.schedule: <b>nope</b>"),
        ObjectRow("CronJob", "default", "nightly", status=CronJobStatus(phase="Active")),
        ObjectRow("Queue", "default", "mail", status=queue),
        ObjectRow("Service", "default", "web",
                  status=ServiceStatus(phase="Running", instances=3, healthy=3, running=3)),
        ObjectRow("Service", "default", "api",
                  status=ServiceStatus(phase="Degraded", instances=3, healthy=1, running=2,
                                       conditions=[Condition(type="Available", status="False",
                                                             reason="MinimumHealthNotMet",
                                                             message="1 healthy")])),
    ]
    rec = ExecutionRecord(task_id="broken.0.0", index=0, attempt=0, state="TASK_FAILED",
                          exit_code=3, reason="REASON_COMMAND_EXECUTOR_FAILED",
                          message=f"Command exited {SCRIPT}", finished_at=NOW)
    return Snapshot(NOW, CHECKS, rows, [FailedExecution("Job", "default", "broken", rec)])


# --- the pure renderer ----------------------------------------------------------------------
def test_user_data_is_escaped_everywhere() -> None:
    page = render(_snapshot())
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page
    escaped = "&lt;script&gt;window.__pwned=1&lt;/script&gt;"
    assert f"team={escaped}" in page                                # a label value
    assert f"task said {escaped} &lt;b&gt;bold&lt;/b&gt;" in page  # a condition message
    assert f"Command exited {escaped}" in page                      # a task's message
    assert "spec.schedule: &lt;b&gt;nope&lt;/b&gt;" in page         # an invalid spec's problem
    assert "RuntimeError(&#x27;&lt;i&gt;down&lt;/i&gt;&#x27;)" in page  # a check's detail


def test_page_counts_and_sections() -> None:
    page = render(_snapshot())
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "Succeeded: 2" in page and "Failed: 1" in page          # Jobs by phase
    assert "Invalid: 1" in page and "Active: 1" in page             # CronJobs by phase
    # Failing: the Job, the invalid CronJob, the Queue whose source is down, the Service.
    failing = page.split('id="failing"', 1)[1].split("</table>", 1)[0]
    assert failing.count("<tr>") == 1 + 4
    for expected in ("default/broken", "Failed=True (BackoffLimitExceeded)", "default/bad-cron",
                     "SourceUnavailable=True (RedisDown)", "connection refused",
                     "Available=False (MinimumHealthNotMet)"):
        assert expected in failing
    assert "default/nightly" not in failing and "default/web" not in failing
    queues = page.split('id="queues"', 1)[1].split("</table>", 1)[0]
    assert "<td>7</td><td>1m 35s</td><td>2</td><td>5 / 1</td>" in queues
    assert "unavailable" in queues
    services = page.split('id="services"', 1)[1].split("</table>", 1)[0]
    assert '<span class="ok">3/3</span>' in services
    assert '<span class="bad">1/3</span>' in services
    executions = page.split('id="executions"', 1)[1].split("</table>", 1)[0]
    assert "<td>3</td>" in executions and "TASK_FAILED" in executions
    assert "docket logs job default/broken --task broken.0.0" in executions


def test_standby_page_shows_health_only() -> None:
    page = render(Snapshot(NOW, [CheckResult("leader", False)]))
    assert "does not lead" in page and "This process is not leading" in page
    assert 'id="failing"' not in page and 'id="kinds"' not in page


def test_metrics_server_serves_the_page_as_html() -> None:
    readiness = ReadinessChecks()
    readiness.register("leader", lambda: False)
    server = MetricsServer("127.0.0.1:0", readiness=readiness)
    server.set_status_source(lambda: None)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
            body = resp.read().decode()
    finally:
        server.stop()
    assert "This process is not leading" in body
    assert "<td>leader</td>" in body


# --- in a real browser, against a real controller ---------------------------------------------
def _put(store: Store, plural: str, kind: str, name: str, spec: dict[str, Any],
         labels: dict[str, str] | None = None) -> None:
    doc = {"apiVersion": "docket.dev/v1", "kind": kind,
           "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
           "spec": spec}
    store.put_raw(store.keys.object(plural, "default", name), json.dumps(doc).encode())


def _phase(store: Store, plural: str, name: str) -> str | None:
    found = store.get_status(plural, "default", name)
    return None if found is None else str(found.status.phase)


@pytest.fixture
def controller_port(local_mesos: Callable[..., LocalMesos], etcd_server: EtcdServer,
                    etcd_prefix: str) -> Iterator[tuple[int, LocalMesos]]:
    lm = local_mesos(simulate=True)
    settings = load_settings({"etcd_endpoints": etcd_server.endpoint,
                              "key_prefix": etcd_prefix, "mesos_master": lm.master_url,
                              "metrics_address": "127.0.0.1:0", "resync_seconds": "1",
                              "log_format": "json"}, env={})
    stop = threading.Event()
    port: list[int] = []
    thread = threading.Thread(target=lambda: run_controller(
        settings, stop, on_ready=lambda _m, p: port.append(p)), daemon=True)
    thread.start()
    try:
        wait_for(lambda: port, 15, lambda: "the controller never led")
        yield port[0], lm
    finally:
        stop.set()
        thread.join(15)


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_the_page_in_headless_chromium(controller_port: tuple[int, LocalMesos], store: Store,
                                       browser: webdriver.Chrome, tmp_path: Path) -> None:
    port, _lm = controller_port
    _put(store, "jobs", "Job", "hello", {"template": sim(duration=0.1)})
    _put(store, "jobs", "Job", "broken", {"backoffLimit": 0, "template": sim(exit_code=3)},
         labels={"team": SCRIPT})
    _put(store, "cronjobs", "CronJob", "nightly", {
        "schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": sim()}}})
    _put(store, "cronjobs", "CronJob", "bad-cron", {
        "schedule": f"@{SCRIPT}", "jobTemplate": {"spec": {"template": sim()}}})
    _put(store, "queues", "Queue", "mail", {"source": {"type": "etcd"}, "suspend": True,
                                            "template": sim()}, labels={"tier": "<b>gold</b>"})
    store.commit([Put(store.keys.queue_item("default", "mail", f"item-{n}"), b"m")
                  for n in range(3)])
    _put(store, "services", "Service", "web", {"instances": 2, "template": sim(duration=600)})
    wait_for(lambda: (_phase(store, "jobs", "hello"), _phase(store, "jobs", "broken"),
                      _phase(store, "services", "web"), _phase(store, "cronjobs", "bad-cron"))
             == ("Succeeded", "Failed", "Running", "Invalid"), 30,
             lambda: f"phases: {[_phase(store, p, n) for p, n in (('jobs', 'hello'), ('jobs', 'broken'), ('services', 'web'), ('cronjobs', 'bad-cron'))]}")  # noqa: E501
    wait_for(lambda: (s := store.get_status("queues", "default", "mail")) is not None
             and isinstance(s.status, QueueStatus) and s.status.pending == 3, 15,
             lambda: f"queue status {store.get_status('queues', 'default', 'mail')}")

    started = time.monotonic()
    url = f"http://127.0.0.1:{port}/"
    wait = WebDriverWait(browser, 5)

    def loaded() -> str:
        # The caches may trail etcd by a moment: reload until the page shows everything.
        browser.get(url)
        text: str = browser.find_element(By.TAG_NAME, "body").text
        return text if "TASK_FAILED" in text and "2/2" in text and "bad-cron" in text else ""

    body = wait_for(loaded, 10, lambda: browser.find_element(By.TAG_NAME, "body").text,
                    interval=0.5)
    wait.until(lambda d: d.find_element(By.ID, "executions"))
    assert browser.title == "Docket status"
    assert "This process leads the controllers." in body
    checks = browser.find_element(By.ID, "checks").text
    for name in ("etcd", "leader", "mesos", "caches"):
        assert f"{name} ok" in checks, checks
    kinds = browser.find_element(By.ID, "phases").text
    for line in ("Job 2 Failed: 1, Succeeded: 1", "CronJob 2", "Queue 1", "Service 1 Running: 1"):
        assert line in kinds, kinds
    failing = browser.find_element(By.ID, "failing").text
    assert "default/broken" in failing and f"team={SCRIPT}" in failing, failing
    assert "default/bad-cron" in failing and SCRIPT in failing.split("default/bad-cron")[1]
    queues = browser.find_element(By.ID, "queues").text
    assert "default/mail Suspended 3" in queues and "tier=<b>gold</b>" in queues, queues
    services = browser.find_element(By.ID, "services").text
    assert "default/web Running 2/2 2" in services, services
    executions = browser.find_element(By.ID, "executions").text
    assert "default/broken" in executions and "TASK_FAILED 3" in executions, executions
    assert "docket logs job default/broken --task " in executions
    # The user's strings were shown as text: no element from them, no script ran.
    assert browser.find_elements(By.CSS_SELECTOR, "td b, td script, td i") == []
    assert browser.execute_script("return window.__pwned") is None
    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    assert time.monotonic() - started < 10
