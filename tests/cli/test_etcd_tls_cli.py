"""`docket get` (and every object command, through the shared --etcd flags) over TLS with client
certificates and with authentication, with etcdctl's flag names or DOCKET_ETCD_* variables;
a wrong certificate or password is one line naming the endpoint and exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli.main import main
from controller.store import EtcdServer
from tests.fixtures.etcd_secure import AUTH_PASSWORD, AUTH_USER, SECURE_PREFIX, Certs

pytestmark = pytest.mark.integration


def _tls_flags(c: Certs) -> list[str]:
    return ["--cacert", str(c.ca), "--cert", str(c.client_cert), "--key", str(c.client_key)]


def test_get_over_tls(tls_etcd: EtcdServer, etcd_certs: Certs,
                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["get", "jobs", "--etcd", tls_etcd.endpoint, "--prefix", SECURE_PREFIX,
                 *_tls_flags(etcd_certs)])
    out = capsys.readouterr()
    assert code == 0, out.err


def test_get_over_tls_from_env(tls_etcd: EtcdServer, etcd_certs: Certs,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    c = etcd_certs
    monkeypatch.setenv("DOCKET_ETCD_CACERT", str(c.ca))
    monkeypatch.setenv("DOCKET_ETCD_CERT", str(c.client_cert))
    monkeypatch.setenv("DOCKET_ETCD_KEY", str(c.client_key))
    code = main(["get", "jobs", "--etcd", tls_etcd.endpoint.removeprefix("https://"),
                 "--prefix", SECURE_PREFIX])
    assert code == 0, capsys.readouterr().err


def test_wrong_ca_is_one_line(tls_etcd: EtcdServer, etcd_certs: Certs,
                              capsys: pytest.CaptureFixture[str]) -> None:
    c = etcd_certs
    code = main(["get", "jobs", "--etcd", tls_etcd.endpoint, "--prefix", SECURE_PREFIX,
                 "--cacert", str(c.other_ca), "--cert", str(c.client_cert),
                 "--key", str(c.client_key)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"etcd at {tls_etcd.endpoint}: TLS handshake failed" in err


def test_get_with_user_and_password_file(auth_etcd: EtcdServer, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    base = ["get", "jobs", "--etcd", auth_etcd.endpoint, "--prefix", SECURE_PREFIX]
    assert main([*base, "--user", f"{AUTH_USER}:{AUTH_PASSWORD}"]) == 0, capsys.readouterr()
    secret = tmp_path / "pw"
    secret.write_text(AUTH_PASSWORD + "\n")
    assert main([*base, "--user", AUTH_USER, "--password-file", str(secret)]) == 0


def test_wrong_password_is_one_line(auth_etcd: EtcdServer,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["get", "jobs", "--etcd", auth_etcd.endpoint, "--prefix", SECURE_PREFIX,
                 "--user", f"{AUTH_USER}:nope-nope"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (f"docket get: etcd at {auth_etcd.endpoint}: authentication failed for "
                   f"user {AUTH_USER}\n")


def test_run_accepts_etcdctl_flags() -> None:
    import argparse

    from controller.config import add_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--cacert", "ca.pem", "--cert", "c.pem", "--key", "k.pem",
                              "--user", "bob:pw", "--etcd-endpoints", "https://h:2379"])
    settings = settings_from_args(args, env={})
    sec = settings.etcd_security()
    assert (sec.ca_cert, sec.cert, sec.key, sec.user, sec.password) == (
        "ca.pem", "c.pem", "k.pem", "bob", "pw")
    assert "pw" not in repr(sec) and "bob:pw" not in repr(settings)
