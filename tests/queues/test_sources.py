"""controller/queues/sources.py: views of etcd and Redis sources and the Redis operations of
plans. Unit tests use the in-memory etcd and a fake RedisQueue (an in-memory list with the
same contract, and a switch that makes it unreachable); one integration test reads a real
Redis."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import cast

import pytest

from controller.api import EtcdSource, RedisSource
from controller.clock import FakeClock
from controller.queues.etcd_items import EtcdQueueItems
from controller.queues.redis_server import RedisServer
from controller.queues.redis_source import RedisQueue, RedisUnavailable
from controller.queues.sources import QueueSources, _Arrivals
from controller.reconcile.actions import RedisOp
from controller.reconcile.queue import batch_tag
from controller.store import MemoryEtcd, Store
from tests.store.conformance.backend import eventually, head

NS, Q, UID = "default", "mails", 42
URL, KEY = "redis://127.0.0.1:6399/0", "jobs"
REDIS = RedisSource(type="redis", url=URL, key=KEY)
ETCD = EtcdSource(type="etcd")


def tag(batch: int, uid: int = UID) -> str:
    return batch_tag(NS, Q, uid, batch)


class FakeRedisQueue:
    """RedisQueue's contract in memory: a source list and processing lists by tag."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.source: list[bytes] = []
        self.processing: dict[str, list[bytes]] = {}
        self.dead_lists: dict[str, list[tuple[bytes, str, str]]] = {}
        self.down = False
        self.scans = 0
        self.closed = False

    def _io(self) -> None:
        if self.down:
            raise RedisUnavailable("127.0.0.1:6399", "Connection refused")

    def length(self) -> int:
        self._io()
        return len(self.source)

    def claim(self, tag: str, count: int, max_bytes: int, separator_len: int = 1
              ) -> list[bytes]:
        self._io()
        if tag in self.processing:
            return list(self.processing[tag])
        taken, self.source = self.source[:count], self.source[count:]
        if taken:
            self.processing[tag] = taken
        return list(taken)

    def batch(self, tag: str) -> list[bytes] | None:
        self._io()
        got = self.processing.get(tag)
        return list(got) if got else None

    def batches(self, tags: Iterable[str]) -> dict[str, list[bytes] | None]:
        self._io()
        return {t: self.batch(t) for t in tags}

    def ack(self, tag: str) -> None:
        self._io()
        self.processing.pop(tag, None)

    def dead_letter(self, tag: str, dead_key: str, reason: str, execution: str,
                    at: datetime) -> int:
        self._io()
        batch = self.processing.pop(tag, [])
        self.dead_lists.setdefault(dead_key, []).extend((m, reason, execution) for m in batch)
        return len(batch)

    def give_back(self, tag: str) -> int:
        self._io()
        batch = self.processing.pop(tag, [])
        self.source[:0] = batch
        return len(batch)

    def processing_tags(self, tag_prefix: str) -> list[str]:
        self._io()
        self.scans += 1
        return sorted(t for t in self.processing if t.startswith(tag_prefix))

    def push(self, messages: Iterable[bytes | str]) -> int:
        self.source += [m.encode() if isinstance(m, str) else m for m in messages]
        return len(self.source)

    def close(self) -> None:
        self.closed = True


