"""Docket's least-privilege etcd roles, defined once, and the etcd calls that create them.

Two roles (and a user of the same name holding each):

- `docket-controller`, for `docket run`: read and write everything under the key prefix and
  nothing else. The controller owns all of it (specs it reads and CronJobs' Jobs it writes,
  status, executions, queue items, claims and dead letters, secrets, its leader lease and
  framework id under `<prefix>/controller/`, the layout migration) — no key outside it.
- `docket-app`, for application teams and their CI: write the desired objects
  (`jobs/`, `cronjobs/`, `queues/`, `services/`), produce queue items (`queue-items/`) and
  requeue dead letters (`queue-dead/`: `docket queue requeue` deletes a dead letter and puts
  its message back in one transaction, and `docket queue dead` lists them); read `status/`
  and `executions/`, so that `docket get|describe|wait|logs` work. No access at all to
  `secrets/`, `controller/` or `queue-claims/`, and no write to status or executions: a team
  can neither forge what the controller reports nor steal the lease.

Every grant is an etcd prefix permission (etcdctl's `--prefix`, a range [key, key+1)). etcd
checks a range read or a watch against the union of the role's ranges, so a command reading
`<prefix>/status/jobs/` is allowed by the grant on `<prefix>/status/`, and one listing the
whole `<prefix>/` is refused to `docket-app`.

`deploy/security/etcd-roles.sh` creates the same roles with etcdctl for operators; `docket up
--secure` calls `ensure_roles` and `enable_auth` here. tests/security/test_etcd_roles.py runs
the script against a real etcd and checks that etcd then holds exactly `grants()`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import grpc
from pyetcd import etcdrpc
from pyetcd.etcdrpc import auth_pb2

from controller.store.client import EtcdClient, EtcdSecurity, StoreError

CONTROLLER = "docket-controller"
APP = "docket-app"
ROOT = "root"

APP_SPEC_PLURALS = ("jobs", "cronjobs", "queues", "services")
"""The kinds an application team may write. Spelt out rather than taken from the registry of
kinds: a new kind (say, secrets) must be granted on purpose, never by accident."""

Permission = Literal["read", "write", "readwrite"]
_PERM_TYPE = {"read": auth_pb2.Permission.READ, "write": auth_pb2.Permission.WRITE,
              "readwrite": auth_pb2.Permission.READWRITE}
_PERM_NAME = {v: k for k, v in _PERM_TYPE.items()}


@dataclass(frozen=True, order=True)
class Grant:
    """`role` may `permission` every key that starts with `key` (etcdctl's words)."""

    role: str
    permission: Permission
    key: str

    def etcdctl(self) -> list[str]:
        """The etcdctl arguments that make this grant."""
        return ["role", "grant-permission", self.role, "--prefix=true", self.permission,
                self.key]


def grants(prefix: str = "/docket") -> list[Grant]:
    """Every permission of Docket's roles under `prefix`, sorted."""
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"key prefix {prefix!r} must start with '/' and not end with '/'")
    out = [Grant(CONTROLLER, "readwrite", f"{prefix}/")]
    out += [Grant(APP, "readwrite", f"{prefix}/{p}/")
            for p in (*APP_SPEC_PLURALS, "queue-items", "queue-dead")]
    out += [Grant(APP, "read", f"{prefix}/{p}/") for p in ("status", "executions")]
    return sorted(out)


def namespace_role(namespace: str) -> str:
    return f"{APP}-{namespace}"


def namespace_grants(prefix: str, namespace: str) -> list[Grant]:
    """The role of one team, `docket-app-<namespace>`: `docket-app`'s grants narrowed to one
    namespace. The shared `docket-app` lets a team write objects into any namespace, and an
    object runs with its namespace's secrets and Mesos role: give each team its own."""
    role = namespace_role(namespace)
    out = [Grant(role, "readwrite", f"{prefix}/{p}/{namespace}/")
           for p in (*APP_SPEC_PLURALS, "queue-items", "queue-dead")]
    out += [Grant(role, "read", f"{prefix}/{area}/{p}/{namespace}/")
            for area in ("status", "executions") for p in APP_SPEC_PLURALS]
    return sorted(out)


def prefix_range_end(key: bytes) -> bytes:
    """The end of the range of every key starting with `key` (etcd's prefix range)."""
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[:i + 1])
    return b"\0"  # every key


def _stub_call(client: EtcdClient, operation: str, what: str,
               call: Callable[[Any, float, Any], Any], request: Any) -> Any:
    stub = client.raw.authstub
    return client.call(operation, what,
                       lambda: call(stub, request, client.raw.metadata))


def _add(client: EtcdClient, operation: str, what: str, method: str, request: Any) -> bool:
    """One Add call; False if it exists already."""
    try:
        _stub_call(client, operation, what,
                   lambda stub, req, md: getattr(stub, method)(req, client.timeout,
                                                               metadata=md), request)
        return True
    except StoreError as exc:
        if "already exists" in str(exc):
            return False
        raise


def _set_user(client: EtcdClient, name: str, password: str, role: str) -> None:
    """User `name` exists with `password` and holds `role`."""
    if not _add(client, "user add", name, "UserAdd",
                etcdrpc.AuthUserAddRequest(name=name, password=password)):
        _stub_call(client, "user passwd", name,
                   lambda stub, req, md: stub.UserChangePassword(req, client.timeout,
                                                                 metadata=md),
                   etcdrpc.AuthUserChangePasswordRequest(name=name, password=password))
    _stub_call(client, "user grant-role", name,
               lambda stub, req, md: stub.UserGrantRole(req, client.timeout, metadata=md),
               etcdrpc.AuthUserGrantRoleRequest(user=name, role=role))


