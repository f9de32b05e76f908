"""Health checks on localmesos agents against what Mesos 1.11's command executor does
(src/checks/health_checker.cpp, src/launcher/executor.cpp, docs/health-checks.md): HTTP, TCP
and COMMAND probes on real agents, the grace period, consecutive failures and the kill they
lead to, probe timeouts, the exact update sequence, what `/tasks` and reconciliation show,
the master's validation of TaskInfo.health_check, and simulated agents' health.

No test sleeps to synchronise: each waits, with a bound, for the events or files that show
the checker did what the test needs (a probe writes a line, a server logs a request)."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from tests.localmesos.scheduler import RawScheduler, task_info

pytestmark = pytest.mark.integration

Start = Callable[..., LocalMesos]
HEALTH = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
            "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_DROPPED"}
HTTP_SERVER = "exec python3 -m http.server {port} --bind 127.0.0.1"
# Answers the first HTTP request with 200, then accepts connections and never answers.
HANGS_AFTER_FIRST = """
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(16)
c, _ = s.accept()
c.recv(65536)
c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n")
c.close()
held = []
while True:
    held.append(s.accept()[0])
"""


# --- helpers -----------------------------------------------------------------------------
@pytest.fixture
def schedulers() -> Iterator[list[RawScheduler]]:
    made: list[RawScheduler] = []
    yield made
    for s in made:
        s.close()


def connect(lm: LocalMesos, made: list[RawScheduler], *caps: str) -> RawScheduler:
    s = RawScheduler(lm.master_url, capabilities=caps)
    made.append(s)
    assert s.subscribe()["type"] == "SUBSCRIBED"
    return s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_port(offer: dict[str, Any], task_id: str, command: str, port: int,
              **extra: Any) -> dict[str, Any]:
    """A task that takes `port` from the offer's ports, as a service listening on it does."""
    info = task_info(offer, task_id, command, **extra)
    info["resources"].append({"name": "ports", "type": "RANGES",
                              "ranges": {"range": [{"begin": port, "end": port}]}})
    return info


def check(kind: str, **fields: Any) -> dict[str, Any]:
    """A HealthCheck of `kind` with fast timings unless told otherwise."""
    hc: dict[str, Any] = {"type": kind, "delay_seconds": 0.0, "interval_seconds": 0.05,
                          "timeout_seconds": 2.0, "grace_period_seconds": 10.0}
    hc.update(fields)
    return hc


def updates_until(s: RawScheduler, task_id: str, done: Callable[[dict[str, Any]], bool],
                  timeout: float = 20) -> list[dict[str, Any]]:
    """Every update of `task_id` (each acknowledged, resends dropped), up to and including
    the first for which `done` holds."""
    seen: list[dict[str, Any]] = []
    uuids: set[str] = set()

    def match(event: dict[str, Any]) -> bool:
        if event["type"] != "UPDATE":
            return False
        status = event["update"]["status"]
        s.ack(status)
        if status["task_id"]["value"] != task_id or status.get("uuid") in uuids:
            return False
        uuids.add(status.get("uuid", ""))
        seen.append(status)
        return done(status)

    s.wait_for(match, timeout, f"the updates of {task_id}")
    return seen


def until_terminal(status: dict[str, Any]) -> bool:
    return status["state"] in TERMINAL


def steps(statuses: list[dict[str, Any]]) -> list[tuple[str, bool | None, str | None]]:
    """An update sequence as (state, healthy, reason)."""
    return [(st["state"], st.get("healthy"), st.get("reason")) for st in statuses]


def no_update_waiting(s: RawScheduler, task_id: str) -> bool:
    """Whether no update of `task_id` has arrived and is still unread (others are acked)."""
    while True:
        try:
            event = s.events.get_nowait()
        except queue.Empty:
            return True
        if event["type"] == "UPDATE":
            status = event["update"]["status"]
            if status["task_id"]["value"] == task_id:
                return False
            s.ack(status)


def eventually(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def sandbox(lm: LocalMesos, s: RawScheduler, task_id: str) -> Path:
    path = lm.resolve_sandbox_path(
        f"/frameworks/{s.framework_id}/executors/{task_id}/runs/latest")
    assert path is not None
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def checker_threads(task_id: str = "") -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(f"health-{task_id}") and t.is_alive()]


