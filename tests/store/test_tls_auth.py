"""etcd over TLS with client certificates and with authentication: the store, watches and the
Python client work through them; a wrong certificate or password is one clear error naming the
endpoint, raised within the timeout."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from controller.client import Client
from controller.localmesos import LocalMesos
from controller.store import EtcdSecurity, EtcdServer, Store, StoreError
from tests.e2e.harness import Docket, sim
from tests.fixtures.etcd_secure import AUTH_PASSWORD, AUTH_USER, SECURE_PREFIX, Certs

pytestmark = pytest.mark.integration

def _security(c: Certs, **over: object) -> EtcdSecurity:
    values: dict[str, object] = {"ca_cert": str(c.ca), "cert": str(c.client_cert),
                                 "key": str(c.client_key)}
    values.update(over)
    return EtcdSecurity(**values)  # type: ignore[arg-type]


def test_tls_store_read_write_and_watch(tls_etcd: EtcdServer, etcd_certs: Certs) -> None:
    assert tls_etcd.endpoint.startswith("https://")
    store = Store(tls_etcd.endpoint, prefix=SECURE_PREFIX, retry_seconds=2,
                  security=_security(etcd_certs))
    try:
        key = f"{SECURE_PREFIX}/x"
        raw = store.client.raw
        store.client.call("put", key, lambda: raw.put(key, b"1"))
        assert store.client.call("get", key, lambda: raw.get(key))[0] == b"1"
        # the watch connection is secure too
        assert store.watch_client.raw.get(key)[0] == b"1"
    finally:
        store.close()


def test_host_port_with_cacert_implies_https(tls_etcd: EtcdServer, etcd_certs: Certs) -> None:
    bare = tls_etcd.endpoint.removeprefix("https://")
    store = Store(bare, prefix=SECURE_PREFIX, retry_seconds=2, security=_security(etcd_certs))
    try:
        assert store.client.endpoints == [f"https://{bare}"]
        store.client.call("get", "k", lambda: store.client.raw.get(f"{SECURE_PREFIX}/k"))
    finally:
        store.close()


@pytest.mark.parametrize("case", ["wrong-ca", "wrong-client-cert", "no-client-cert"])
def test_tls_failures_are_one_clear_error(tls_etcd: EtcdServer, etcd_certs: Certs,
                                          case: str) -> None:
    c = etcd_certs
    security = {
        "wrong-ca": _security(c, ca_cert=str(c.other_ca)),
        "wrong-client-cert": _security(c, cert=str(c.other_cert), key=str(c.other_key)),
        "no-client-cert": _security(c, cert=None, key=None),
    }[case]
    store = Store(tls_etcd.endpoint, prefix=SECURE_PREFIX, timeout=2, retry_seconds=2,
                  security=security)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as info:
            store.client.call("get", "k", lambda: store.client.raw.get(f"{SECURE_PREFIX}/k"))
    finally:
        store.close()
    assert time.monotonic() - started < 2.5  # not retried
    text = str(info.value)
    assert text.startswith(f"etcd at {tls_etcd.endpoint}: TLS handshake failed: "), text
    assert "\n" not in text


def test_auth_store_and_watch(auth_etcd: EtcdServer) -> None:
    security = EtcdSecurity(user=AUTH_USER, password=AUTH_PASSWORD)
    assert AUTH_PASSWORD not in repr(security)
    store = Store(auth_etcd.endpoint, prefix=SECURE_PREFIX, retry_seconds=2, security=security)
    try:
        key = f"{SECURE_PREFIX}/a"
        raw = store.client.raw
        store.client.call("put", key, lambda: raw.put(key, b"v"))
        assert store.client.call("get", key, lambda: raw.get(key))[0] == b"v"
        assert store.watch_client.raw.get(key)[0] == b"v"
        # etcd forgets a token (expiry, restart): the next call authenticates again.
        store.client.use_token((("token", "not-a-valid-token"),))
        assert store.client.call("get", key, lambda: raw.get(key))[0] == b"v"
    finally:
        store.close()


def test_wrong_password_is_one_clear_error(auth_etcd: EtcdServer) -> None:
    store = Store(auth_etcd.endpoint, prefix=SECURE_PREFIX, timeout=2, retry_seconds=5,
                  security=EtcdSecurity(user=AUTH_USER, password="wrong-pw"))
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as info:
            store.client.call("get", "k", lambda: store.client.raw.get(f"{SECURE_PREFIX}/k"))
    finally:
        store.close()
    assert time.monotonic() - started < 3  # not retried
    text = str(info.value)
    assert text == f"etcd at {auth_etcd.endpoint}: authentication failed for user {AUTH_USER}"
    assert "wrong-pw" not in text


def test_python_client_over_tls_and_auth(tls_etcd: EtcdServer, auth_etcd: EtcdServer,
                                         etcd_certs: Certs) -> None:
    c = etcd_certs
    with Client(tls_etcd.endpoint, prefix=SECURE_PREFIX, ca_cert=str(c.ca),
                cert=str(c.client_cert), key=str(c.client_key), retry_seconds=2) as client:
        assert client.list("jobs") == []
    with Client(auth_etcd.endpoint, prefix=SECURE_PREFIX, user=f"{AUTH_USER}:{AUTH_PASSWORD}",
                retry_seconds=2) as client:
        assert client.list("jobs") == []



@pytest.mark.parametrize("mode", ["tls", "auth"])
def test_a_job_runs_through_secure_etcd(mode: str, tls_etcd: EtcdServer, auth_etcd: EtcdServer,
                                        etcd_certs: Certs,
                                        local_mesos: Callable[..., LocalMesos]) -> None:
    """The quickstart's Job, run by the controller (in process) through a secure etcd."""
    server, security = ((tls_etcd, _security(etcd_certs)) if mode == "tls" else
                        (auth_etcd, EtcdSecurity(user=AUTH_USER, password=AUTH_PASSWORD)))
    store = Store(server.endpoint, prefix=f"{SECURE_PREFIX}/{uuid.uuid4().hex[:8]}",
                  retry_seconds=5, security=security)
    lm = local_mesos(simulate=True)
    d = Docket(store, lm, resync_seconds=300).start()
    try:
        d.put_job("hello", {"completions": 2, "parallelism": 2, "template": sim(0.05)})
        status = d.wait_phase("hello", "Succeeded", "Failed", timeout=15)
        assert status.phase == "Succeeded", status
    finally:
        d.stop()
        store.close()
