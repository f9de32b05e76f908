"""The leak test of issue 15: a Secret's value appears in exactly two places, its own etcd key
and the task's environment on the agent.

A real `docket run` process, a real etcd and the embedded Mesos with a real agent. The Secret
(a random value) is written with `docket create secret`; a Job refers to it through
`valueFrom.secretKeyRef` and prints the value's SHA-256 (never the value), and exits non-zero
unless the variable is set, so its success and the hash in its sandbox prove the agent's
environment had it. Then the value, plain and base64, is looked for everywhere Docket or Mesos
could have put it: every etcd key and value under the prefix but the Secret's own key, every
line the controller logged, every CLI output that shows the Job or the Secret, the master's
`/state`, `/tasks` and `/frameworks`, the agent's `/state`, the controller's status page and
`/metrics`. The positive checks (the Secret's key holds it, the hash matches) keep the test
from passing vacuously.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from controller.store import EtcdServer, Store
from tests.e2e.harness import Process, controller_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NS, JOB, SECRET = "default", "leak", "leak-db"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode("utf-8", "replace"))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except OSError:
            value = None  # a server not answering yet
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {what}"
        time.sleep(0.05)


@pytest.fixture
def controller(etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path
               ) -> Iterator[Callable[[LocalMesos, int], Process]]:
    made: list[Process] = []

    def start(lm: LocalMesos, metrics_port: int) -> Process:
        env = controller_env(etcd_server.endpoint, etcd_prefix, lm,
                             DOCKET_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
                             DOCKET_LEADER_LEASE_SECONDS="2")
        p = Process(env, tmp_path / "controller.log")
        made.append(p)
        p.start()
        return p

    yield start
    for p in made:
        p.cleanup()


def test_a_secret_value_is_only_in_its_key_and_the_task_environment(
        local_mesos: Callable[..., LocalMesos], store: Store, etcd_server: EtcdServer,
        etcd_prefix: str, controller: Callable[[LocalMesos, int], Process],
        tmp_path: Path) -> None:
    value = "leak-" + secrets.token_hex(16)
    encoded = base64.b64encode(value.encode()).decode()
    needles = (value, encoded)
    lm = local_mesos()  # a real agent: the task is a process with an environment
    cli_env = {**os.environ, "DOCKET_ETCD_ENDPOINTS": etcd_server.endpoint,
               "DOCKET_KEY_PREFIX": etcd_prefix, "DOCKET_MESOS_MASTER": lm.master_url}
    outputs: dict[str, str] = {}

    def docket(*args: str, check: bool = True) -> str:
        proc = subprocess.run([sys.executable, "-m", "controller.cli.main", *args],
                              env=cli_env, capture_output=True, text=True, timeout=30)
        text = proc.stdout + proc.stderr
        outputs[" ".join(args)] = text
        assert not check or proc.returncode == 0, text
        return text

    user_file = tmp_path / "user"
    user_file.write_text("app")
    created = docket("create", "secret", SECRET, "-n", NS, "--from-literal",
                     f"password={value}", "--from-file", f"user={user_file}")
    assert f"secret {NS}/{SECRET} created (keys: password, user)" in created

    metrics_port = free_port()
    process = controller(lm, metrics_port)
    job = {"apiVersion": "docket.dev/v1", "kind": "Job", "spec": {"template": {
        # Fails unless the variable is set; prints its hash, never the value.
        "command": '[ -n "$DB_PASSWORD" ] && printf %s "$DB_PASSWORD" | sha256sum',
        "env": {"MODE": "test", "DB_PASSWORD": {"valueFrom": {"secretKeyRef": {
            "name": SECRET, "key": "password"}}}}}}}
    store.put_raw(store.keys.object("jobs", NS, JOB), json.dumps(job).encode())

    def phase() -> str | None:
        got = store.get_status("jobs", NS, JOB)
        return got.status.phase if got is not None else None

    wait_until(lambda: phase() in ("Succeeded", "Failed"), "the Job ends")
    assert phase() == "Succeeded", outputs

    # Where it must be: the task's environment (its output is the value's hash)...
    digest = hashlib.sha256(value.encode()).hexdigest()
    logs = docket("logs", "job", f"{NS}/{JOB}")
    assert digest in logs
    # ...and the Secret's own key.
    own_key = store.keys.secret(NS, SECRET)
    own = store.get_raw(own_key)
    assert own is not None and encoded.encode() in own[0]

    # Nowhere else in etcd.
    items, _ = store.list_raw(etcd_prefix + "/")
    assert len(items) >= 4  # the Secret, the Job, its status and its execution at least
    for key, data, *_ in items:
        if key == own_key:
            continue
        text = key + data.decode("utf-8", "replace")
        for needle in needles:
            assert needle not in text, f"secret value in etcd key {key}"

    # Nowhere in what the CLI prints.
    docket("get", "jobs", "-o", "yaml")
    docket("get", "job", JOB, "-o", "json")
    describe = docket("describe", "job", f"{NS}/{JOB}")
    assert "DB_PASSWORD" in describe  # the variable's name is shown, not its value
    listed = docket("get", "secrets")
    assert SECRET in listed and "password,user" in listed
    as_yaml = docket("get", "secret", SECRET, "-o", "yaml")
    assert "password: <" in as_yaml and f"<{len(value)} bytes>" in as_yaml
    docket("get", "secret", SECRET, "-o", "json")
    described = docket("describe", "secret", f"{NS}/{SECRET}")
    assert f"password:  {len(value)} bytes" in described
    docket("create", "secret", SECRET, "--from-literal", f"password={value}", check=False)
    assert "already exists" in outputs[f"create secret {SECRET} --from-literal "
                                       f"password={value}"]
    for args, text in outputs.items():
        for needle in needles:
            assert needle not in text, f"secret value in the output of docket {args}"

    # Nowhere Mesos shows tasks: the master never shows a command; the agent shows one only
    # while a task is queued on it (state_json.py), and this one has ended.
    agent = json.loads(http_text(lm.master_url + "/state"))["slaves"][0]
    pages = {path: http_text(lm.master_url + path) for path in ("/state", "/tasks",
                                                                "/frameworks")}
    pages["agent /state"] = http_text(f"http://{agent['pid'].partition('@')[2]}/state")
    assert all(JOB in text for text in pages.values())  # the task is in each of them
    # The controller's status page and metrics.
    base = f"http://127.0.0.1:{metrics_port}"
    pages["status page"] = wait_until(
        lambda: (t := http_text(base + "/")) and "Succeeded" in t and t,
        "the status page counts the Job (a leader's page)")
    pages["/metrics"] = http_text(base + "/metrics")
    for where, text in pages.items():
        for needle in needles:
            assert needle not in text, f"secret value in {where}"

    # Nowhere in the controller's log (every line it wrote, to its end).
    assert process.terminate() == 0
    log_text = (tmp_path / "controller.log").read_text()
    assert "task launch requested" in log_text  # the log is the controller's, and complete
    for needle in needles:
        assert needle not in log_text, "secret value in the controller's log"
