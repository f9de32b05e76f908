"""The etcd client (etcd-sdk-python, python-etcd3's API) and its retry policy.

Every etcd call of the store goes through `EtcdClient.call`, which times it, counts errors
and retries transient failures (etcd down, restarting, timing out) with exponential backoff
and jitter, for at most `retry_seconds`. Anything else is raised as a `StoreError` naming the
operation and key.

A retried write whose first attempt timed out may in fact have been applied: a compare-and-swap
retry then fails as a `Conflict` (and `put_if_absent` says False) although our own write is the
one that won. Callers treat a Conflict as "re-read and decide again", which is safe here.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import pyetcd
import pyetcd.exceptions
from pyetcd import etcdrpc
from pyetcd.client import Endpoint, MultiEndpointEtcd3Client
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from controller.store.metrics import ETCD_REQUEST_ERRORS, ETCD_REQUEST_SECONDS

T = TypeVar("T")


class StoreError(Exception):
    """An etcd operation failed for a reason other than a transient outage."""


class EtcdUnavailable(StoreError):
    """etcd could not be reached within the retry budget."""


class Conflict(StoreError):
    """A compare-and-swap write lost: the key changed since it was read."""


class Compacted(StoreError):
    """A read at a revision etcd has already compacted away."""


def _is_compacted(exc: BaseException) -> bool:
    return (isinstance(exc, grpc.RpcError) and hasattr(exc, "code")
            and exc.code() == grpc.StatusCode.OUT_OF_RANGE
            and "compacted" in str(exc.details() if hasattr(exc, "details") else exc))


_TRANSIENT = (
    pyetcd.exceptions.ConnectionFailedError,
    pyetcd.exceptions.ConnectionTimeoutError,
    pyetcd.exceptions.InternalServerError,
    pyetcd.exceptions.NoServerAvailableError,
)
_TRANSIENT_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
}


def _details(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "details"):
        return str(exc.details() or "")
    return str(exc)


def _rpc_error(exc: BaseException) -> BaseException | None:
    """The gRPC error itself, or the one pyetcd wrapped in a ConnectionFailedError."""
    chain: tuple[BaseException | None, ...] = (exc, exc.__cause__, exc.__context__)
    for e in chain:
        if isinstance(e, grpc.RpcError) and isinstance(e, BaseException):
            return e
    return None


def tls_failure(exc: BaseException) -> str | None:
    """Why the TLS handshake failed (unknown CA, bad or missing client certificate), or None:
    no retry will fix it."""
    rpc = _rpc_error(exc)
    text = _details(rpc) if rpc is not None else ""
    if "handshake failed" not in text.lower():
        return None
    reason = text.rpartition("OPENSSL_internal:")[2] or text
    return reason.removesuffix(": OK").strip()


def is_tls_failure(exc: BaseException) -> bool:
    return tls_failure(exc) is not None


def is_auth_failure(exc: BaseException) -> bool:
    """Wrong user name or password."""
    return isinstance(exc, grpc.RpcError) and "authentication failed" in _details(exc)


def is_token_expired(exc: BaseException) -> bool:
    """etcd forgot our token (simple tokens expire after 5 idle minutes, or etcd restarted)
    or never got one: authenticate again and retry."""
    text = _details(exc)
    return isinstance(exc, grpc.RpcError) and (
        "invalid auth token" in text or "user name is empty" in text)


def is_transient(exc: BaseException) -> bool:
    if is_tls_failure(exc):
        return False
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, grpc.RpcError):
        if is_tls_failure(exc) or is_auth_failure(exc):
            return False
        if is_token_expired(exc):
            return True
        code = exc.code() if hasattr(exc, "code") else None
        return code in _TRANSIENT_CODES
    # pyetcd marks an endpoint failed after an outage and refuses it for `time_retry`
    # seconds with this ValueError; we keep time_retry tiny, so it is transient.
    return isinstance(exc, ValueError) and "failed node" in str(exc)


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    text = endpoint.strip()
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"etcd endpoint {endpoint!r} must look like HOST:PORT")
    return host, int(port)


@dataclass(frozen=True)
class EtcdSecurity:
    """TLS and authentication towards etcd, with etcdctl's meanings: `ca_cert` (--cacert)
    verifies the server, `cert` and `key` (--cert, --key) are the client certificate, `user`
    and `password` (--user name:password) authenticate. The password is never shown."""

    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("an etcd client certificate needs both cert and key")
        if (self.user is None) != (self.password is None):
            raise ValueError("etcd authentication needs both a user and a password")

    @property
    def tls(self) -> bool:
        return any(v is not None for v in (self.ca_cert, self.cert, self.key))

    def channel_credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None, what: str) -> bytes | None:
            if path is None:
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as exc:
                raise ValueError(f"etcd {what} {path}: {exc.strerror or exc}") from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_cert, "CA certificate"),
            private_key=read(self.key, "client key"),
            certificate_chain=read(self.cert, "client certificate"))


def split_user(user: str, password: str | None = None) -> tuple[str, str | None]:
    """etcdctl's `--user name:password`; a password given apart wins."""
    name, sep, inline = user.partition(":")
    if password is None and sep:
        password = inline
    return name, password


