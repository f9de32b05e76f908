"""Group commit (controller.store.batcher): concurrent transactions share etcd requests and
keep the semantics of separate transactions. First against a scripted `send` (which
requests were formed), then against a real etcd (what etcd makes of them)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pyetcd import etcdrpc

from controller.store import Conflict, Expect, Put, Store
from controller.store.batcher import GroupCommitter


def txn(*keys: str, prefix_delete: str | None = None, compares: int = 0) -> Any:
    ops = [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=k.encode(), value=b"v"))
           for k in keys]
    if prefix_delete is not None:
        ops.append(etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(
            key=prefix_delete.encode(), range_end=prefix_delete.encode() + b"\xff")))
    cmp = [etcdrpc.Compare(key=b"c%d" % i, result=etcdrpc.Compare.EQUAL,
                           target=etcdrpc.Compare.VERSION, version=0) for i in range(compares)]
    return etcdrpc.TxnRequest(compare=cmp, success=ops)


def keys_of(request: Any) -> list[list[str]]:
    """The keys each transaction of a sent request writes, in order."""
    subs = ([op.request_txn for op in request.success]
            if request.success and request.success[0].HasField("request_txn") else [request])
    return [[bytes(op.request_put.key or op.request_delete_range.key).decode()
             for op in sub.success] for sub in subs]


class ScriptedEtcd:
    """Records every request; the first one blocks until `release` so others queue up.
    Each nested transaction 'succeeds' unless its first key starts with 'fail'."""

    def __init__(self, block_first: bool = True) -> None:
        self.sent: list[list[list[str]]] = []
        self.release = threading.Event()
        self.first_arrived = threading.Event()
        if not block_first:
            self.release.set()
        self.revision = 100
        self.lock = threading.Lock()
        self.fail_with: BaseException | None = None

    def send(self, request: Any) -> Any:
        self.first_arrived.set()
        self.release.wait(10)
        with self.lock:
            self.sent.append(keys_of(request))
            if self.fail_with is not None:
                exc, self.fail_with = self.fail_with, None
                raise exc
            self.revision += 1
            resp = etcdrpc.TxnResponse(succeeded=True)
            resp.header.revision = self.revision
            nested = bool(request.success) and request.success[0].HasField("request_txn")
            if not nested:
                resp.succeeded = not keys_of(request)[0][0].startswith("fail")
                return resp
            for sub in keys_of(request):
                part = etcdrpc.TxnResponse(succeeded=not sub[0].startswith("fail"))
                resp.responses.append(etcdrpc.ResponseOp(response_txn=part))
            return resp


def run_all(committer: GroupCommitter, etcd: ScriptedEtcd, requests: list[Any]
            ) -> list[Any]:
    """Commit requests[0] first (it blocks in send), queue the rest behind it in order, then
    let everything go; each caller's (response, revision) or exception, in request order."""
    results: list[Any] = [None] * len(requests)

    def one(i: int) -> None:
        try:
            results[i] = committer.commit(requests[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(0,))]
    threads[0].start()
    assert etcd.first_arrived.wait(5)
    for i in range(1, len(requests)):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
        _wait_queued(committer, i)
    etcd.release.set()
    for t in threads:
        t.join(10)
    return results


