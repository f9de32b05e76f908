"""etcd's multi-version key space, in memory: the half of the etcd twin (`memory`) that holds
keys and answers ranges and transactions, in etcd's own protobuf messages.

What it copies from etcd 3.5 (`tests/store/conformance.py` checks each against a real one):
- one revision per transaction that changes something (not for a failed compare, a read or a
  delete of nothing), sub-revisions within it; create_revision, mod_revision, version; a
  deletion's event carries the deleting revision;
- compares, nested ones too, are judged on the state before the transaction (compareToPath); a
  missing key compares as zeroes and never equal by VALUE; a put needs a live lease; etcd's
  request checks (checkTxnRequest: 128 operations, nested ones within what their parent leaves,
  no empty key; checkIntervals: duplicate keys; 1.5 MiB) and gRPC's (2 MiB requests, 4 MiB
  responses — the store answers the latter with smaller pages);
- ranges at a revision with limit, `more` and `count`, the header at the current revision;
- compaction keeps each key's last version at or before the compaction revision unless it is a
  deletion: older reads fail, and the history from exactly that revision lacks a deletion made
  at it (the quirk `WatchStream` works around).
Not thread-safe: `MemoryEtcd` holds its lock around every call. Refused (UNIMPLEMENTED) rather
than faked: range sorting and revision filters, put's ignore_value and ignore_lease.
"""

from __future__ import annotations

import bisect
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from pyetcd import etcdrpc
from pyetcd.etcdrpc import kv_pb2

MAX_TXN_OPS = 128  # etcd --max-txn-ops
MAX_REQUEST_BYTES = 1536 * 1024  # etcd --max-request-bytes
MAX_GRPC_REQUEST = MAX_REQUEST_BYTES + 512 * 1024  # what etcd's gRPC server takes at all
MAX_GRPC_RESPONSE = 4 * 1024 * 1024  # what a gRPC client takes by default

_C = etcdrpc.Compare
_Code = grpc.StatusCode
_FIELDS = {_C.VERSION: "version", _C.CREATE: "create_revision", _C.MOD: "mod_revision",
           _C.VALUE: "value", _C.LEASE: "lease"}


class EtcdError(grpc.RpcError):  # type: ignore[misc]  # grpc has no types
    """An error as etcd's gRPC server returns it: `code()` and `details()`."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def compacted_error() -> EtcdError:
    return EtcdError(_Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")


def future_error() -> EtcdError:
    return EtcdError(_Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")


def lease_not_found() -> EtcdError:
    return EtcdError(_Code.NOT_FOUND, "etcdserver: requested lease not found")


def _invalid(what: str) -> EtcdError:
    return EtcdError(_Code.INVALID_ARGUMENT, f"etcdserver: {what}")


def _too_big(size: int, limit: int) -> EtcdError:
    return EtcdError(_Code.RESOURCE_EXHAUSTED, f"grpc: received message larger than max "
                                               f"({size} vs. {limit})")


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """etcd's range rule: one key without `end`, every key from `start` with end "\\0"."""
    if not end:
        return key == start
    return start <= key and (end == b"\0" or key < end)


@dataclass
class _Version:
    revision: int
    sub: int
    kv: Any  # a KeyValue; None for a deletion


@dataclass
class Committed:
    """What a transaction changed: its events in order and, per key, the KeyValue before and
    after it (None for absent), for the lease bookkeeping."""

    revision: int
    events: list[Any]
    keys: dict[bytes, tuple[Any, Any]]