# gRPC waits between reconnection attempts with a backoff that grows to 120 s: after a 30 s
# outage a channel could sit out 10 s or more after etcd is back, and every call failed fast
# meanwhile. Retrying the connection every half second at most costs nothing on loopback or a
# LAN and lets the controller resume within a second of etcd's return.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


class EtcdClient:
    """A connected client with the retry policy; `raw` is the underlying pyetcd client."""

    security = EtcdSecurity()  # the in-memory twin (memory.MemoryEtcdClient) keeps this

    def __init__(self, endpoints: str | Sequence[str] = "127.0.0.1:2379", *,
                 timeout: float = 5.0, retry_seconds: float = 30.0,
                 security: EtcdSecurity | None = None) -> None:
        eps = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        eps = [e.strip() for item in eps for e in item.split(",") if e.strip()]
        if not eps:
            raise ValueError("no etcd endpoint given")
        self.security = security or EtcdSecurity()
        # `https://` implies TLS (verified against the system's CAs unless --cacert is given).
        secure = self.security.tls or any(e.startswith("https://") for e in eps)
        if secure:
            eps = [e if "://" in e else f"https://{e}" for e in eps]
        self.endpoints = eps
        parsed = [parse_endpoint(e) for e in eps]
        creds = self.security.channel_credentials() if secure else None
        # pyetcd refuses an endpoint for `time_retry` seconds after one failure (default 300).
        # With one endpoint there is nowhere else to go: retry it at once. With several, a
        # short pause lets it fail over to another member instead of hammering a dead one.
        time_retry = 0.0 if len(parsed) == 1 else 2.0
        self.raw: Any = MultiEndpointEtcd3Client(
            endpoints=[Endpoint(h, p, secure=secure, creds=creds, time_retry=time_retry,
                                opts=list(CHANNEL_OPTIONS)) for h, p in parsed],
            timeout=timeout, failover=len(parsed) > 1,
        )
        self._auth_lock = threading.Lock()
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.give_up: Callable[[], bool] = _never
        """Checked between retries: once true, a failing call stops retrying at once. The
        controller sets it to "no longer leading": a deposed leader's workers must not sit in
        a 30 s retry while it stops them (after an etcd outage, the new term waited for it)."""

    def __repr__(self) -> str:
        return f"EtcdClient({self.endpoints!r}, security={self.security!r})"

    def close(self) -> None:
        self.raw.close()

    def new_connection(self) -> EtcdClient:
        """Another connection to the same etcd, with the same policy (the store's watch
        connection). The in-memory twin (`memory.MemoryEtcdClient`) opens one to itself."""
        return EtcdClient(self.endpoints, timeout=self.timeout, retry_seconds=self.retry_seconds,
                          security=self.security)

    def authenticate(self, *, again: bool = False) -> None:
        """Get a token for `security.user` (no-op without one) and attach it to every call:
        pyetcd's wrappers, the store's direct stub calls and watches all send `raw.metadata`.
        No call credentials: gRPC refuses those on plain-text channels, metadata works on
        both. `again`: the token was rejected, fetch a new one."""
        sec = self.security
        if sec.user is None:
            return
        with self._auth_lock:
            if self.raw.metadata is not None and not again:
                return
            resp = self.raw.authstub.Authenticate(
                etcdrpc.AuthenticateRequest(name=sec.user, password=sec.password),
                self.timeout)
            self.use_token((("token", resp.token),))

    def use_token(self, metadata: Any) -> None:
        self.raw.metadata = metadata
        watcher = self.raw._stubs.get("watcher")
        if watcher is not None:  # new watch streams are opened with the watcher's metadata
            watcher._metadata = metadata

    def _sleep(self, seconds: float) -> None:
        """A pause between retries that ends early once `give_up` turns true."""
        deadline = time.monotonic() + seconds
        while not self.give_up():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def fail_over(self) -> None:
        """With several endpoints: leave the current one for the next attempt."""
        # The store calls pyetcd's stubs directly, past the wrapper that would mark the
        # endpoint failed; do what it does, so the next attempt goes to another member.
        endpoint = self.raw.endpoint_in_use
        if endpoint is not None:
            endpoint.fail()
        self.raw._clear_old_stubs()

    def call(self, operation: str, what: object, fn: Callable[[], T], *,
             retry_seconds: float | None = None) -> T:
        budget = self.retry_seconds if retry_seconds is None else retry_seconds

        def attempt() -> T:
            start = time.perf_counter()
            try:
                if self.security.user is not None and self.raw.metadata is None:
                    self.authenticate()
                return fn()
            except Exception as exc:
                ETCD_REQUEST_ERRORS.labels(operation).inc()
                if is_token_expired(exc):
                    self.raw.metadata = None  # the next attempt authenticates again
                if len(self.endpoints) > 1 and is_transient(exc):
                    self.fail_over()
                raise
            finally:
                ETCD_REQUEST_SECONDS.labels(operation).observe(time.perf_counter() - start)

        try:
            # The first attempt outside tenacity: building a Retrying and running its state
            # machine cost more CPU than the etcd call itself on the hot path, and almost
            # every call succeeds at once. Only a transient failure enters the retry loop
            # (the budget counts from here, as before).
            started = time.monotonic()
            try:
                return attempt()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                cause: BaseException | None = exc
            remaining = budget - (time.monotonic() - started)
            if remaining > 0 and not self.give_up():
                # The pause tenacity would have made before its second attempt.
                time.sleep(min(remaining, 0.05 + random.uniform(0, 0.1)))
                retrying = Retrying(
                    retry=retry_if_exception(is_transient),
                    stop=(stop_after_delay(max(0.0, budget - (time.monotonic() - started)))
                          | _Stop(self)),
                    # The same waits as one Retrying from the first attempt would make.
                    wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
                    sleep=self._sleep,
                    reraise=False,
                )
                return retrying(attempt)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
        except (StoreError, KeyboardInterrupt):
            raise
        except Exception as exc:
            where = f"etcd at {', '.join(self.endpoints)}"
            if is_tls_failure(exc):
                raise StoreError(f"{where}: TLS handshake failed: {tls_failure(exc)}") from None
            if is_auth_failure(exc):
                raise StoreError(
                    f"{where}: authentication failed for user {self.security.user}") from None
            if _is_permission_denied(exc):
                who = f"user {self.security.user}" if self.security.user else "this client"
                raise StoreError(f"{where}: permission denied to {who} for {operation} "
                                 f"{what} (see the etcd roles in docs/security.md)") from None
            if _is_compacted(exc):
                raise Compacted(f"etcd {operation} {what}: {describe(exc)}") from exc
            raise StoreError(f"etcd {operation} {what} failed: {describe(exc)}") from exc
        raise EtcdUnavailable(
            f"etcd at {', '.join(self.endpoints)} unavailable for {operation} {what} "
            f"(gave up after {budget:.0f}s): {describe(cause)}"
        ) from None


def _is_permission_denied(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    try:
        return callable(code) and code() == grpc.StatusCode.PERMISSION_DENIED
    except Exception:
        return False


def _never() -> bool:
    return False


class _Stop(stop_base):
    """Stop retrying once the client's `give_up` says so."""

    def __init__(self, client: EtcdClient) -> None:
        self.client = client

    def __call__(self, retry_state: Any) -> bool:
        return self.client.give_up()


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "details"):
        return f"{exc.code().name}: {exc.details()}"
    text = str(exc) or type(exc).__name__
    return text