# --- real agents -------------------------------------------------------------------------
def test_http_check_first_success_is_reported_once_and_shows_in_tasks(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    port = free_port()
    lm = local_mesos(ports=(port, port))
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    hc = check("HTTP", http={"port": port, "path": "/"})
    s.launch(offer, with_port(offer, "web", HTTP_SERVER.format(port=port), port,
                              health_check=hc))
    seen = updates_until(s, "web", lambda st: "healthy" in st)
    # TASK_RUNNING says nothing of health; the first success is its own TASK_RUNNING.
    assert steps(seen) == [("TASK_STARTING", None, None), ("TASK_RUNNING", None, None),
                           ("TASK_RUNNING", True, HEALTH)]
    healthy = seen[-1]
    assert healthy["source"] == "SOURCE_EXECUTOR" and "message" not in healthy
    assert healthy["container_status"] == seen[1]["container_status"]
    # Later successes are not reported: let the server log several more probes.
    stderr = sandbox(lm, s, "web") / "stderr"
    eventually(lambda: sum('"GET / ' in line for line in lines(stderr)) >= 5,
               "the server never saw five probes")
    assert no_update_waiting(s, "web")

    # The master keeps the health in the task's statuses and writes the check with its
    # defaults (stout's JSON::Protobuf writes unset fields that have one).
    task = next(t for t in get_json(lm.master_url + "/tasks")["tasks"] if t["id"] == "web")
    assert task["health_check"] == {**hc, "consecutive_failures": 3,
                                    "http": {"port": port, "path": "/", "protocol": "IPv4"}}
    # A repeated state replaces the previous entry (Master::updateTask): one TASK_RUNNING.
    assert [(st["state"], st.get("healthy")) for st in task["statuses"]][-2:] == [
        ("TASK_STARTING", None), ("TASK_RUNNING", True)]
    # ... and reconciliation reports it (getTaskHealth).
    s.call({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "web"}}]}})
    reconciled = s.wait_update("web", timeout=5)
    assert (reconciled["reason"], reconciled["healthy"]) == ("REASON_RECONCILIATION", True)

    # A scheduler's kill is no health kill: its TASK_KILLED says nothing of health.
    s.call({"type": "KILL", "kill": {"task_id": {"value": "web"}}})
    end = updates_until(s, "web", until_terminal)
    assert steps(end) == [("TASK_KILLED", None, None)]
    assert checker_threads("web") == []  # joined before the terminal update