class KeySpace:
    def __init__(self) -> None:
        self.revision = 1  # an empty etcd is at revision 1
        self.compacted = 0
        self._history: dict[bytes, list[_Version]] = {}
        self._keys: list[bytes] = []  # sorted keys of _history

    # --- reads ------------------------------------------------------------------------------
    def matching(self, start: bytes, end: bytes, extra: Iterable[bytes] = ()) -> list[bytes]:
        """Keys with history in the range, and those of `extra` in it, sorted."""
        found = {k for k in extra if in_range(k, start, end)}
        if not end:
            found |= {start} if start in self._history else set()
        else:
            i = bisect.bisect_left(self._keys, start)
            while i < len(self._keys) and in_range(self._keys[i], start, end):
                found.add(self._keys[i])
                i += 1
        return sorted(found)

    def at(self, key: bytes, revision: int) -> Any:
        """The key's KeyValue as of `revision`, or None."""
        for version in reversed(self._history.get(key, ())):
            if version.revision <= revision:
                return version.kv
        return None

    def range(self, req: Any) -> Any:
        revision = req.revision if req.revision > 0 else self.revision
        if revision > self.revision:
            raise future_error()
        if revision < self.compacted:
            raise compacted_error()
        resp = etcdrpc.RangeResponse()
        found = [self.at(k, revision) for k in self.matching(req.key, req.range_end)]
        _fill_range(resp, req, [kv for kv in found if kv is not None])
        resp.header.revision = self.revision
        if resp.ByteSize() > MAX_GRPC_RESPONSE:
            raise _too_big(resp.ByteSize(), MAX_GRPC_RESPONSE)
        return resp

    def events_since(self, start: bytes, end: bytes, revision: int) -> list[Any]:
        """The history of a range from `revision` on, as watch events, in order."""
        past = sorted(((k, v) for k in self.matching(start, end) for v in self._history[k]
                       if v.revision >= revision), key=lambda kv: (kv[1].revision, kv[1].sub))
        return [_event(k, v) for k, v in past]

    # --- writes -----------------------------------------------------------------------------
    def txn(self, req: Any, leases: Container[int]) -> tuple[Any, Committed | None]:
        """etcd's response to a TxnRequest, and what it changed (None: nothing)."""
        size = req.ByteSize()
        if size > MAX_GRPC_REQUEST:
            raise _too_big(size, MAX_GRPC_REQUEST)
        if size > MAX_REQUEST_BYTES:
            raise _invalid("request is too large")
        _check_txn(req, MAX_TXN_OPS)
        _check_intervals(req.success)
        _check_intervals(req.failure)
        write = _Write(self)
        resp = write.apply(req, iter(self._path(req, leases)))
        committed = self.commit(write.changes)
        resp.header.revision = self.revision
        return resp, committed

    def delete_keys(self, keys: Iterable[bytes]) -> Committed | None:
        """Delete these keys in one transaction (a lease's, when it goes)."""
        write = _Write(self)
        for key in sorted(keys):
            write.delete(etcdrpc.DeleteRangeRequest(key=key))
        return self.commit(write.changes)

    def _path(self, req: Any, leases: Container[int]) -> list[bool]:
        """Which branch every (nested) transaction takes, judged on the state before any of
        them applies; a put in a taken branch needs a live lease."""
        ok = all(self._compare(c) for c in req.compare)
        path = [ok]
        for op in req.success if ok else req.failure:
            kind = op.WhichOneof("request")
            if kind == "request_txn":
                path += self._path(op.request_txn, leases)
            elif kind == "request_put" and op.request_put.lease \
                    and op.request_put.lease not in leases:
                raise lease_not_found()
        return path

    def _compare(self, c: Any) -> bool:
        kvs = [self.at(k, self.revision) for k in self.matching(c.key, c.range_end)]
        kvs = [kv for kv in kvs if kv is not None]
        if not kvs:
            if c.target == _C.VALUE:
                return False
            kvs = [kv_pb2.KeyValue()]
        name = _FIELDS[c.target]
        for kv in kvs:
            ours, theirs = getattr(kv, name), getattr(c, name)
            if not {_C.EQUAL: ours == theirs, _C.NOT_EQUAL: ours != theirs,
                    _C.GREATER: ours > theirs, _C.LESS: ours < theirs}[c.result]:
                return False
        return True

    def commit(self, changes: list[tuple[bytes, Any]]) -> Committed | None:
        """Record a transaction's changes at one new revision."""
        if not changes:
            return None
        self.revision += 1
        done = Committed(self.revision, [], {})
        for sub, (key, kv) in enumerate(changes):
            versions = self._history.get(key)
            if versions is None:
                versions = self._history[key] = []
                bisect.insort(self._keys, key)
            before = done.keys[key][0] if key in done.keys else (
                versions[-1].kv if versions else None)
            versions.append(_Version(self.revision, sub, kv))
            done.keys[key] = (before, kv)
            done.events.append(_event(key, versions[-1]))
        return done

    def compact(self, revision: int) -> None:
        if revision <= self.compacted:
            raise compacted_error()
        if revision > self.revision:
            raise future_error()
        self.compacted = revision
        for key in self._keys:
            versions = self._history[key]
            old = [v for v in versions if v.revision <= revision]
            kept = old[-1:] if old and old[-1].kv is not None else []
            versions[:] = kept + versions[len(old):]
            if not versions:
                del self._history[key]
        self._keys = sorted(self._history)


def _fill_range(resp: Any, req: Any, kvs: list[Any]) -> None:
    if (req.sort_order or req.sort_target or req.min_mod_revision or req.max_mod_revision
            or req.min_create_revision or req.max_create_revision):
        raise EtcdError(_Code.UNIMPLEMENTED, "memory etcd: range sorting or filters")
    resp.count = len(kvs)
    if req.limit and len(kvs) > req.limit:
        kvs, resp.more = kvs[:req.limit], True
    for kv in [] if req.count_only else kvs:
        out = resp.kvs.add()
        out.CopyFrom(kv)
        if req.keys_only:
            out.ClearField("value")