class Fakes:
    """The redis_factory: one shared FakeRedisQueue per (url, key), so state survives the
    sources recreating their connection; `made` counts connections made."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, str], FakeRedisQueue] = {}
        self.made = 0

    def __call__(self, url: str, key: str) -> RedisQueue:
        self.made += 1
        if not url.startswith("redis"):
            raise ValueError("invalid Redis URL: no scheme")
        q = self.queues.setdefault((url, key), FakeRedisQueue(url, key))
        q.closed = False
        return cast(RedisQueue, q)

    def get(self, key: str = KEY) -> FakeRedisQueue:
        return self.queues.setdefault((URL, key), FakeRedisQueue(URL, key))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def etcd_store() -> Iterator[Store]:
    store = MemoryEtcd().store()
    yield store
    store.close()


@pytest.fixture
def items(etcd_store: Store, clock: FakeClock) -> Iterator[EtcdQueueItems]:
    cache = EtcdQueueItems(etcd_store, clock=clock.utcnow)
    yield cache
    cache.stop()


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def sources(etcd_store: Store, items: EtcdQueueItems, clock: FakeClock, fakes: Fakes
            ) -> Iterator[QueueSources]:
    s = QueueSources(etcd_store, items, clock=clock.utcnow, redis_factory=fakes)
    yield s
    s.close()


def op(kind: str, batch: int, **fields: object) -> RedisOp:
    return RedisOp(kind, URL, KEY, tag(batch), **fields)  # type: ignore[arg-type]


# --- etcd and no source -----------------------------------------------------------------------

def test_no_source_is_an_unavailable_view(sources: QueueSources) -> None:
    view = sources.view(NS, Q, UID, None, [], 10)
    assert not view.available and view.error == "no source known" and view.type == "etcd"


def test_an_etcd_source_is_read_from_the_watched_items(
        sources: QueueSources, items: EtcdQueueItems, etcd_store: Store,
        clock: FakeClock) -> None:
    etcd_store.put_raw(etcd_store.keys.queue_item(NS, Q, "a"), b"hello")
    items.start()
    assert items.wait_for_sync(10)
    etcd_store.put_raw(etcd_store.keys.queue_item(NS, Q, "b"), b"world")
    target = head(etcd_store)
    eventually(lambda: items.next_revision > target, 10)
    view = sources.view(NS, Q, UID, ETCD, [0, 1], 1)
    assert view.available and view.type == "etcd"
    assert [m.payload for m in view.head] == [b"hello"] and view.unclaimed == 2
    assert view.polled_at == clock.utcnow()


# --- Redis views ------------------------------------------------------------------------------

def test_a_redis_view_shows_length_processing_and_strays(
        sources: QueueSources, fakes: Fakes, clock: FakeClock) -> None:
    q = fakes.get()
    q.push([f"m{i}" for i in range(10)])
    q.claim(tag(0), 3, 1000)
    q.claim(tag(7), 2, 1000)  # a processing list no open batch knows of
    q.claim(tag(1, uid=UID + 1), 1, 1000)  # another incarnation's: not ours to settle
    q.processing[f"{NS}.{Q}.{UID}.junk"] = [b"x"]  # not a batch number: ignored
    view = sources.view(NS, Q, UID, REDIS, [0, 2], 100)
    assert view.available and view.type == "redis"
    assert view.unclaimed == 4
    assert view.processing == {0: [b"m0", b"m1", b"m2"], 2: None}
    assert view.strays == (0, 7)
    assert view.polled_at == clock.utcnow() and view.oldest_seen == clock.utcnow()
    assert view.head == () and dict(view.items) == {}


def test_strays_are_scanned_at_first_then_at_most_every_30_seconds(
        sources: QueueSources, fakes: Fakes, clock: FakeClock) -> None:
    q = fakes.get()
    q.push(["a", "b", "c"])
    q.claim(tag(3), 1, 1000)
    assert sources.view(NS, Q, UID, REDIS, [], 10).strays == (3,)
    assert q.scans == 1
    q.claim(tag(4), 1, 1000)
    clock.advance(10)
    assert sources.view(NS, Q, UID, REDIS, [], 10).strays == (3,)  # cached
    assert q.scans == 1
    # A give-back run here settles the stray at once (a stale cache would have the planner
    # give it back again, and plan again at once, until the next scan).
    sources.run_redis(op("give_back", 3))
    assert sources.view(NS, Q, UID, REDIS, [], 10).strays == ()
    clock.advance(21)
    assert sources.view(NS, Q, UID, REDIS, [], 10).strays == (4,)
    assert q.scans == 2
    # Another incarnation of the Queue is scanned on its own first view.
    assert sources.view(NS, Q, UID + 1, REDIS, [], 10).strays == ()
    assert q.scans == 3


def test_an_unreachable_redis_is_an_unavailable_view_and_recovers(
        sources: QueueSources, fakes: Fakes) -> None:
    q = fakes.get()
    q.push(["a"])
    assert sources.view(NS, Q, UID, REDIS, [0], 10).available
    q.down = True
    view = sources.view(NS, Q, UID, REDIS, [0], 10)
    assert not view.available and view.type == "redis"
    assert "127.0.0.1:6399" in view.error and "Connection refused" in view.error
    assert view.polled_at is None
    assert q.closed  # the connection is dropped, and made again on the next view
    made = fakes.made
    q.down = False
    view = sources.view(NS, Q, UID, REDIS, [0], 10)
    assert view.available and view.unclaimed == 1 and fakes.made == made + 1


def test_an_invalid_url_is_an_unavailable_view_not_an_exception(sources: QueueSources) -> None:
    bad = RedisSource.model_construct(type="redis", url="nonsense", key=KEY)
    view = sources.view(NS, Q, UID, bad, [], 10)
    assert not view.available and "invalid Redis URL" in view.error


# --- operations -------------------------------------------------------------------------------

def test_run_redis_claims_acks_dead_letters_and_gives_back(
        sources: QueueSources, fakes: Fakes, clock: FakeClock) -> None:
    q = fakes.get()
    q.push([f"m{i}" for i in range(6)])
    sources.run_redis(op("claim", 0, count=2, max_bytes=100, separator_len=1))
    sources.run_redis(op("claim", 0, count=2, max_bytes=100, separator_len=1))  # a retry
    sources.run_redis(op("claim", 1, count=2, max_bytes=100, separator_len=1))
    sources.run_redis(op("claim", 2, count=2, max_bytes=100, separator_len=1))
    assert q.processing == {tag(0): [b"m0", b"m1"], tag(1): [b"m2", b"m3"],
                            tag(2): [b"m4", b"m5"]}
    sources.run_redis(op("ack", 0))
    sources.run_redis(RedisOp("dead_letter", URL, KEY, tag(1), dead_key="jobs:dead",
                              reason="BackoffLimitExceeded", execution="t1",
                              at=clock.utcnow()))
    sources.run_redis(op("give_back", 2))
    assert q.processing == {}
    assert q.source == [b"m4", b"m5"]
    assert q.dead_lists == {"jobs:dead": [(b"m2", "BackoffLimitExceeded", "t1"),
                                          (b"m3", "BackoffLimitExceeded", "t1")]}


def test_run_redis_raises_when_redis_is_down_and_reconnects_after(
        sources: QueueSources, fakes: Fakes) -> None:
    q = fakes.get()
    q.push(["a"])
    q.down = True
    with pytest.raises(RedisUnavailable, match="Connection refused"):
        sources.run_redis(op("claim", 0, count=1, max_bytes=100))
    made = fakes.made
    q.down = False
    sources.run_redis(op("claim", 0, count=1, max_bytes=100))
    assert q.processing == {tag(0): [b"a"]} and fakes.made == made + 1


# --- first-seen estimate ------------------------------------------------------------------------

def test_the_oldest_message_is_dated_by_the_view_that_first_showed_it(
        sources: QueueSources, fakes: Fakes, clock: FakeClock) -> None:
    q = fakes.get()
    t0 = clock.utcnow()

    def oldest() -> datetime | None:
        return sources.view(NS, Q, UID, REDIS, [], 10).oldest_seen

    assert oldest() is None  # empty
    q.push(["a", "b", "c"])
    clock.advance(5)
    t1 = clock.utcnow()
    assert oldest() == t1  # first shown by this view
    clock.advance(5)
    t2 = clock.utcnow()
    q.push(["d", "e"])
    assert oldest() == t1  # a, b, c are still older
    clock.advance(5)
    sources.run_redis(op("claim", 0, count=3, max_bytes=100))
    sources.run_redis(op("claim", 0, count=3, max_bytes=100))  # a retry moves nothing
    assert oldest() == t2  # d, e were first shown at t2
    clock.advance(5)
    sources.run_redis(op("give_back", 0))  # a, b, c back in front
    assert oldest() == t1
    q.source = q.source[4:]  # someone else took four from the head: only e is left
    assert oldest() == t2
    q.source.clear()
    assert oldest() is None
    assert t0 < t1


def test_arrivals_directly() -> None:
    t = datetime(2026, 1, 1).astimezone()
    a = _Arrivals()
    a.moved(5)  # before the first view: nothing to count from
    assert a.poll(2, t) == t
    a.poll(4, t + timedelta(seconds=1))  # two more arrived
    a.moved(3)  # we claimed three: one of the first, two of the second view
    assert a.poll(1, t + timedelta(seconds=2)) == t + timedelta(seconds=1)
    a.moved(-3)  # and gave them back
    assert a.poll(4, t + timedelta(seconds=3)) == t
    assert a.poll(0, t + timedelta(seconds=4)) is None


# --- a real Redis -----------------------------------------------------------------------------

@pytest.mark.integration
def test_real_redis_view_shows_unclaimed_processing_and_strays(
        redis_server: RedisServer, etcd_store: Store, items: EtcdQueueItems,
        clock: FakeClock) -> None:
    source = RedisSource(type="redis", url=redis_server.url, key=KEY)
    sources = QueueSources(etcd_store, items, clock=clock.utcnow)
    producer = RedisQueue(redis_server.url, KEY)
    try:
        producer.push([f"m{i}" for i in range(25)])
        sources.run_redis(RedisOp("claim", redis_server.url, KEY, tag(0), count=10,
                                  max_bytes=1000, separator_len=1))
        producer.claim(tag(5), 3, 1000)  # a claim whose launch intent was never written
        view = sources.view(NS, Q, UID, source, [0, 1], 100)
        assert view.available, view.error
        assert view.unclaimed == 12
        assert view.processing == {0: [f"m{i}".encode() for i in range(10)], 1: None}
        assert view.strays == (0, 5)
        assert view.oldest_seen == clock.utcnow()
        sources.run_redis(RedisOp("give_back", redis_server.url, KEY, tag(5)))
        view = sources.view(NS, Q, UID, source, [0], 100)
        assert view.unclaimed == 15 and view.strays == (0,)
    finally:
        producer.close()
        sources.close()
