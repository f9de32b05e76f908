"""controller/secrets.py on the in-memory etcd: a missing Secret or key denies an object of
any kind with SecretNotFound naming the env field, a NUL byte or an invalid document with
SecretInvalid; `prepare` fills LaunchRequest.secret_env from the cache (and leaves out what
vanished, so the backend refuses the launch); a change wakes its namespace. Every check first
waits until the cache has applied etcd's head revision, never for a fixed time."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from controller.admission import SECRET_NOT_FOUND
from controller.api import decode_object
from controller.mesos.backend import LaunchRequest
from controller.secrets import SECRET_INVALID, SecretCache
from controller.store import MemoryEtcd, Store
from tests.store.conformance.backend import eventually, head

VALUE = "s3cr3t-värde"
REF = {"valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}


class Harness:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.changes: list[str] = []
        self._lock = threading.Lock()
        self.cache = SecretCache(store, on_change=self._changed)

    def _changed(self, namespace: str) -> None:
        with self._lock:
            self.changes.append(namespace)

    def put(self, name: str, ns: str = "team", **body: Any) -> None:
        doc = {"apiVersion": "docket.dev/v1", "kind": "Secret", **body}
        self.store.put_raw(self.store.keys.secret(ns, name), json.dumps(doc).encode())

    def delete(self, name: str, ns: str = "team") -> None:
        self.store.delete_raw(self.store.keys.secret(ns, name))

    def caught_up(self) -> None:
        target = head(self.store)
        eventually(lambda: self.cache.next_revision > target, 10)


@pytest.fixture
def h() -> Iterator[Harness]:
    store = MemoryEtcd().store()
    harness = Harness(store)
    yield harness
    harness.cache.stop()
    store.close()


def started(h: Harness) -> Harness:
    h.cache.start()
    assert h.cache.wait_for_sync(10)
    h.caught_up()
    return h


def job(env: dict[str, Any], kind: str = "Job") -> Any:
    template: dict[str, Any] = {"command": "true", "env": env}
    spec: Any = {
        "Job": {"template": template},
        "CronJob": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}},
        "Queue": {"source": {"type": "etcd"}, "template": template},
        "Service": {"template": template},
    }[kind]
    return decode_object({"apiVersion": "docket.dev/v1", "kind": kind,
                          "metadata": {"name": "app", "namespace": "team"}, "spec": spec})


@pytest.mark.parametrize(("kind", "path"), [
    ("Job", "spec.template"), ("CronJob", "spec.jobTemplate.spec.template"),
    ("Queue", "spec.template"), ("Service", "spec.template")])
def test_a_missing_secret_or_key_denies_every_kind(h: Harness, kind: str, path: str) -> None:
    started(h)
    obj = job({"PLAIN": "x", "DB_PASSWORD": REF}, kind)
    denial = h.cache.check(kind, "team", "app", obj)
    assert denial is not None and denial.reason == SECRET_NOT_FOUND
    assert denial.field == f"{path}.env.DB_PASSWORD.valueFrom.secretKeyRef"
    assert denial.message == "secret team/db does not exist"
    h.put("db", stringData={"user": "admin"})
    h.caught_up()
    denial = h.cache.check(kind, "team", "app", obj)
    assert denial is not None and denial.message == "secret team/db has no key password"
    h.put("db", stringData={"user": "admin", "password": VALUE})
    h.caught_up()
    assert h.cache.check(kind, "team", "app", obj) is None
    # Another namespace's Secret of that name is not this one's.
    assert h.cache.check(kind, "other", "app", obj) is not None


def test_objects_without_refs_pass_before_any_secret_exists(h: Harness) -> None:
    started(h)
    assert h.cache.check("Job", "team", "app", job({"A": "1"})) is None


def test_nul_bytes_and_invalid_secrets_are_invalid_not_missing(h: Harness) -> None:
    started(h)
    h.put("db", data={"password": base64.b64encode(b"a\0b").decode()})
    h.caught_up()
    denial = h.cache.check("Job", "team", "app", job({"DB_PASSWORD": REF}))
    assert denial is not None and denial.reason == SECRET_INVALID
    assert "NUL" in denial.message
    h.put("db", data={"password": "not base64!"})
    h.caught_up()
    denial = h.cache.check("Job", "team", "app", job({"DB_PASSWORD": REF}))
    assert denial is not None and denial.reason == SECRET_INVALID
    assert "data.password: must be base64" in denial.message
    assert "not base64!" not in denial.message


def request(env: dict[str, Any], task_id: str = "job.team.app.7.0.0") -> LaunchRequest:
    return LaunchRequest(task_id=task_id, template=job(env).spec.template)


def test_prepare_fills_secret_env_and_leaves_out_what_vanished(h: Harness) -> None:
    started(h)
    h.put("db", stringData={"password": VALUE})
    h.put("raw", data={"bin": base64.b64encode(b"\xff\xfe").decode()})
    h.caught_up()
    bin_ref = {"valueFrom": {"secretKeyRef": {"name": "raw", "key": "bin"}}}
    req = request({"PLAIN": "x", "DB_PASSWORD": REF, "BIN": bin_ref})
    out = h.cache.prepare(req)
    assert out.secret_env["DB_PASSWORD"] == VALUE
    assert out.secret_env["BIN"].encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert req.secret_env == {}  # a copy: the request the executor holds stays empty
    assert VALUE not in repr(out)  # secret_env is out of the repr
    h.delete("db")
    h.caught_up()
    gone = h.cache.prepare(req)
    assert "DB_PASSWORD" not in gone.secret_env and "BIN" in gone.secret_env
    # Not Docket's task id: nothing to resolve against.
    assert h.cache.prepare(request({"DB_PASSWORD": REF}, "foreign")).secret_env == {}


def test_prepare_reads_the_namespace_from_the_task_id(h: Harness) -> None:
    started(h)
    h.put("db", ns="other", stringData={"password": "theirs"})
    h.put("db", ns="team", stringData={"password": VALUE})
    h.caught_up()
    assert h.cache.prepare(request({"P": REF}, "job.other.app.1.0.0")).secret_env == {
        "P": "theirs"}
    assert h.cache.prepare(request({"P": REF}, "service.team.web.1.2.0")).secret_env == {
        "P": VALUE}


def test_changes_wake_their_namespace(h: Harness) -> None:
    h.put("db", stringData={"password": VALUE})
    started(h)
    assert h.changes == []  # the first list judged nothing yet
    h.put("db", ns="other", stringData={"k": "v"})
    h.caught_up()
    assert h.changes == ["other"]
    h.delete("db")
    h.caught_up()
    assert h.changes == ["other", "team"]
    h.store.put_raw(h.store.keys.prefix + "/secrets/team/x/too-deep", b"{}")
    h.caught_up()
    assert h.changes == ["other", "team"]  # not a Secret's key


def test_secrets_changed_in_one_transaction_are_all_applied(h: Harness) -> None:
    """Regression: events of one revision (one transaction, one `etcdctl del --prefix`) were
    filtered against the revision of the first of them, so all but one were skipped and a
    revoked secret stayed usable."""
    from controller.store import Delete, Put

    started(h)
    doc = {"apiVersion": "docket.dev/v1", "kind": "Secret", "stringData": {"k": "v"}}
    h.store.commit([Put(h.store.keys.secret("team", n), json.dumps(doc).encode())
                    for n in ("a", "b", "c")])
    h.caught_up()
    assert all(h.cache.check("Job", "team", "app", job({"X": {"valueFrom": {"secretKeyRef": {
        "name": n, "key": "k"}}}})) is None for n in ("a", "b", "c"))
    h.store.commit([Delete(h.store.keys.secret("team", n)) for n in ("a", "b", "c")])
    h.caught_up()
    for n in ("a", "b", "c"):
        denial = h.cache.check("Job", "team", "app", job({"X": {"valueFrom": {
            "secretKeyRef": {"name": n, "key": "k"}}}}))
        assert denial is not None and denial.reason == SECRET_NOT_FOUND, (n, denial)