def _event(key: bytes, version: _Version) -> Any:
    if version.kv is None:
        return kv_pb2.Event(type=kv_pb2.Event.DELETE,
                            kv=kv_pb2.KeyValue(key=key, mod_revision=version.revision))
    return kv_pb2.Event(type=kv_pb2.Event.PUT, kv=version.kv)


def _check_txn(req: Any, max_ops: int) -> None:
    """etcd's checkTxnRequest: the operation budget (nested transactions get what their
    parent leaves) and no empty key."""
    ops = max(len(req.compare), len(req.success), len(req.failure))
    if ops > max_ops:
        raise _invalid("too many operations in txn request")
    if any(not c.key for c in req.compare):
        raise _invalid("key is not provided")
    for op in [*req.success, *req.failure]:
        kind = op.WhichOneof("request")
        if kind == "request_txn":
            _check_txn(op.request_txn, max_ops - ops)
        elif kind is None or not getattr(op, kind).key:
            raise _invalid("key is not provided")
        elif kind == "request_put" and (op.request_put.ignore_value
                                        or op.request_put.ignore_lease):
            raise EtcdError(_Code.UNIMPLEMENTED, "memory etcd: ignore_value, ignore_lease")


def _check_intervals(ops: Iterable[Any]) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """etcd's checkIntervals: the keys a branch puts and the ranges it deletes. Refused: two
    nested transactions putting one key, a put into a range deleted at its level or by an
    earlier nested transaction (a put, then a deletion by a later one, is let through)."""
    ops = list(ops)
    dels = [(op.request_delete_range.key, op.request_delete_range.range_end) for op in ops
            if op.WhichOneof("request") == "request_delete_range"]
    puts: set[bytes] = set()

    def check(key: bytes, *, other_puts: bool = True) -> None:
        if (other_puts and key in puts) or any(in_range(key, s, e) for s, e in dels):
            raise _invalid("duplicate key given in txn request")
        puts.add(key)

    for op in ops:
        if op.WhichOneof("request") == "request_txn":
            puts_then, dels_then = _check_intervals(op.request_txn.success)
            puts_else, dels_else = _check_intervals(op.request_txn.failure)
            for key in puts_then:
                check(key)
            for key in puts_else:  # then and else exclude each other
                check(key, other_puts=key not in puts_then)
            dels += dels_then + dels_else
    for op in ops:
        if op.WhichOneof("request") == "request_put":
            check(op.request_put.key)
    return puts, dels


class _Write:
    """The changes of one transaction, applied in order over the state before it."""

    def __init__(self, space: KeySpace) -> None:
        self.space = space
        self.revision = space.revision + 1
        self.view: dict[bytes, Any] = {}
        self.changes: list[tuple[bytes, Any]] = []

    def get(self, key: bytes) -> Any:
        return self.view[key] if key in self.view else self.space.at(key, self.space.revision)

    def apply(self, req: Any, path: Iterator[bool]) -> Any:
        ok = next(path)
        resp = etcdrpc.TxnResponse(succeeded=ok)
        for op in req.success if ok else req.failure:
            kind = op.WhichOneof("request")
            out = resp.responses.add()
            if kind == "request_put":
                out.response_put.CopyFrom(self.put(op.request_put))
            elif kind == "request_delete_range":
                out.response_delete_range.CopyFrom(self.delete(op.request_delete_range))
            elif kind == "request_range":
                r = op.request_range
                found = [self.get(k) for k in self.space.matching(r.key, r.range_end, self.view)]
                _fill_range(out.response_range, r, [kv for kv in found if kv is not None])
            else:
                out.response_txn.CopyFrom(self.apply(op.request_txn, path))
        return resp

    def put(self, req: Any) -> Any:
        prev = self.get(req.key)
        kv = kv_pb2.KeyValue(key=req.key, value=req.value, lease=req.lease,
                             mod_revision=self.revision,
                             create_revision=self.revision if prev is None
                             else prev.create_revision,
                             version=1 if prev is None else prev.version + 1)
        self.view[req.key] = kv
        self.changes.append((req.key, kv))
        resp = etcdrpc.PutResponse()
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        return resp

    def delete(self, req: Any) -> Any:
        keys = self.space.matching(req.key, req.range_end, self.view)
        gone = [kv for kv in map(self.get, keys) if kv is not None]
        for kv in gone:
            self.view[kv.key] = None
            self.changes.append((kv.key, None))
        resp = etcdrpc.DeleteRangeResponse(deleted=len(gone))
        if req.prev_kv:
            resp.prev_kvs.extend(gone)
        return resp