def test_http_404_is_unhealthy_every_time_and_kills_after_consecutive_failures(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    port = free_port()
    lm = local_mesos(ports=(port, port))
    s = connect(lm, schedulers, "TASK_KILLING_STATE")
    offer = s.wait_offers()[0]
    hc = check("HTTP", http={"port": port, "path": "/missing"}, grace_period_seconds=0.0,
               consecutive_failures=3)
    s.launch(offer, with_port(offer, "notfound", HTTP_SERVER.format(port=port), port,
                              health_check=hc,
                              kill_policy={"grace_period": {"nanoseconds": 2_000_000_000}}))
    seen = updates_until(s, "notfound", until_terminal)
    # Every counted failure is reported; the third kills the task with its kill policy,
    # TASK_KILLING first for a framework that asked for it, and the end says unhealthy.
    assert steps(seen) == [
        ("TASK_STARTING", None, None), ("TASK_RUNNING", None, None),
        ("TASK_RUNNING", False, HEALTH), ("TASK_RUNNING", False, HEALTH),
        ("TASK_RUNNING", False, HEALTH),
        ("TASK_KILLING", None, None), ("TASK_KILLED", False, None)]
    assert seen[-1]["message"] == "Command terminated with signal Terminated"
    assert checker_threads("notfound") == []
    task = next(t for t in get_json(lm.master_url + "/tasks")["tasks"]
                if t["id"] == "notfound")
    assert task["statuses"][-1]["healthy"] is False


def test_grace_period_ignores_failures_until_the_first_success(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    # One failure would kill (consecutive_failures 1) were it counted. The probe runs in the
    # task's sandbox with the task's environment, and logs each run.
    hc = check("COMMAND", command={"value": 'echo "$MARK" >> probes; test -f ready'},
               grace_period_seconds=60.0, consecutive_failures=1)
    s.launch(offer, task_info(offer, "slow", "sleep 60", env={"MARK": "probe"},
                              health_check=hc))
    updates_until(s, "slow", lambda st: st["state"] == "TASK_RUNNING")
    box = sandbox(lm, s, "slow")
    eventually(lambda: len(lines(box / "probes")) >= 5, "the probe never ran five times")
    assert set(lines(box / "probes")) == {"probe"}
    assert no_update_waiting(s, "slow")  # failures in the grace period: not a word

    (box / "ready").touch()
    assert steps(updates_until(s, "slow", lambda st: "healthy" in st)) == [
        ("TASK_RUNNING", True, HEALTH)]
    # After a success the grace period no longer applies, although it is not over.
    (box / "ready").unlink()
    assert steps(updates_until(s, "slow", until_terminal)) == [
        ("TASK_RUNNING", False, HEALTH), ("TASK_KILLED", False, None)]


def test_failures_count_once_the_grace_period_is_over(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    hc = check("COMMAND", command={"value": "false"}, grace_period_seconds=0.5,
               consecutive_failures=2)
    s.launch(offer, task_info(offer, "never", "sleep 60", health_check=hc))
    seen = updates_until(s, "never", until_terminal)
    assert steps(seen) == [
        ("TASK_STARTING", None, None), ("TASK_RUNNING", None, None),
        ("TASK_RUNNING", False, HEALTH), ("TASK_RUNNING", False, HEALTH),
        ("TASK_KILLED", False, None)]
    # The grace period runs from the launch (the checker starts just before TASK_RUNNING).
    assert seen[2]["timestamp"] - seen[1]["timestamp"] >= 0.5 - 0.05


@pytest.mark.parametrize("listening", [True, False])
def test_tcp_check_is_healthy_when_the_port_accepts_connections(
        local_mesos: Start, schedulers: list[RawScheduler], listening: bool) -> None:
    port = free_port()
    lm = local_mesos(ports=(port, port))
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    command = HTTP_SERVER.format(port=port) if listening else "sleep 60"
    hc = check("TCP", tcp={"port": port}, grace_period_seconds=0.0 if not listening else 10.0,
               consecutive_failures=1)
    s.launch(offer, with_port(offer, "tcp", command, port, health_check=hc))
    if listening:
        seen = updates_until(s, "tcp", lambda st: "healthy" in st)
        assert steps(seen)[-1] == ("TASK_RUNNING", True, HEALTH)
        s.call({"type": "KILL", "kill": {"task_id": {"value": "tcp"}}})
        assert steps(updates_until(s, "tcp", until_terminal)) == [
            ("TASK_KILLED", None, None)]
    else:
        assert steps(updates_until(s, "tcp", until_terminal))[-2:] == [
            ("TASK_RUNNING", False, HEALTH), ("TASK_KILLED", False, None)]


def test_a_probe_that_outlives_its_timeout_is_a_failure(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    port = free_port()
    lm = local_mesos(ports=(port, port))
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    # The server answers once, then holds every request: without the timeout the second
    # probe would wait for ever and nothing more would be reported.
    hc = check("HTTP", http={"port": port}, timeout_seconds=0.3, interval_seconds=0.1,
               consecutive_failures=1)
    s.launch(offer, with_port(offer, "hangs", 'exec python3 -c "$SCRIPT"', port,
                              env={"SCRIPT": HANGS_AFTER_FIRST, "PORT": str(port)},
                              health_check=hc))
    seen = updates_until(s, "hangs", until_terminal)
    assert steps(seen)[-3:] == [("TASK_RUNNING", True, HEALTH),
                                ("TASK_RUNNING", False, HEALTH), ("TASK_KILLED", False, None)]
    # The next probe starts an interval after the success and fails a timeout later.
    assert seen[-2]["timestamp"] - seen[-3]["timestamp"] >= 0.1 + 0.3 - 0.05


def test_agent_shutdown_stops_a_probe_that_has_no_timeout(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos()
    s = connect(lm, schedulers, "PARTITION_AWARE")
    offer = s.wait_offers()[0]
    hc = check("COMMAND", command={"value": "echo started >> probes; exec sleep 600"},
               timeout_seconds=0.0)  # 0: no timeout at all
    s.launch(offer, task_info(offer, "stuck", "sleep 600", health_check=hc))
    updates_until(s, "stuck", lambda st: st["state"] == "TASK_RUNNING")
    box = sandbox(lm, s, "stuck")
    eventually(lambda: lines(box / "probes") == ["started"], "the probe never started")
    assert checker_threads("stuck") != []
    started = time.monotonic()
    lm.remove_agent(offer["agent_id"]["value"])  # kills the task, joins its threads
    assert time.monotonic() - started < 5
    assert checker_threads() == []
    assert not [t.name for t in threading.enumerate() if t.name == "task-stuck"]


# --- the master's validation -------------------------------------------------------------
@pytest.mark.parametrize(("health_check", "error"), [
    ({}, "HealthCheck must specify 'type'"),
    ({"type": "PING", "tcp": {"port": 80}}, "HealthCheck must specify 'type'"),
    ({"type": "UNKNOWN"}, "'UNKNOWN' is not a valid health check type"),
    ({"type": "HTTP"}, "Expecting 'http' to be set for HTTP health check"),
    ({"type": "HTTP", "http": {"port": 80, "scheme": "ftp"}},
     "Unsupported HTTP health check scheme: 'ftp'"),
    ({"type": "HTTP", "http": {"port": 80, "path": "health"}},
     "The path 'health' of HTTP health check must start with '/'"),
    ({"type": "TCP"}, "Expecting 'tcp' to be set for TCP health check"),
    ({"type": "COMMAND"}, "Expecting 'command' to be set for COMMAND health check"),
    ({"type": "COMMAND", "command": {}}, "Command health check must contain 'shell command'"),
    ({"type": "COMMAND", "command": {"shell": False}},
     "Command health check must contain 'executable path'"),
    ({"type": "COMMAND", "command": {"value": "true", "environment": {
        "variables": [{"name": "X"}]}}},
     "Health check's `CommandInfo` is invalid: Environment variable 'X' of type 'VALUE' "
     "must have a value set"),
    ({"type": "TCP", "tcp": {"port": 80}, "interval_seconds": -1},
     "Expecting 'interval_seconds' to be non-negative"),
    ({"type": "TCP", "tcp": {"port": 80}, "grace_period_seconds": -0.5},
     "Expecting 'grace_period_seconds' to be non-negative"),
])
def test_an_invalid_health_check_makes_the_launch_a_task_error(
        local_mesos: Start, schedulers: list[RawScheduler], health_check: dict[str, Any],
        error: str) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    code, text = s.launch(offer, task_info(offer, "bad", health_check=health_check))
    assert code == 202, text
    status = s.wait_update("bad")
    assert (status["state"], status["reason"], status["source"], status["message"]) == (
        "TASK_ERROR", "REASON_TASK_INVALID", "SOURCE_MASTER",
        f"Task uses invalid health check: {error}")


def test_a_health_check_without_its_required_port_is_refused_by_the_api(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    code, text = s.launch(offer, task_info(offer, "noport", health_check={
        "type": "HTTP", "http": {"path": "/"}}))
    assert (code, text) == (400, "Failed to validate scheduler::Call: Not initialized: "
                                 "accept.operations[0].launch.task_infos[0].health_check"
                                 ".http.port")


# --- simulated agents --------------------------------------------------------------------
def test_simulated_tasks_report_health_on_the_same_schedule(
        local_mesos: Start, schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = connect(lm, schedulers)
    offer = s.wait_offers()[0]
    hc = check("TCP", tcp={"port": 1}, interval_seconds=0.05, grace_period_seconds=0.3,
               consecutive_failures=3)
    run = {"DOCKET_SIM_DURATION": "60"}

    def sim(task_id: str, health: dict[str, str], **extra: Any) -> dict[str, Any]:
        return task_info(offer, task_id, "sim", env=run, labels={"labels": [
            {"key": k, "value": v} for k, v in health.items()]}, **extra)

    s.launch(offer,
             sim("sick", {"DOCKET_SIM_HEALTHY": "false"}, health_check=hc),
             sim("sours", {"DOCKET_SIM_UNHEALTHY_AFTER": "0.4"}, health_check=hc),
             sim("fine", {}, health_check=hc),
             sim("unchecked", {"DOCKET_SIM_HEALTHY": "false"}))
    statuses: dict[str, list[dict[str, Any]]] = {}
    ended: set[str] = set()

    def collect(event: dict[str, Any]) -> bool:
        if event["type"] == "UPDATE":
            st = event["update"]["status"]
            s.ack(st)
            statuses.setdefault(st["task_id"]["value"], []).append(st)
            if st["state"] in TERMINAL:
                ended.add(st["task_id"]["value"])
        return ended >= {"sick", "sours"}

    s.wait_for(collect, 20, "the unhealthy tasks' ends")
    # Never healthy: failures ignored for the grace period, then three and the kill.
    assert steps(statuses["sick"]) == [
        ("TASK_STARTING", None, None), ("TASK_RUNNING", None, None),
        *[("TASK_RUNNING", False, HEALTH)] * 3, ("TASK_KILLED", False, None)]
    sick = statuses["sick"]
    assert sick[2]["timestamp"] - sick[1]["timestamp"] >= 0.3 - 0.05
    # Healthy first, then failing: no grace period any more.
    assert steps(statuses["sours"]) == [
        ("TASK_STARTING", None, None), ("TASK_RUNNING", None, None),
        ("TASK_RUNNING", True, HEALTH), *[("TASK_RUNNING", False, HEALTH)] * 3,
        ("TASK_KILLED", False, None)]
    sours = statuses["sours"]
    assert sours[3]["timestamp"] - sours[1]["timestamp"] >= 0.4 - 0.05
    # Healthy for good: one update; no health check: none, whatever the labels say.
    assert steps(statuses["fine"]) == [
        ("TASK_STARTING", None, None), ("TASK_RUNNING", None, None),
        ("TASK_RUNNING", True, HEALTH)]
    assert steps(statuses["unchecked"]) == [
        ("TASK_STARTING", None, None), ("TASK_RUNNING", None, None)]
    s.call({"type": "KILL", "kill": {"task_id": {"value": "fine"}}})
    assert steps(updates_until(s, "fine", until_terminal)) == [("TASK_KILLED", None, None)]