def _wait_queued(committer: GroupCommitter, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(committer._waiting) < count:  # the queue is the only way to see a caller wait
        assert time.monotonic() < deadline, "caller never queued"
        time.sleep(0.001)


def test_a_lone_transaction_is_sent_as_it_is() -> None:
    etcd = ScriptedEtcd(block_first=False)
    resp, revision = GroupCommitter(etcd.send).commit(txn("a", "b"))
    assert etcd.sent == [[["a", "b"]]]
    assert resp.succeeded and revision == 101


def test_waiting_transactions_travel_together_and_each_gets_its_own_answer() -> None:
    etcd = ScriptedEtcd()
    committer = GroupCommitter(etcd.send, senders=1)
    results = run_all(committer, etcd, [txn("first"), txn("a"), txn("fail-b"), txn("c")])
    assert etcd.sent == [[["first"]], [["a"], ["fail-b"], ["c"]]]
    assert [r[0].succeeded for r in results] == [True, True, False, True]
    assert [r[1] for r in results] == [101, 102, 102, 102]  # one request, one revision


def test_two_transactions_writing_one_key_never_share_a_request_and_keep_their_order() -> None:
    etcd = ScriptedEtcd()
    committer = GroupCommitter(etcd.send, senders=1)
    run_all(committer, etcd, [txn("first"), txn("k", "x"), txn("y"), txn("k"), txn("k", "z")])
    assert etcd.sent == [[["first"]], [["k", "x"], ["y"]], [["k"]], [["k", "z"]]]


def test_a_range_delete_goes_alone() -> None:
    etcd = ScriptedEtcd()
    committer = GroupCommitter(etcd.send, senders=1)
    run_all(committer, etcd, [txn("first"), txn("a"), txn(prefix_delete="p/"), txn("b")])
    assert etcd.sent == [[["first"]], [["a"]], [["p/"]], [["b"]]]


def test_a_batch_stays_within_the_operation_budget() -> None:
    etcd = ScriptedEtcd()
    committer = GroupCommitter(etcd.send, senders=1, max_ops=10)
    # Each counts as its larger side plus one: 5, 5, 5 and (alone, too big) 12.
    run_all(committer, etcd, [txn("first"), txn("a", compares=4), txn("b", compares=4),
                              txn("c", compares=4), txn("d", compares=11), txn("e")])
    assert etcd.sent == [[["first"]], [["a"], ["b"]], [["c"]], [["d"]], [["e"]]]


def test_a_failed_request_fails_every_transaction_in_it_and_the_next_go_on() -> None:
    etcd = ScriptedEtcd()
    committer = GroupCommitter(etcd.send, senders=1)
    etcd.fail_with = RuntimeError("etcd fell over")
    results = run_all(committer, etcd, [txn("first"), txn("a"), txn("b")])
    assert isinstance(results[0], RuntimeError)
    assert [r[0].succeeded for r in results[1:]] == [True, True]
    assert etcd.sent == [[["first"]], [["a"], ["b"]]]


@pytest.mark.integration
def test_real_etcd_concurrent_compare_and_swap_keeps_per_transaction_outcomes(
        store: Store) -> None:
    """32 threads each advance their own key 30 times by compare-and-swap (none may lose),
    and also race, in pairs, for keys that only one of each pair may create."""
    before = _batches()
    lost: list[str] = []
    won: dict[str, int] = {}
    lock = threading.Lock()

    def worker(t: int) -> None:
        rev = 0
        for i in range(30):
            key = f"{store.keys.prefix}/own/{t}"
            try:
                rev = store.commit([Put(key, b"%d" % i)], [Expect(key, rev)])
            except Conflict:
                lost.append(key)
            shared = f"{store.keys.prefix}/race/{t // 2}/{i}"
            try:
                store.commit([Put(shared, b"%d" % t)], [Expect(shared, 0)])
                with lock:
                    won[shared] = won.get(shared, 0) + 1
            except Conflict:
                pass

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert lost == []
    assert len(won) == 16 * 30 and set(won.values()) == {1}, "each race has one winner"
    for n in range(32):
        found = store.get_raw(f"{store.keys.prefix}/own/{n}")
        assert found is not None and found[0] == b"29"
    requests, carried = (a - b for a, b in zip(_batches(), before, strict=True))
    assert carried == 32 * 30 * 2
    assert requests < carried, "concurrent transactions shared requests"


def _batches() -> tuple[float, float]:
    from controller.store.metrics import ETCD_COMMIT_BATCH

    samples = {s.name: s.value for m in ETCD_COMMIT_BATCH.collect() for s in m.samples}
    return (samples["docket_etcd_commit_batch_size_count"],
            samples["docket_etcd_commit_batch_size_sum"])


@pytest.mark.integration
def test_real_etcd_accepts_a_full_batch(store: Store) -> None:
    """The operation budget holds against etcd's own limit (--max-txn-ops 128)."""
    etcd_send = store._send_txn
    committer = GroupCommitter(etcd_send, senders=1)
    release = threading.Event()

    def slow_send(request: Any) -> Any:
        release.wait(10)
        return etcd_send(request)

    committer._send = slow_send
    base = store.keys.prefix
    requests = [etcdrpc.TxnRequest(
        compare=[etcdrpc.Compare(key=f"{base}/full/{i}/{j}".encode(),
                                 result=etcdrpc.Compare.EQUAL,
                                 target=etcdrpc.Compare.VERSION, version=0) for j in range(3)],
        success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
            key=f"{base}/full/{i}/{j}".encode(), value=b"v")) for j in range(3)])
        for i in range(61)]
    results: list[Any] = [None] * len(requests)

    def one(i: int) -> None:
        results[i] = committer.commit(requests[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    _wait_queued(committer, len(requests) - 1)
    release.set()
    for t in threads:
        t.join(30)
    assert all(r is not None and r[0].succeeded for r in results)
    assert len({r[1] for r in results}) <= 4, "60 transactions of 3 puts in 2-3 requests"


def test_commit_all_sends_a_callers_transactions_together_with_one_outcome_each() -> None:
    etcd = ScriptedEtcd(block_first=False)
    committer = GroupCommitter(etcd.send, senders=1)
    outcomes = committer.commit_all([txn("a"), txn("fail-b"), txn("a", "c"), txn("d")])
    # "a" twice: the second waits for a request of its own, after the first.
    assert etcd.sent == [[["a"], ["fail-b"], ["d"]], [["a", "c"]]]
    assert [o[0].succeeded for o in outcomes if isinstance(o, tuple)] == [True, False, True,
                                                                          True]
    assert [o[1] for o in outcomes if isinstance(o, tuple)] == [101, 101, 102, 101]
    assert committer.commit_all([]) == []
