"""Docket's least-privilege etcd roles (controller/store/roles.py, deploy/security/etcd-roles.sh)
against a real etcd with authentication on, the roles created by running the script:

- the script and the Python definition grant exactly the same, and etcd holds exactly that;
- `docket run`, as docket-controller, runs the quickstart's Job (put with `docket apply` as
  docket-app) to Succeeded: leader election, the layout migration, status and execution
  writes and the status page all work within its prefix;
- docket-app gets, describes, waits for and deletes it, and is refused status writes, secrets
  and the controller's keys — one line naming the key, no traceback;
- a simple token that etcd dropped while the client was idle is renewed on the next call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from pyetcd import etcdrpc

from controller.api import KINDS, ExecutionRecord, encode_model
from controller.localmesos import LocalMesos
from controller.queue_ops import dead_entry
from controller.reconcile import ObjectKey, task_id
from controller.store import (
    EtcdClient,
    EtcdSecurity,
    EtcdServer,
    EtcdServerError,
    Store,
    StoreError,
)
from controller.store.etcd_server import etcd_binary, free_port
from controller.store.roles import (
    APP,
    APP_SPEC_PLURALS,
    CONTROLLER,
    enable_auth,
    ensure_roles,
    role_grants,
)
from controller.store.roles import grants as python_grants
from tests.e2e.harness import Process, controller_env, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "security" / "etcd-roles.sh"
BIN = Path(sys.executable).parent
PREFIX = "/docket"
HELLO = {"apiVersion": "docket.dev/v1", "kind": "Job", "metadata": {"name": "hello"},
         "spec": {"completions": 3, "template": {"command": "echo hello"}}}


@dataclass(frozen=True)
class Secured:
    server: EtcdServer
    passwords: dict[str, Path]  # user -> password file

    def password(self, user: str) -> str:
        return self.passwords[user].read_text().strip()

    def store(self, user: str, **kw: float) -> Store:
        return Store(self.server.endpoint, prefix=PREFIX, retry_seconds=kw.pop("retry", 3),
                     security=EtcdSecurity(user=user, password=self.password(user)), **kw)

    def docket(self, user: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "docket"), *argv, "--etcd", self.server.endpoint, "--user", user,
             "--password-file", str(self.passwords[user])],
            capture_output=True, text=True, timeout=60)


def run_script(endpoint: str, *args: str, user: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ETCDCTL_ENDPOINTS": endpoint,
           "DOCKET_ETCDCTL": str(etcd_binary().parent / "etcdctl")}
    if user is not None:
        env["ETCDCTL_USER"] = user
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """etcd with authentication turned on by the script, which created both roles and users."""
    base = tmp_path_factory.mktemp("etcd-roles")
    server = EtcdServer(data_dir=base / "data")
    try:
        server.start()
    except EtcdServerError as exc:
        pytest.fail(f"cannot start a real etcd for the tests: {exc}", pytrace=False)
    try:
        passwords = {}
        for user in ("root", CONTROLLER, APP):
            passwords[user] = base / f"{user}.password"
            passwords[user].write_text(f"pw-of-{user}-{os.urandom(6).hex()}\n")
            passwords[user].chmod(0o600)
        done = run_script(server.endpoint, "--controller-password-file",
                          str(passwords[CONTROLLER]), "--app-password-file",
                          str(passwords[APP]), "--enable-auth", str(passwords["root"]))
        assert done.returncode == 0, done.stderr
        assert "authentication enabled" in done.stdout, done.stdout
        yield Secured(server, passwords)
    finally:
        server.stop()


def _root_client(s: Secured) -> EtcdClient:
    return EtcdClient(s.server.endpoint, retry_seconds=3,
                      security=EtcdSecurity(user="root", password=s.password("root")))


def test_script_and_python_grant_the_same_and_etcd_holds_exactly_that(
        secured: Secured) -> None:
    # What the script says it grants, for any prefix, is what roles.py grants.
    for prefix in ("/docket", "/teams/a"):
        printed = run_script("127.0.0.1:1", "--print", "--prefix", prefix)
        assert printed.returncode == 0, printed.stderr
        lines = sorted(tuple(line.split()) for line in printed.stdout.splitlines())
        assert lines == [(g.role, g.permission, g.key) for g in python_grants(prefix)]
    # And what it did to etcd is exactly that, read back from etcd (no extra range).
    client = _root_client(secured)
    try:
        held = role_grants(client, CONTROLLER) | role_grants(client, APP)
    finally:
        client.close()
    assert held == set(python_grants(PREFIX))
    # A second run (as root now that auth is on) changes nothing and succeeds.
    again = run_script(secured.server.endpoint,
                       user=f"root:{secured.password('root')}")
    assert again.returncode == 0, again.stderr


def test_every_kind_is_granted_to_applications_on_purpose() -> None:
    # A new kind must be added to APP_SPEC_PLURALS (and the script) deliberately.
    assert sorted(k.plural for k in KINDS) == sorted(APP_SPEC_PLURALS)


def _layout_1_record(store: Store) -> tuple[str, str, bytes]:
    """A Job whose only execution record is where layout 1 kept it: (old key, the key it must
    move to, the record)."""
    spec = {"apiVersion": "docket.dev/v1", "kind": "Job",
            "spec": {"template": {"command": "echo legacy"}}}
    store.put_raw(store.keys.object("jobs", "legacy", "old"), json.dumps(spec).encode())
    found = store.get_raw(store.keys.object("jobs", "legacy", "old"))
    assert found is not None
    tid = task_id(ObjectKey("Job", "legacy", "old"), found[2], 0, 0)  # uid: create revision
    now = datetime.now(UTC)
    rec = encode_model(ExecutionRecord(task_id=tid, index=0, attempt=0, state="TASK_FINISHED",
                                       exit_code=0, submitted_at=now, finished_at=now))
    old = store.keys.legacy_execution("legacy", "old", tid)
    store.put_raw(old, rec)
    return old, store.keys.execution("jobs", "legacy", "old", tid), rec


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def test_the_controller_and_an_application_team_with_exactly_their_grants(
        secured: Secured, local_mesos: Callable[..., LocalMesos], tmp_path: Path) -> None:
    lm = local_mesos(work_dir=tmp_path / "mesos")
    root = Store(secured.server.endpoint, prefix=PREFIX, retry_seconds=3,
                 security=EtcdSecurity(user="root", password=secured.password("root")))
    old_key, new_key, record = _layout_1_record(root)
    metrics = free_port()
    env = controller_env(secured.server.endpoint, PREFIX, lm,
                         DOCKET_METRICS_ADDRESS=f"127.0.0.1:{metrics}",
                         DOCKET_ETCD_USER=CONTROLLER,
                         DOCKET_ETCD_PASSWORD_FILE=str(secured.passwords[CONTROLLER]))
    controller = Process(env, tmp_path / "controller.log")
    controller.start()
    try:
        base = f"http://127.0.0.1:{metrics}"
        code, body = wait_for(lambda: (r := _get(f"{base}/readyz"))[0] == 200 and r, 30,
                              lambda: f"{_get(base + '/readyz')}\n"
                                      f"{(tmp_path / 'controller.log').read_text()[-3000:]}")
        assert "[+]leader ok" in body, body
        # The leader migrated layout 1 before acting: the legacy Job's record counts, and
        # its one completion is done without a new launch.
        legacy = secured.docket(APP, "wait", "job", "legacy/old", "--for", "phase=Succeeded",
                                "--timeout", "30s")
        assert legacy.returncode == 0, (legacy.stdout, legacy.stderr)
        assert root.get_raw(old_key) is None
        moved = root.get_raw(new_key)
        assert moved is not None and moved[0] == record

        manifest = tmp_path / "hello.json"
        manifest.write_text(json.dumps(HELLO))
        applied = secured.docket(APP, "apply", "-f", str(manifest))
        assert applied.returncode == 0, applied.stderr
        waited = secured.docket(APP, "wait", "job/hello", "--for", "phase=Succeeded",
                                "--timeout", "60s")
        assert waited.returncode == 0, (waited.stdout, waited.stderr,
                                        (tmp_path / "controller.log").read_text()[-3000:])
        table = secured.docket(APP, "get", "jobs")
        assert table.returncode == 0 and "3/3" in table.stdout, table
        described = secured.docket(APP, "describe", "job", "default/hello")
        assert described.returncode == 0, described.stderr
        assert described.stdout.count("TASK_FINISHED") == 3, described.stdout
        # The status page, fed by the leader's caches.
        code, page = _get(f"{base}/")
        assert code == 200 and "This process leads the controllers." in page, page
        assert "Succeeded: 2" in page, page
        # The controller recorded everything under its prefix and nowhere else.
        status = root.get_status("jobs", "default", "hello")
        assert status is not None and status.status.phase == "Succeeded"
        deleted = secured.docket(APP, "delete", "job", "default/hello", "--wait")
        assert deleted.returncode == 0, deleted.stderr
        assert root.get_raw(root.keys.status("jobs", "default", "hello")) is None
    finally:
        code = controller.terminate() if controller.proc and controller.proc.poll() is None \
            else None
        controller.cleanup()
        root.close()
    assert code == 0
    # Nothing the controller did, in any of its parts, needed more than its prefix.
    assert "permission denied" not in (tmp_path / "controller.log").read_text().lower()


@pytest.mark.parametrize("key,write", [
    (f"{PREFIX}/status/jobs/default/hello", True),
    (f"{PREFIX}/executions/jobs/default/hello/job.default.hello.1.0.0", True),
    (f"{PREFIX}/secrets/default/db-password", False),
    (f"{PREFIX}/controller/leader", False),
    (f"{PREFIX}/controller/framework-id", True),
    (f"{PREFIX}/queue-claims/default/thumbs/img-1", True),
])
def test_an_application_team_is_refused_outside_its_grants(
        secured: Secured, key: str, write: bool) -> None:
    store = secured.store(APP)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as info:
            if write:
                store.put_raw(key, b"forged")
            else:
                store.get_raw(key)
    finally:
        store.close()
    assert time.monotonic() - started < 2  # refused at once, not retried as an outage
    text = str(info.value)
    assert "\n" not in text and key in text and "permission denied to user docket-app" in text, text


def test_the_cli_refusal_is_one_line_naming_the_key(secured: Secured) -> None:
    # docket-app has nothing under another prefix: the CLI says so, no traceback.
    done = secured.docket(APP, "get", "jobs", "--prefix", "/elsewhere")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "/elsewhere/jobs/" in done.stderr and "permission denied" in done.stderr, done.stderr
    # ...and the controller's user can read what the application's cannot.
    store = secured.store(CONTROLLER)
    try:
        assert store.get_raw(f"{PREFIX}/secrets/default/db-password") is None
    finally:
        store.close()


def test_an_expired_simple_token_is_renewed(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """etcd (--auth-token=simple, --auth-token-ttl=2: etcd takes both from ETCD_* variables)
    drops a token idle for 2 s; the store's next call authenticates again and succeeds."""
    monkeypatch.setenv("ETCD_AUTH_TOKEN", "simple")
    monkeypatch.setenv("ETCD_AUTH_TOKEN_TTL", "2")
    server = EtcdServer(data_dir=tmp_path / "data")
    server.start()
    try:
        setup = EtcdClient(server.endpoint, retry_seconds=3)
        try:  # the Python twin of the script this time (what `docket up --secure` runs)
            ensure_roles(setup, PREFIX, {APP: "app-pw"})
            enable_auth(setup, "root-pw")
        finally:
            setup.close()
        store = Store(server.endpoint, prefix=PREFIX, retry_seconds=3,
                      security=EtcdSecurity(user=APP, password="app-pw"))
        try:
            key = store.keys.object("jobs", "default", "idle")
            store.put_raw(key, b"{}")
            token = store.client.raw.metadata
            assert token is not None

            def token_dropped() -> bool:
                """The first token, sent as is, is refused: etcd forgot it."""
                raw = store.client.raw
                try:
                    raw.kvstub.Range(etcdrpc.RangeRequest(key=key.encode()), 2,
                                     metadata=token)
                except grpc.RpcError as exc:
                    assert "invalid auth token" in str(exc.details()), exc
                    return True
                return False

            # Polling with the token would keep it alive: wait past the TTL first (etcd's own
            # timer, checked every second), then confirm it is gone.
            idle_until = time.monotonic() + 3.5
            while time.monotonic() < idle_until:
                time.sleep(0.1)
            # A poll that finds it alive renews it: poll less often than TTL + etcd's 1 s
            # sweep, so the next one finds it gone whatever the machine's load.
            wait_for(token_dropped, 20, lambda: "etcd kept the idle token", interval=4.0)
            found = store.get_raw(key)  # renews the token
            assert found is not None and found[0] == b"{}"
            assert store.client.raw.metadata != token
        finally:
            store.close()
    finally:
        server.stop()


