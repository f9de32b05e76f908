"""The typed store: every read and write of Docket objects, status, executions and
controller state in etcd. No business logic lives here.

Writes that must not race are compare-and-swap on mod_revision (`expected_mod_revision`:
None = unconditional, 0 = the key must not exist, N = the key's mod_revision must be N).
Several writes can be committed atomically with `commit`.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from pyetcd import etcdrpc
from pyetcd.utils import prefix_range_end, to_bytes

from controller.api import (
    AnyObject,
    ExecutionRecord,
    InvalidObject,
    ObjectInvalid,
    Problem,
    StatusBase,
    decode_object,
    decode_status,
    encode_model,
    encode_object,
    kind_by_plural,
    kind_for_model,
)
from controller.store.batcher import GroupCommitter
from controller.store.client import Conflict, EtcdClient, EtcdSecurity, StoreError
from controller.store.keys import Keys

if TYPE_CHECKING:
    from controller.store.watch import WatchStream


@dataclass(frozen=True)
class StoredObject:
    """A desired object as stored: decoded (or invalid) plus its etcd revisions."""

    plural: str
    namespace: str
    name: str
    object: AnyObject | InvalidObject
    key: str
    mod_revision: int
    create_revision: int
    version: int

    @property
    def uid(self) -> int:
        """An object deleted and created again is a new object: its create_revision differs."""
        return self.create_revision

    @property
    def valid(self) -> bool:
        return not isinstance(self.object, InvalidObject)


@dataclass(frozen=True)
class StoredStatus:
    status: StatusBase
    mod_revision: int


@dataclass(frozen=True)
class StoredExecution:
    record: ExecutionRecord
    mod_revision: int


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int | None = None


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False


@dataclass(frozen=True)
class Expect:
    """A precondition of `commit`: the key's mod_revision is `mod_revision` (0 = absent)."""

    key: str
    mod_revision: int


Op = Put | Delete


def decode_stored(
    plural: str, namespace: str, name: str, value: bytes
) -> AnyObject | InvalidObject:
    """Never raises: a document that fails becomes an InvalidObject carrying why."""
    kind = kind_by_plural(plural).name
    try:
        return decode_object(value, plural=plural, namespace=namespace, name=name)
    except ObjectInvalid as exc:
        return InvalidObject(kind, namespace, name, exc.problems, value)
    except Exception as exc:  # a bug in validation must not take the controller down
        return InvalidObject(kind, namespace, name, [Problem("", f"cannot decode: {exc}")], value)


def invalid_key(plural: str, key: str, value: bytes, keys: Keys) -> InvalidObject:
    tail = key[len(keys.kind_prefix(plural)):]
    return InvalidObject(
        kind_by_plural(plural).name, "", tail,
        [Problem("", f"key {key!r} is not {keys.prefix}/{plural}/<namespace>/<name>")], value,
    )


# Keys per list response; halved while etcd's answer is too large for gRPC.
LIST_PAGE = 1000


def _too_large(exc: StoreError) -> bool:
    cause = exc.__cause__
    return (isinstance(cause, grpc.RpcError) and hasattr(cause, "code")
            and cause.code() == grpc.StatusCode.RESOURCE_EXHAUSTED)


def _txn_request(ops: Sequence[Op], expect: Sequence[Expect]) -> Any:
    compares = []
    for e in expect:
        c = etcdrpc.Compare(key=to_bytes(e.key), result=etcdrpc.Compare.EQUAL)
        if e.mod_revision == 0:
            c.target = etcdrpc.Compare.VERSION
            c.version = 0
        else:
            c.target = etcdrpc.Compare.MOD
            c.mod_revision = e.mod_revision
        compares.append(c)
    success = []
    for op in ops:
        if isinstance(op, Put):
            put = etcdrpc.PutRequest(key=to_bytes(op.key), value=op.value)
            if op.lease:
                put.lease = op.lease
            success.append(etcdrpc.RequestOp(request_put=put))
        else:
            rng = etcdrpc.DeleteRangeRequest(key=to_bytes(op.key))
            if op.prefix:
                rng.range_end = prefix_range_end(to_bytes(op.key))
            success.append(etcdrpc.RequestOp(request_delete_range=rng))
    return etcdrpc.TxnRequest(compare=compares, success=success)


def _conflict(expect: Sequence[Expect]) -> Conflict:
    return Conflict("conflict: " + ", ".join(
        f"{e.key} is no longer at revision {e.mod_revision}" if e.mod_revision
        else f"{e.key} already exists" for e in expect))


