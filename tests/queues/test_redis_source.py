"""controller/queues/redis_source.py against a real redis-server: the claim protocol's steps
(claim, ack, dead letter, give back, requeue) keep every message in exactly one list, each step
is idempotent, a claimed batch survives a SIGKILL of Redis, and a Redis that is down or silent
is reported within the timeout, naming host:port and never the password."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import pytest
import redis

from controller.queues.redis_server import RedisServer
from controller.queues.redis_source import (
    UNKNOWN_REASON,
    DeadMessage,
    RedisKeyTypeError,
    RedisQueue,
    RedisUnavailable,
)

pytestmark = pytest.mark.integration

KEY = "jobs"
DEAD = "jobs:dead"
TAG = "default.myq.123.0"
AT = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


@pytest.fixture
def queue(redis_server: RedisServer) -> Iterator[RedisQueue]:
    q = RedisQueue(redis_server.url, KEY)
    yield q
    q.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client, to look at the lists behind the module's back."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def _list(client: redis.Redis, key: str) -> list[bytes]:
    return list(cast(list[bytes], client.lrange(key, 0, -1)))


def _msgs(*names: str) -> list[bytes]:
    return [n.encode() for n in names]


# --- claim -------------------------------------------------------------------------------

def test_claim_takes_the_oldest_messages_in_order(queue: RedisQueue, raw: redis.Redis) -> None:
    assert queue.push(["m1", "m2", b"m3", "m4", "m5"]) == 5
    assert queue.claim(TAG, 3, 1024) == _msgs("m1", "m2", "m3")
    assert queue.length() == 2
    assert _list(raw, KEY) == _msgs("m4", "m5")
    assert _list(raw, queue.processing_key(TAG)) == _msgs("m1", "m2", "m3")
    assert queue.batch(TAG) == _msgs("m1", "m2", "m3")
    assert queue.claim("default.myq.123.1", 10, 1024) == _msgs("m4", "m5")
    assert queue.length() == 0


def test_a_repeated_claim_returns_the_same_batch_and_takes_nothing_more(
        queue: RedisQueue) -> None:
    queue.push([f"m{i}" for i in range(10)])
    first = queue.claim(TAG, 3, 1024)
    # A retry after a crash, even with other limits, gets the same batch.
    assert queue.claim(TAG, 5, 1024) == first == _msgs("m0", "m1", "m2")
    assert queue.claim(TAG, 1, 1) == first
    assert queue.length() == 7


def test_claim_cuts_the_batch_at_max_bytes_counting_separators(queue: RedisQueue) -> None:
    queue.push(["aaaa"] * 5)
    # 4 + (1 + 4) + (1 + 4) = 14: three fit exactly in 14 bytes, a fourth would make 19.
    assert queue.claim("t.0", 10, 14) == _msgs("aaaa", "aaaa", "aaaa")
    queue.push(["bbbb"] * 3)  # source now: aaaa aaaa bbbb bbbb bbbb
    assert queue.claim("t.1", 10, 13) == _msgs("aaaa", "aaaa")  # a third would make 14
    # A two-byte separator: 4 + 6 = 10 fits in 10, a third would make 16.
    assert queue.claim("t.2", 10, 10, separator_len=2) == _msgs("bbbb", "bbbb")
    assert queue.claim("t.3", 10, 4, separator_len=0) == _msgs("bbbb")


def test_an_oversized_first_message_is_taken_alone(queue: RedisQueue) -> None:
    big = b"x" * 100
    queue.push([big, "y", "z"])
    assert queue.claim("t.0", 10, 10) == [big]
    assert queue.claim("t.1", 10, 10) == _msgs("y", "z")


def test_an_oversized_message_behind_others_waits_for_the_next_batch(
        queue: RedisQueue) -> None:
    big = b"x" * 100
    queue.push(["a", big, "b"])
    assert queue.claim("t.0", 10, 10) == _msgs("a")
    assert queue.claim("t.1", 10, 10) == [big]
    assert queue.claim("t.2", 10, 10) == _msgs("b")


def test_claiming_an_empty_or_missing_list_claims_nothing(queue: RedisQueue) -> None:
    assert queue.claim(TAG, 10, 1024) == []
    assert queue.batch(TAG) is None
    assert queue.processing_tags("") == []
    assert queue.length() == 0


def test_claim_refuses_nonsense_limits(queue: RedisQueue) -> None:
    queue.push(["m"])
    for count, max_bytes, sep in ((0, 10, 1), (1, 0, 1), (1, 10, -1)):
        with pytest.raises(ValueError, match="claim needs"):
            queue.claim(TAG, count, max_bytes, sep)
    assert queue.length() == 1


def test_binary_messages_are_claimed_byte_for_byte(queue: RedisQueue) -> None:
    messages = [b"\x00\xff\xfe", "héllo".encode(), b"line\nbreak", b""]
    queue.push(messages)
    assert queue.claim(TAG, 10, 1024) == messages


def test_batches_reads_many_tags_in_one_call(queue: RedisQueue) -> None:
    queue.push(["a", "b", "c"])
    queue.claim("t.0", 2, 1024)
    queue.claim("t.1", 2, 1024)
    assert queue.batches(["t.0", "t.1", "t.2"]) == {
        "t.0": _msgs("a", "b"), "t.1": _msgs("c"), "t.2": None}
    assert queue.batches([]) == {}


# --- ack, give back ----------------------------------------------------------------------

def test_ack_deletes_the_batch_and_is_idempotent(queue: RedisQueue, raw: redis.Redis) -> None:
    queue.push(["a", "b", "c"])
    queue.claim(TAG, 2, 1024)
    queue.ack(TAG)
    assert queue.batch(TAG) is None
    assert not raw.exists(queue.processing_key(TAG))
    queue.ack(TAG)  # a resent TASK_FINISHED acks again: nothing happens
    assert queue.length() == 1
    assert _list(raw, KEY) == _msgs("c")


def test_give_back_returns_the_batch_to_the_head_in_order(queue: RedisQueue,
                                                          raw: redis.Redis) -> None:
    queue.push(["1", "2", "3", "4", "5"])
    assert queue.claim(TAG, 3, 1024) == _msgs("1", "2", "3")
    queue.push(["6"])
    assert queue.give_back(TAG) == 3
    assert _list(raw, KEY) == _msgs("1", "2", "3", "4", "5", "6")
    assert queue.batch(TAG) is None
    assert queue.give_back(TAG) == 0  # idempotent
    assert queue.length() == 6
    assert queue.claim("again.0", 2, 1024) == _msgs("1", "2")  # they are next


def test_batches_larger_than_a_lua_chunk_keep_their_order(queue: RedisQueue,
                                                          raw: redis.Redis) -> None:
    # The scripts push in chunks (Lua's unpack() limit): 2,500 messages cross two boundaries.
    messages = [f"m{i:05d}".encode() for i in range(2_500)]
    queue.push(messages)
    assert queue.claim(TAG, 2_500, 10**9) == messages
    assert queue.give_back(TAG) == 2_500
    assert _list(raw, KEY) == messages
    assert queue.claim(TAG, 2_500, 10**9) == messages
    assert queue.dead_letter(TAG, DEAD, "Failed", "exec", AT) == 2_500
    assert [d.message for d in queue.dead(DEAD)] == messages
    assert queue.requeue(DEAD, None) == 2_500
    assert _list(raw, KEY) == messages and queue.dead(DEAD) == []


# --- dead letter, requeue ----------------------------------------------------------------

def test_dead_letter_writes_one_json_entry_per_message(queue: RedisQueue,
                                                       raw: redis.Redis) -> None:
    binary = b"\x00\xffnot utf-8"
    queue.push(["héllo", binary])
    queue.claim(TAG, 10, 1024)
    execution = "queue.default.myq.123.0.2"
    at = datetime(2026, 3, 4, 6, 6, 7, 890000, tzinfo=timezone(timedelta(hours=1)))
    assert queue.dead_letter(TAG, DEAD, "BackoffLimitExceeded", execution, at) == 2
    assert queue.batch(TAG) is None
    entries = [json.loads(e) for e in _list(raw, DEAD)]
    assert entries == [
        {"id": f"{execution}:0", "message": "héllo", "reason": "BackoffLimitExceeded",
         "execution": execution, "at": "2026-03-04T05:06:07.890Z"},
        {"id": f"{execution}:1", "message": "AP9ub3QgdXRmLTg=", "encoding": "base64",
         "reason": "BackoffLimitExceeded", "execution": execution,
         "at": "2026-03-04T05:06:07.890Z"},
    ]
    assert queue.dead(DEAD) == [
        DeadMessage(f"{execution}:0", "héllo".encode(), "BackoffLimitExceeded", execution,
                    "2026-03-04T05:06:07.890Z"),
        DeadMessage(f"{execution}:1", binary, "BackoffLimitExceeded", execution,
                    "2026-03-04T05:06:07.890Z"),
    ]
    assert datetime.fromisoformat(queue.dead(DEAD)[0].at) == at


def test_dead_letter_is_idempotent(queue: RedisQueue, raw: redis.Redis) -> None:
    queue.push(["a", "b", "c"])
    queue.claim(TAG, 2, 1024)
    assert queue.dead_letter(TAG, DEAD, "MessageTooLarge", "e", AT) == 2
    assert queue.dead_letter(TAG, DEAD, "MessageTooLarge", "e", AT) == 0
    assert len(_list(raw, DEAD)) == 2
    assert queue.dead_letter("never.claimed", DEAD, "x", "e", AT) == 0
    assert queue.length() == 1


def test_dead_letter_wants_an_aware_time(queue: RedisQueue) -> None:
    queue.push(["a"])
    queue.claim(TAG, 1, 1024)
    with pytest.raises(ValueError, match="time zone"):
        queue.dead_letter(TAG, DEAD, "Failed", "e", datetime(2026, 1, 1))
    assert queue.batch(TAG) == _msgs("a")  # nothing moved


def test_requeue_moves_chosen_entries_to_the_tail_as_their_original_bytes(
        queue: RedisQueue, raw: redis.Redis) -> None:
    binary = b"\x80\x81 binary"
    queue.push(["text", binary, "third"])
    queue.claim(TAG, 3, 1024)
    queue.dead_letter(TAG, DEAD, "Failed", "e1", AT)
    queue.push(["newer"])
    assert queue.requeue(DEAD, ["e1:1", "no-such-id"]) == 1
    assert _list(raw, KEY) == [b"newer", binary]
    assert [d.id for d in queue.dead(DEAD)] == ["e1:0", "e1:2"]
    assert queue.requeue(DEAD, ["e1:1"]) == 0  # moved already: nothing twice
    assert queue.requeue(DEAD, []) == 0
    assert queue.requeue(DEAD, None) == 2
    assert _list(raw, KEY) == [b"newer", binary, b"text", b"third"]
    assert queue.dead(DEAD) == [] and not raw.exists(DEAD)
    assert queue.requeue(DEAD, None) == 0


def test_entries_that_are_not_dockets_are_shown_and_requeued_as_they_are(
        queue: RedisQueue, raw: redis.Redis) -> None:
    queue.push(["ours"])
    queue.claim(TAG, 1, 1024)
    queue.dead_letter(TAG, DEAD, "Failed", "e", AT)
    raw.rpush(DEAD, b"\xffsomeone else's", b'{"id": 1}')
    dead = queue.dead(DEAD)
    assert [d.reason for d in dead] == ["Failed", UNKNOWN_REASON, UNKNOWN_REASON]
    foreign = dead[1]
    assert foreign.message == b"\xffsomeone else's" and foreign.id.startswith("unknown:")
    assert [d.id for d in queue.dead(DEAD)] == [d.id for d in dead]  # ids are stable
    assert queue.requeue(DEAD, [foreign.id]) == 1
    assert _list(raw, KEY) == [b"\xffsomeone else's"]
    assert [d.id for d in queue.dead(DEAD)] == ["e:0", dead[2].id]


# --- processing tags, push, key types ----------------------------------------------------

def test_processing_tags_lists_the_claimed_batches_under_a_prefix(queue: RedisQueue) -> None:
    queue.push([str(i) for i in range(5)])
    for tag in ("default.q.1.0", "default.q.1.1", "default.q.12.0", "default.q2.5.0"):
        queue.claim(tag, 1, 1024)
    assert queue.processing_tags("default.q.1.") == ["default.q.1.0", "default.q.1.1"]
    assert queue.processing_tags("default.q") == ["default.q.1.0", "default.q.1.1",
                                                  "default.q.12.0", "default.q2.5.0"]
    queue.ack("default.q.1.0")
    assert queue.processing_tags("default.q.1.") == ["default.q.1.1"]


def test_glob_characters_in_the_key_are_matched_literally(redis_server: RedisServer) -> None:
    odd = RedisQueue(redis_server.url, "q[1]*?\\x")
    plain = RedisQueue(redis_server.url, "q1x")
    try:
        odd.push(["a"])
        plain.push(["b"])
        odd.claim("t.0", 1, 1024)
        plain.claim("t.1", 1, 1024)
        assert odd.processing_tags("t.") == ["t.0"]
        assert plain.processing_tags("t.") == ["t.1"]
    finally:
        odd.close()
        plain.close()


def test_push_appends_and_returns_the_length(queue: RedisQueue, raw: redis.Redis) -> None:
    assert queue.push([]) == 0
    assert queue.push(["a", b"b"]) == 2
    assert queue.push(iter(["c"])) == 3
    assert queue.push([]) == 3
    assert _list(raw, KEY) == _msgs("a", "b", "c")


def test_a_key_of_the_wrong_type_is_named(queue: RedisQueue, raw: redis.Redis) -> None:
    raw.set(KEY, "a string")
    with pytest.raises(RedisKeyTypeError, match="jobs") as info:
        queue.claim(TAG, 1, 1024)
    assert "holds a string" in str(info.value)
    with pytest.raises(RedisKeyTypeError, match="jobs"):
        queue.length()
    with pytest.raises(RedisKeyTypeError, match="jobs"):
        queue.push(["m"])
    assert raw.get(KEY) == b"a string"  # nothing written
    raw.delete(KEY)
    raw.hset(DEAD, "f", "v")
    queue.push(["m"])
    queue.claim(TAG, 1, 1024)
    with pytest.raises(RedisKeyTypeError, match=DEAD):
        queue.dead_letter(TAG, DEAD, "Failed", "e", AT)
    assert queue.batch(TAG) == _msgs("m")  # still claimed: nothing lost


# --- durability and failures -------------------------------------------------------------

def test_a_claimed_batch_survives_a_sigkill_of_redis(private_redis: RedisServer) -> None:
    q = RedisQueue(private_redis.url, KEY)
    try:
        q.push([f"m{i}" for i in range(5)])
        assert q.claim(TAG, 2, 1024) == _msgs("m0", "m1")
        private_redis.kill()
        with pytest.raises(RedisUnavailable):
            q.length()
        private_redis.restart()
        # The same client carries on once Redis is back, and finds everything in place.
        assert q.batch(TAG) == _msgs("m0", "m1")
        assert q.claim(TAG, 2, 1024) == _msgs("m0", "m1")
        assert q.length() == 3
        assert q.processing_tags("default.") == [TAG]
        q.ack(TAG)
        private_redis.kill()
        private_redis.restart()
        assert q.batch(TAG) is None and q.length() == 3
    finally:
        q.close()


def _every_operation(q: RedisQueue) -> list[tuple[str, Callable[[], object]]]:
    return [("length", q.length), ("claim", lambda: q.claim(TAG, 1, 10)),
            ("batch", lambda: q.batch(TAG)), ("batches", lambda: q.batches([TAG])),
            ("ack", lambda: q.ack(TAG)),
            ("dead_letter", lambda: q.dead_letter(TAG, DEAD, "r", "e", AT)),
            ("give_back", lambda: q.give_back(TAG)),
            ("processing_tags", lambda: q.processing_tags("")),
            ("push", lambda: q.push(["m"])), ("dead", lambda: q.dead(DEAD)),
            ("requeue", lambda: q.requeue(DEAD, None))]


@pytest.mark.timeout(60)  # a hang fails here rather than at the suite's 300 s
def test_a_stopped_redis_is_reported_at_once_without_the_password(
        private_redis: RedisServer) -> None:
    port = private_redis.port
    private_redis.stop()
    q = RedisQueue(f"redis://docket:hunter2secret@127.0.0.1:{port}/0", KEY, timeout=1.0)
    try:
        for name, call in _every_operation(q):
            with pytest.raises(RedisUnavailable) as info:
                call()
            text = str(info.value)
            assert f"127.0.0.1:{port}" in text, (name, text)
            assert "hunter2secret" not in text and "hunter2secret" not in repr(info.value)
            assert info.value.__cause__ is None and info.value.__context__ is not None
        assert "hunter2secret" not in repr(q)
    finally:
        q.close()


@pytest.mark.timeout(60)
def test_a_redis_that_never_answers_times_out_within_the_timeout() -> None:
    # A socket that listens but never accepts: the connection is made (the kernel's
    # backlog), the reply never comes. Without socket timeouts this would hang forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        q = RedisQueue(f"redis://:pw-xyz@127.0.0.1:{port}", KEY, timeout=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{port}") as info:
                q.length()
            # Not a speed check: proof that the configured timeout, not a default, applied.
            assert time.monotonic() - started >= 0.3
            assert "Timeout" in str(info.value) and "pw-xyz" not in str(info.value)
        finally:
            q.close()


def test_a_wrong_password_is_reported_without_it(private_redis: RedisServer) -> None:
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_set("requirepass", "right-pass")
    admin.close()
    for password in ("wrong-pass", "p%40ss%2Fword"):
        q = RedisQueue(f"redis://:{password}@127.0.0.1:{private_redis.port}", KEY)
        try:
            with pytest.raises(RedisUnavailable) as info:
                q.push(["m"])
            text = str(info.value)
            assert f"127.0.0.1:{private_redis.port}" in text
            assert password not in text and "p@ss/word" not in text, text
        finally:
            q.close()
    ok = RedisQueue(f"redis://:right-pass@127.0.0.1:{private_redis.port}", KEY)
    try:
        assert ok.push(["m"]) == 1
    finally:
        ok.close()