def test_an_application_team_runs_the_queue_commands(secured: Secured, tmp_path: Path) -> None:
    """push, dead and requeue (which deletes a dead letter and puts its message back) and
    describe work within docket-app's grants; no controller needed."""
    queue = {"apiVersion": "docket.dev/v1", "kind": "Queue", "metadata": {"name": "thumbs"},
             "spec": {"source": {"type": "etcd"}, "template": {"command": "true"}}}
    manifest = tmp_path / "queue.json"
    manifest.write_text(json.dumps(queue))
    assert secured.docket(APP, "apply", "-f", str(manifest)).returncode == 0
    pushed = secured.docket(APP, "queue", "push", "default/thumbs", "cat.png")
    assert pushed.returncode == 0, pushed.stderr
    root = Store(secured.server.endpoint, prefix=PREFIX, retry_seconds=3,
                 security=EtcdSecurity(user="root", password=secured.password("root")))
    try:  # a dead letter, as the controller writes it
        root.put_raw(f"{PREFIX}/queue-dead/default/thumbs/img-9",
                     dead_entry(b"broken.png", "BackoffLimitExceeded", "queue.x", "now"))
        dead = secured.docket(APP, "queue", "dead", "default/thumbs")
        assert dead.returncode == 0 and "img-9" in dead.stdout, dead
        requeued = secured.docket(APP, "queue", "requeue", "default/thumbs", "img-9")
        assert requeued.returncode == 0, requeued.stderr
        assert root.get_raw(f"{PREFIX}/queue-dead/default/thumbs/img-9") is None
        item = root.get_raw(f"{PREFIX}/queue-items/default/thumbs/img-9")
        assert item is not None and item[0] == b"broken.png"
        described = secured.docket(APP, "describe", "queue", "default/thumbs")
        assert described.returncode == 0, described.stderr
    finally:
        root.close()


