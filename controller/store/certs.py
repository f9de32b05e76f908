"""Certificates for etcd over TLS, made with the `openssl` command: a CA, a server certificate
for localhost and 127.0.0.1, and client certificates signed by that CA.

`docket up --secure` keeps them in its data dir (`ensure_local_pki`: made once, reused on every
restart, so that a client configured yesterday still works today) and the tests make
throw-away ones (`make_ca`, `make_leaf`). The openssl CLI rather than a Python library: it is
on every machine that has etcd's users on it, and it adds no dependency.

Every certificate is a leaf of one CA with both serverAuth and clientAuth, as etcd's own
tutorials do; keys are EC P-256 and written 0600. A client certificate's common name is never
the name of an etcd user: with `--client-cert-auth` etcd would take the CN as the user when a
request carries no token, and Docket wants every user to authenticate with a password, so that
"no credentials" is refused even over a valid TLS connection.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from controller.store.client import EtcdSecurity

# How long the certificates of `docket up --secure` last. A local system: long enough never to
# expire under someone's feet; an operator deploying for real brings their own PKI.
LOCAL_DAYS = 3650


class CertError(RuntimeError):
    """openssl is missing or refused; the message says which step and why."""


def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)
    except FileNotFoundError:
        raise CertError("the openssl command is not installed (apt-get install openssl)"
                        ) from None
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace").strip().splitlines()
        raise CertError(f"openssl {args[0]} failed: {err[-1] if err else exc}") from None


def _private(path: Path) -> None:
    path.chmod(0o600)


def make_ca(cn: str, cert: Path, key: Path, days: int = 1) -> None:
    """A self-signed CA certificate `cert` with its key `key`."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE")
    _private(key)


def make_leaf(cn: str, ca_cert: Path, ca_key: Path, cert: Path, key: Path,
              days: int = 1) -> None:
    """A certificate for `cn` signed by the CA, valid for localhost and 127.0.0.1, usable by a
    server and by a client."""
    csr = cert.with_suffix(".csr")
    ext = cert.with_suffix(".ext")
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")
    try:
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        _private(key)
        # No -CAcreateserial: a random serial each time, and no stray .srl file.
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                 "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-out", str(cert),
                 "-days", str(days), "-extfile", str(ext))
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)


@dataclass(frozen=True)
class LocalPki:
    """The files of `docket up --secure`, under `<data dir>/tls`."""

    directory: Path

    def _p(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca(self) -> Path:
        return self._p("ca.pem")

    @property
    def ca_key(self) -> Path:
        return self._p("ca-key.pem")

    @property
    def server_cert(self) -> Path:
        return self._p("server.pem")

    @property
    def server_key(self) -> Path:
        return self._p("server-key.pem")

    @property
    def controller_cert(self) -> Path:
        """The controller's client certificate (`docket run`)."""
        return self._p("controller.pem")

    @property
    def controller_key(self) -> Path:
        return self._p("controller-key.pem")

    @property
    def client_cert(self) -> Path:
        """The client certificate of people and tools (etcdctl, the docket CLI)."""
        return self._p("client.pem")

    @property
    def client_key(self) -> Path:
        return self._p("client-key.pem")

    def controller_security(self, user: str | None = None,
                            password: str | None = None) -> EtcdSecurity:
        """How the controller (and `up` itself) reaches etcd: the CA, the controller's
        certificate, and `user` when given."""
        return EtcdSecurity(ca_cert=str(self.ca), cert=str(self.controller_cert),
                            key=str(self.controller_key), user=user, password=password)


def ensure_local_pki(directory: Path, days: int = LOCAL_DAYS) -> tuple[LocalPki, bool]:
    """The PKI in `directory`, made if any file of it is missing (all of it again: a new CA
    invalidates the old certificates, which must not linger). True if it was made now."""
    pki = LocalPki(directory)
    files = (pki.ca, pki.ca_key, pki.server_cert, pki.server_key, pki.controller_cert,
             pki.controller_key, pki.client_cert, pki.client_key)
    if all(f.exists() for f in files):
        return pki, False
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    make_ca("docket-local-ca", pki.ca, pki.ca_key, days)
    make_leaf("etcd-server", pki.ca, pki.ca_key, pki.server_cert, pki.server_key, days)
    make_leaf("docket-controller-tls", pki.ca, pki.ca_key, pki.controller_cert,
              pki.controller_key, days)
    make_leaf("docket-client-tls", pki.ca, pki.ca_key, pki.client_cert, pki.client_key, days)
    return pki, True
