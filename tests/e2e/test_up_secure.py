"""`docket up --secure` as a user runs it: etcd on https with client certificates and
authentication on, the controller connected as docket-controller; the hello Job put with the
etcdctl line `up` prints (the real etcdctl, as docket-app) runs to Succeeded, watched with the
printed `docket get` line; plain http and a request without a password are refused; etcd holds
exactly the roles of controller/store/roles.py; every secret file is 0600."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.store import EtcdClient
from controller.store.certs import LocalPki
from controller.store.etcd_server import free_ports
from controller.store.roles import APP, CONTROLLER, grants, role_grants

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"never saw {needle!r}; output so far:\n{''.join(seen)}")


def _line(banner: str, needle: str) -> str:
    found = [line.strip() for line in banner.splitlines() if needle in line]
    assert len(found) == 1, (needle, banner)
    return found[0]


def _shell(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A printed command line, run as the user would paste it."""
    return subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True,
                          timeout=30)


def test_up_secure_runs_the_quickstart_job_with_least_privilege(tmp_path: Path) -> None:
    ports = dict(zip(("--etcd-port", "--etcd-peer-port", "--mesos-port", "--agent-port",
                      "--metrics-port", "--redis-port"), free_ports(6), strict=True))
    argv = [str(BIN / "docket"), "up", "--secure", "--data-dir", "data"]
    for flag, port in ports.items():
        argv += [flag, str(port)]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    port = ports["--etcd-port"]
    https = f"https://127.0.0.1:{port}"
    data = tmp_path / "data"
    pki = LocalPki(data / "tls")
    try:
        banner = _wait_for_line(proc, "Press Ctrl-C")
        assert "controller  ready" in banner, banner
        assert f"etcd        {https}  (TLS with client certificates, authentication on" in banner
        put = _line(banner, " put /docket/jobs/default/hello ")
        assert put.startswith('ETCDCTL_PASSWORD="$(cat data/auth/docket-app.password)" ')
        assert f"etcdctl --endpoints {https} --cacert data/tls/ca.pem" in put, put
        assert "--user docket-app put" in put, put
        assert _line(banner, "passwords (0600").count(CONTROLLER) == 1

        done = _shell(put, tmp_path)  # the real etcdctl, as docket-app
        assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr
        get = _line(banner, " get jobs ")
        hello_done = re.compile(r"^hello\s+Succeeded\s+3/3", re.MULTILINE)
        deadline = time.monotonic() + 30
        table = _shell(get, tmp_path)
        while not hello_done.search(table.stdout) and time.monotonic() < deadline:
            time.sleep(0.3)
            table = _shell(get, tmp_path)
        assert hello_done.search(table.stdout), (table.stdout, table.stderr)
        described = _shell(_line(banner, " describe job default/hello "), tmp_path)
        assert described.stdout.count("TASK_FINISHED") == 3, described

        # Refused: plain http, and TLS without a password (etcd takes the client
        # certificate's name as the user, which is none of its users).
        etcdctl = [str(BIN / "etcdctl"), "--dial-timeout", "2s", "--command-timeout", "3s"]
        tls = ["--cacert", str(pki.ca), "--cert", str(pki.client_cert),
               "--key", str(pki.client_key)]
        plain = subprocess.run([*etcdctl, "--endpoints", f"http://127.0.0.1:{port}", "get",
                                "--prefix", "/docket/jobs/"], capture_output=True, text=True,
                               timeout=30)
        assert plain.returncode != 0 and "/docket/jobs/default/hello" not in plain.stdout
        anonymous = subprocess.run([*etcdctl, "--endpoints", https, *tls, "get", "--prefix",
                                    "/docket/jobs/"], capture_output=True, text=True,
                                   timeout=30)
        assert anonymous.returncode != 0 and "permission denied" in anonymous.stderr, anonymous
        no_user = subprocess.run([str(BIN / "docket"), "get", "jobs", "--etcd", https, *tls],
                                 capture_output=True, text=True, timeout=30)
        assert no_user.returncode == 1 and no_user.stderr.count("\n") == 1, no_user.stderr
        assert "permission denied" in no_user.stderr, no_user.stderr

        # etcd holds exactly the grants of roles.py (the script's, tests/security).
        root = EtcdClient(https, retry_seconds=3, security=pki.controller_security(
            "root", (data / "auth" / "root.password").read_text().strip()))
        try:
            held = role_grants(root, CONTROLLER) | role_grants(root, APP)
        finally:
            root.close()
        assert held == set(grants("/docket"))
        secret_files = [*(data / "auth").iterdir(), pki.ca_key, pki.server_key,
                        pki.controller_key, pki.client_key]
        assert len(secret_files) == 7
        assert {oct(f.stat().st_mode & 0o777) for f in secret_files} == {"0o600"}

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "permission denied" not in (data / "controller.log").read_text().lower()
    # A data dir once secured is not started insecure (its etcd would refuse everyone).
    refused = subprocess.run([str(BIN / "docket"), "up", "--data-dir", "data"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "run `docket up --secure`" in refused.stderr