def role_grants(client: EtcdClient, role: str) -> set[Grant]:
    """What etcd holds for `role`, as Grants; a permission that is not a prefix range is
    shown with its key followed by ' .. <range end>' so that it never equals a Grant."""
    resp = _stub_call(client, "role get", role,
                      lambda stub, req, md: stub.RoleGet(req, client.timeout, metadata=md),
                      etcdrpc.AuthRoleGetRequest(role=role))
    out = set()
    for perm in resp.perm:
        key = bytes(perm.key).decode()
        if bytes(perm.range_end) != prefix_range_end(bytes(perm.key)):
            key += f" .. {bytes(perm.range_end).decode(errors='replace')}"
        out.add(Grant(role, _PERM_NAME[perm.permType], key))  # type: ignore[arg-type]
    return out


def ensure_roles(client: EtcdClient, prefix: str, passwords: Mapping[str, str]) -> None:
    """Create or update both roles to hold exactly `grants(prefix)` (a permission they hold
    beyond it is revoked), and each user of `passwords` (CONTROLLER, APP) with its password
    and its role. Runs as root once authentication is on; before, as anyone."""
    wanted = grants(prefix)
    for role in (CONTROLLER, APP):
        _add(client, "role add", role, "RoleAdd", etcdrpc.AuthRoleAddRequest(name=role))
        mine = {g for g in wanted if g.role == role}
        for grant in sorted(role_grants(client, role) - mine):
            key, _, end = grant.key.partition(" .. ")
            raw_end = end.encode() if end else prefix_range_end(key.encode())
            _stub_call(client, "role revoke-permission", role,
                       lambda stub, req, md: stub.RoleRevokePermission(
                           req, client.timeout, metadata=md),
                       etcdrpc.AuthRoleRevokePermissionRequest(
                           role=role, key=key.encode(), range_end=raw_end))
        for grant in sorted(mine):
            perm = auth_pb2.Permission(permType=_PERM_TYPE[grant.permission],
                                       key=grant.key.encode(),
                                       range_end=prefix_range_end(grant.key.encode()))
            _stub_call(client, "role grant-permission", role,
                       lambda stub, req, md: stub.RoleGrantPermission(
                           req, client.timeout, metadata=md),
                       etcdrpc.AuthRoleGrantPermissionRequest(name=role, perm=perm))
    for user, password in passwords.items():
        if user not in (CONTROLLER, APP):
            raise ValueError(f"unknown Docket user {user!r}")
        _set_user(client, user, password, user)


def enable_auth(client: EtcdClient, root_password: str) -> None:
    """Create `root` (etcd's administrator, role root) and turn authentication on, as
    `etcdctl user add root && etcdctl auth enable` do. Only while authentication is off."""
    _add(client, "role add", ROOT, "RoleAdd", etcdrpc.AuthRoleAddRequest(name=ROOT))
    _set_user(client, ROOT, root_password, ROOT)
    _stub_call(client, "auth enable", "",
               lambda stub, req, md: stub.AuthEnable(req, client.timeout, metadata=md),
               etcdrpc.AuthEnableRequest())


def auth_enabled(client: EtcdClient) -> bool:
    """Whether etcd asks for authentication: an anonymous user listing fails only then
    (etcd 3.5's AuthStatus is not in the client's protocol). Called directly, not through
    `client.call`, which would take "user name is empty" for an expired token and retry."""
    try:
        client.raw.authstub.UserList(etcdrpc.AuthUserListRequest(), client.timeout)
    except grpc.RpcError as exc:
        text = str(exc.details() if hasattr(exc, "details") else exc).lower()
        # No token: "user name is empty"; with a client certificate etcd takes its common
        # name as the user, which is none of etcd's ("not found") or has no right to list.
        if any(why in text for why in ("user name is empty", "user name not found",
                                       "permission denied")):
            return True
        raise StoreError(f"etcd at {', '.join(client.endpoints)}: {text}") from None
    return False


def password_file(directory: Path, user: str) -> Path:
    return directory / f"{user}.password"


def ensure_password(path: Path) -> str:
    """The password kept in `path`, made (random, 0600 from its creation) if it is missing."""
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def secure_local_etcd(endpoint: str, tls: EtcdSecurity, directory: Path,
                      prefix: str = "/docket") -> None:
    """Authentication on, with Docket's roles and users, for the etcd of `docket up --secure`:
    passwords of root and both users in `directory` (made once, 0600; the directory 0700).
    The first time, roles and users are created and auth is enabled; afterwards, root brings
    them back to exactly `grants(prefix)`. `tls`: how to reach etcd (without a user)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    root_file = password_file(directory, ROOT)
    first_time = not root_file.exists()
    passwords = {u: ensure_password(password_file(directory, u)) for u in (CONTROLLER, APP)}
    root_password = ensure_password(root_file)
    client = EtcdClient(endpoint, retry_seconds=10, security=tls)
    try:
        if not auth_enabled(client):
            ensure_roles(client, prefix, passwords)
            enable_auth(client, root_password)
            return
    finally:
        client.close()
    if first_time:  # a root password of ours cannot be the one of an etcd secured before
        root_file.unlink()
        raise StoreError(f"etcd at {endpoint} already has authentication on, with a root "
                         f"password that is not in {directory}")
    root = replace(tls, user=ROOT, password=root_password)
    client = EtcdClient(endpoint, retry_seconds=10, security=root)
    try:
        ensure_roles(client, prefix, passwords)
    finally:
        client.close()