class _TxnKeys:
    """The keys a transaction writes, for error messages: formatted only when one is made."""

    def __init__(self, request: Any) -> None:
        self.request = request

    def __str__(self) -> str:
        ops = self.request.success
        nested = len(ops) > 1 and all(op.HasField("request_txn") for op in ops)
        first = ops[0].request_txn.success if nested else ops
        keys = sorted({bytes(op.request_put.key or op.request_delete_range.key).decode()
                       for op in first})
        text = ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
        return text + (f" (and {len(ops) - 1} more transactions)" if nested else "")


class Store:
    def __init__(self, client: EtcdClient | str | Sequence[str] = "127.0.0.1:2379", *,
                 prefix: str = "/docket", timeout: float = 5.0,
                 retry_seconds: float = 30.0, security: EtcdSecurity | None = None) -> None:
        if isinstance(client, EtcdClient):
            self.client = client
        else:
            self.client = EtcdClient(client, timeout=timeout, retry_seconds=retry_seconds,
                                     security=security)
        self.keys = Keys(prefix)
        self._watch_client: EtcdClient | None = None
        self._watch_lock = threading.Lock()
        self._committer = GroupCommitter(self._send_txn)

    @property
    def watch_client(self) -> EtcdClient:
        """A second connection, for watches only. On the connection that also carries every
        read and write, the watch fell far behind once a dozen threads made calls (gRPC
        Python hands each stream message across two threads, and those hand-offs starve
        behind the unary calls; measured: 9 events/s, against 187 on its own channel, with 16
        threads writing and 4 busy ones), which delayed every new Job by seconds."""
        main = self.client
        user = getattr(getattr(main, "security", None), "user", None)
        if user is not None and main.raw.metadata is None:
            # etcd's tokens are not bound to a connection: the watch connection uses the main
            # one's, which that refreshes whenever etcd rejects it.
            main.call("authenticate", user, lambda: None)
        with self._watch_lock:
            if self._watch_client is None:
                self._watch_client = main.new_connection()
            if user is not None:
                self._watch_client.use_token(main.raw.metadata)
            return self._watch_client

    def close(self) -> None:
        with self._watch_lock:
            watch_client, self._watch_client = self._watch_client, None
        if watch_client is not None:
            watch_client.close()
        self.client.close()

    # --- low level -------------------------------------------------------------------------
    def _range(self, key: str, *, end: bytes | None = None, operation: str = "get",
               revision: int | None = None, limit: int = 0, start: bytes | None = None
               ) -> Any:
        request = etcdrpc.RangeRequest(key=start if start is not None else to_bytes(key),
                                       limit=limit)
        if revision is not None:
            request.revision = revision
        if end is not None:
            request.range_end = end
        raw = self.client.raw

        def do() -> Any:
            return raw.kvstub.Range(request, self.client.timeout,
                                    credentials=raw.call_credentials, metadata=raw.metadata)

        return self.client.call(operation, key, do)

    def get_raw(self, key: str) -> tuple[bytes, int, int] | None:
        """(value, mod_revision, create_revision) of one key, or None."""
        resp = self._range(key)
        if not resp.kvs:
            return None
        kv = resp.kvs[0]
        return bytes(kv.value), int(kv.mod_revision), int(kv.create_revision)

    def list_raw(self, prefix: str, revision: int | None = None
                 ) -> tuple[list[tuple[str, bytes, int, int, int]], int]:
        """([(key, value, mod_revision, create_revision, version)], header revision): now, or
        as it was at `revision` (raises Compacted if etcd no longer has it). Read in pages,
        all at one revision: one response may not exceed what gRPC accepts (4 MiB), and ten
        thousand Jobs' records do."""
        end = prefix_range_end(to_bytes(prefix))
        start = to_bytes(prefix)
        items: list[tuple[str, bytes, int, int, int]] = []
        header: int | None = None
        limit = LIST_PAGE
        while True:
            try:
                resp = self._range(prefix, end=end, operation="list", revision=revision,
                                   limit=limit, start=start)
            except StoreError as exc:
                if limit > 1 and _too_large(exc):  # large values: smaller pages
                    limit //= 2
                    continue
                raise
            if header is None:
                header = int(resp.header.revision)
                if revision is None:
                    revision = header  # the next pages read the same snapshot
            items.extend((kv.key.decode(), bytes(kv.value), int(kv.mod_revision),
                          int(kv.create_revision), int(kv.version)) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                return items, header
            start = bytes(resp.kvs[-1].key) + b"\0"

    def commit(self, ops: Sequence[Op], expect: Sequence[Expect] = ()) -> int:
        """Apply every op atomically if every expectation holds; the new revision.
        Raises Conflict naming the keys when an expectation fails. Transactions that
        threads commit at the same time travel to etcd together (`batcher`)."""
        return self._txn(ops, expect)[1]

    def _send_txn(self, request: Any) -> Any:
        raw = self.client.raw

        def do() -> Any:
            return raw.kvstub.Txn(request, self.client.timeout,
                                  credentials=raw.call_credentials, metadata=raw.metadata)

        return self.client.call("txn", _TxnKeys(request), do)

    def commit_many(self, txns: Sequence[tuple[Sequence[Op], Sequence[Expect]]]
                    ) -> builtins.list[int | StoreError]:
        """Several independent `commit`s at once (they travel together): for each, the
        revision it was applied at, or the error it met (a Conflict when an expectation
        failed). Raises nothing for one transaction's failure."""
        requests = [_txn_request(ops, expect) for ops, expect in txns]
        out: list[int | StoreError] = []
        for (_, expect), outcome in zip(txns, self._committer.commit_all(requests),
                                        strict=True):
            if isinstance(outcome, StoreError):
                out.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome  # not an etcd failure: a bug, or an interrupt
            elif not outcome[0].succeeded:
                out.append(_conflict(expect))
            else:
                out.append(outcome[1])
        return out

    def _txn(self, ops: Sequence[Op], expect: Sequence[Expect]) -> tuple[Any, int]:
        """(etcd's response to this transaction, the revision it was applied at)."""
        resp, revision = self._committer.commit(_txn_request(ops, expect))
        if not resp.succeeded:
            raise _conflict(expect)
        return resp, revision

    def put_raw(self, key: str, value: bytes, expected_mod_revision: int | None = None,
                lease: int | None = None) -> int:
        expect = [] if expected_mod_revision is None else [Expect(key, expected_mod_revision)]
        return self.commit([Put(key, value, lease)], expect)

    def delete_raw(self, key: str, expected_mod_revision: int | None = None) -> bool:
        """True if the key existed and was deleted."""
        expect = [] if expected_mod_revision is None else [Expect(key, expected_mod_revision)]
        resp, _ = self._txn([Delete(key)], expect)
        return bool(resp.responses[0].response_delete_range.deleted)

    # --- desired objects -------------------------------------------------------------------
    def _stored(self, plural: str, key: str, value: bytes, mod: int, create: int,
                version: int) -> StoredObject:
        split = self.keys.split_object(plural, key)
        if split is None:
            obj: AnyObject | InvalidObject = invalid_key(plural, key, value, self.keys)
            return StoredObject(plural, obj.namespace, obj.name, obj, key, mod, create, version)
        ns, name = split
        return StoredObject(plural, ns, name, decode_stored(plural, ns, name, value), key, mod,
                            create, version)

    def get(self, plural: str, namespace: str, name: str) -> StoredObject | None:
        key = self.keys.object(plural, namespace, name)
        resp = self._range(key)
        if not resp.kvs:
            return None
        kv = resp.kvs[0]
        return self._stored(plural, key, bytes(kv.value), int(kv.mod_revision),
                            int(kv.create_revision), int(kv.version))

    def list(self, plural: str) -> tuple[builtins.list[StoredObject], int]:
        """Every object of a kind and the revision to watch from (exclusive)."""
        kind_by_plural(plural)
        items, revision = self.list_raw(self.keys.kind_prefix(plural))
        return [self._stored(plural, *item) for item in items], revision

    def put_object(self, obj: AnyObject, expected_mod_revision: int | None = None) -> int:
        plural = kind_for_model(obj).plural
        key = self.keys.object(plural, obj.namespace, obj.name)
        return self.put_raw(key, encode_object(obj), expected_mod_revision)

    def delete_object(self, plural: str, namespace: str, name: str,
                      expected_mod_revision: int | None = None) -> bool:
        return self.delete_raw(self.keys.object(plural, namespace, name), expected_mod_revision)

    # --- status ----------------------------------------------------------------------------
    def get_status(self, plural: str, namespace: str, name: str) -> StoredStatus | None:
        found = self.get_raw(self.keys.status(plural, namespace, name))
        if found is None:
            return None
        value, mod, _ = found
        return StoredStatus(self._decode_status(plural, value, f"{namespace}/{name}"), mod)

    def list_statuses(self, plural: str) -> dict[tuple[str, str], StoredStatus]:
        prefix = self.keys.status_prefix(plural)
        items, _ = self.list_raw(prefix)
        out = {}
        for key, value, mod, _create, _version in items:
            parts = key[len(prefix):].split("/")
            if len(parts) == 2:
                out[(parts[0], parts[1])] = StoredStatus(
                    self._decode_status(plural, value, key), mod)
        return out

    @staticmethod
    def _decode_status(plural: str, value: bytes, what: str) -> StatusBase:
        try:
            return decode_status(plural, value)
        except ObjectInvalid as exc:
            raise StoreError(f"status of {plural} {what} is corrupt: {exc}") from None

    def put_status(self, plural: str, namespace: str, name: str, status: StatusBase,
                   expected_mod_revision: int | None) -> int:
        return self.put_raw(self.keys.status(plural, namespace, name), encode_model(status),
                            expected_mod_revision)

    # --- executions ------------------------------------------------------------------------
    def put_execution(self, plural: str, namespace: str, owner: str, record: ExecutionRecord,
                      expected_mod_revision: int | None = None) -> int:
        key = self.keys.execution(plural, namespace, owner, record.task_id)
        return self.put_raw(key, encode_model(record), expected_mod_revision)

    def list_executions(self, plural: str, namespace: str, owner: str
                        ) -> builtins.list[StoredExecution]:
        items, _ = self.list_raw(self.keys.executions_prefix(plural, namespace, owner))
        out = []
        for key, value, mod, _c, _v in items:
            try:
                out.append(StoredExecution(ExecutionRecord.model_validate_json(value), mod))
            except ValueError as exc:
                raise StoreError(f"execution record {key} is corrupt: {exc}") from None
        return out

    def delete_owner_data(self, plural: str, namespace: str, name: str) -> int:
        """Status and every execution record of an object, in one transaction."""
        return self.commit([
            Delete(self.keys.status(plural, namespace, name)),
            Delete(self.keys.executions_prefix(plural, namespace, name), prefix=True),
        ])

    def ping(self, timeout: float) -> None:
        """Ask etcd for its status once, waiting at most `timeout` seconds; raises when it
        does not answer in time. For health checks: an etcd frozen (SIGSTOP, a stalled disk)
        keeps connections open, and a call with the client's own timeout would hang the
        probe past any prober's patience."""
        raw = self.client.raw

        def do() -> Any:
            return raw.maintenancestub.Status(etcdrpc.StatusRequest(), timeout,
                                              credentials=raw.call_credentials,
                                              metadata=raw.metadata)

        self.client.call("status", "", do, retry_seconds=0)

    # --- controller state and leases -------------------------------------------------------
    def get_framework_id(self) -> str | None:
        found = self.get_raw(self.keys.controller("framework-id"))
        return found[0].decode() if found else None

    def put_framework_id(self, framework_id: str) -> None:
        self.put_raw(self.keys.controller("framework-id"), framework_id.encode())

    def grant_lease(self, ttl: int) -> int:
        raw = self.client.raw
        lease = self.client.call("lease", f"grant ttl={ttl}", lambda: raw.lease(ttl))
        return int(lease.id)

    def refresh_lease(self, lease_id: int) -> int:
        """Remaining TTL after the refresh; 0 or less means the lease is gone."""
        raw = self.client.raw
        responses = self.client.call("lease", f"refresh {lease_id}",
                                     lambda: list(raw.refresh_lease(lease_id)))
        return int(responses[0].TTL) if responses else 0

    def revoke_lease(self, lease_id: int) -> None:
        raw = self.client.raw
        self.client.call("lease", f"revoke {lease_id}", lambda: raw.revoke_lease(lease_id))

    def put_if_absent(self, key: str, value: bytes, lease: int | None = None) -> bool:
        try:
            self.commit([Put(key, value, lease)], [Expect(key, 0)])
        except Conflict:
            return False
        return True

    def watch(self, plural: str, start_revision: int,
              known: Mapping[str, int] | None = None) -> WatchStream:
        from controller.store.watch import WatchStream

        return WatchStream(self, plural, start_revision, known)