def test_a_team_role_is_limited_to_its_namespace(secured: Secured, tmp_path: Path) -> None:
    """`--namespace team-a` makes docket-app-team-a: the shared docket-app's grants narrowed
    to one namespace, as roles.namespace_grants says, so a team can neither write objects into
    another's namespace (and run them with that namespace's secrets and Mesos role) nor read
    another's status."""
    from controller.store.roles import namespace_grants, namespace_role

    printed = run_script("127.0.0.1:1", "--print", "--namespace", "team-a")
    assert printed.returncode == 0, printed.stderr
    assert sorted(tuple(line.split()) for line in printed.stdout.splitlines()) == [
        (g.role, g.permission, g.key) for g in namespace_grants(PREFIX, "team-a")]
    user = namespace_role("team-a")
    password = tmp_path / "team-a.password"
    password.write_text("pw-of-team-a\n")
    root_env = ("--app-password-file", str(password), "--namespace", "team-a")
    env = {**os.environ, "ETCDCTL_ENDPOINTS": secured.server.endpoint,
           "DOCKET_ETCDCTL": str(etcd_binary().parent / "etcdctl"),
           "ETCDCTL_USER": f"root:{secured.password('root')}"}
    done = subprocess.run(["bash", str(SCRIPT), *root_env], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    client = _root_client(secured)
    try:
        assert role_grants(client, user) == set(namespace_grants(PREFIX, "team-a"))
    finally:
        client.close()
    team = Store(secured.server.endpoint, prefix=PREFIX, retry_seconds=3,
                 security=EtcdSecurity(user=user, password="pw-of-team-a"))
    try:
        team.put_raw(f"{PREFIX}/jobs/team-a/mine", json.dumps(HELLO).encode())
        assert team.get_raw(f"{PREFIX}/status/jobs/team-a/mine") is None  # may read its own
        for write, key in ((True, f"{PREFIX}/jobs/team-b/theirs"),
                           (False, f"{PREFIX}/status/jobs/team-b/theirs"),
                           (False, f"{PREFIX}/secrets/team-a/db")):
            with pytest.raises(StoreError, match="permission denied"):
                if write:
                    team.put_raw(key, b"{}")
                else:
                    team.get_raw(key)
    finally:
        team.close()
