"""What `docket up --secure` keeps in its data dir and does to its etcd, on a first start and on
every restart: certificates made once and reused (controller/store/certs.py); roles and users
created, then brought back to exactly their grants by root (controller/store/roles.py); a
root password that is not etcd's refused in one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyetcd import etcdrpc
from pyetcd.etcdrpc import auth_pb2

from controller.store import EtcdClient, EtcdServer, Store, StoreError
from controller.store.certs import LocalPki, ensure_local_pki
from controller.store.roles import (
    APP,
    CONTROLLER,
    grants,
    password_file,
    prefix_range_end,
    role_grants,
    secure_local_etcd,
)

pytestmark = pytest.mark.integration


def test_certificates_are_made_once_and_remade_whole(tmp_path: Path) -> None:
    pki, made = ensure_local_pki(tmp_path / "tls")
    assert made
    ca = pki.ca.read_bytes()
    keys = (pki.ca_key, pki.server_key, pki.controller_key, pki.client_key)
    assert {oct(k.stat().st_mode & 0o777) for k in keys} == {"0o600"}
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == sorted(
        ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "controller.pem",
         "controller-key.pem", "client.pem", "client-key.pem"])  # no CSR, serial or ext
    again, made = ensure_local_pki(tmp_path / "tls")
    assert not made and again.ca.read_bytes() == ca
    pki.client_cert.unlink()  # one file lost: everything is made again, with a new CA
    _, made = ensure_local_pki(tmp_path / "tls")
    assert made and pki.ca.read_bytes() != ca


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[EtcdServer, LocalPki]]:
    pki, _ = ensure_local_pki(tmp_path / "tls")
    server = EtcdServer(data_dir=tmp_path / "etcd", cert_file=pki.server_cert,
                        key_file=pki.server_key, trusted_ca_file=pki.ca)
    server.start()
    yield server, pki
    server.stop()


def test_first_start_and_restart(tls_server: tuple[EtcdServer, LocalPki],
                                 tmp_path: Path) -> None:
    server, pki = tls_server
    auth = tmp_path / "auth"
    secure_local_etcd(server.endpoint, pki.controller_security(), auth)
    assert sorted(p.name for p in auth.iterdir()) == [
        "docket-app.password", "docket-controller.password", "root.password"]
    root_pw = password_file(auth, "root").read_text().strip()
    root = EtcdClient(server.endpoint, retry_seconds=3,
                      security=pki.controller_security("root", root_pw))
    try:
        # Someone widened docket-app meanwhile; a restart narrows it back.
        root.call("grant", "", lambda: root.raw.authstub.RoleGrantPermission(
            etcdrpc.AuthRoleGrantPermissionRequest(name=APP, perm=auth_pb2.Permission(
                permType=auth_pb2.Permission.READ, key=b"/docket/secrets/",
                range_end=prefix_range_end(b"/docket/secrets/"))),
            3, metadata=root.raw.metadata))
        assert len(role_grants(root, APP)) == len([g for g in grants() if g.role == APP]) + 1
        secure_local_etcd(server.endpoint, pki.controller_security(), auth)  # a restart
        assert role_grants(root, CONTROLLER) | role_grants(root, APP) == set(grants())
        assert password_file(auth, "root").read_text().strip() == root_pw  # kept
    finally:
        root.close()
    # The controller's password from its file works, with its certificate.
    pw = password_file(auth, CONTROLLER).read_text().strip()
    store = Store(server.endpoint, retry_seconds=3,
                  security=pki.controller_security(CONTROLLER, pw))
    try:
        store.put_raw("/docket/controller/probe", b"1")
        assert store.get_raw("/docket/controller/probe") is not None
    finally:
        store.close()


def test_an_etcd_secured_by_someone_else_is_refused(tls_server: tuple[EtcdServer, LocalPki],
                                                    tmp_path: Path) -> None:
    server, pki = tls_server
    secure_local_etcd(server.endpoint, pki.controller_security(), tmp_path / "first")
    with pytest.raises(StoreError, match="already has authentication on, with a root "
                                         "password that is not in"):
        secure_local_etcd(server.endpoint, pki.controller_security(), tmp_path / "other")
    assert not password_file(tmp_path / "other", "root").exists()
