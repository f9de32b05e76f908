"""The error messages of controller/queues/redis_source.py, without a server: they name
host:port and the error, and never the password of the URL, whatever form it takes there."""

from __future__ import annotations

import pytest
import redis

from controller.queues.redis_source import (
    RedisKeyTypeError,
    RedisQueue,
    RedisUnavailable,
    parse_dead_entry,
    scrub,
)

SECRET = "s3cr@t/pass"
URL = "redis://docket:s3cr%40t%2Fpass@redis.example:6380/2"


def test_scrub_hides_the_password_raw_and_percent_encoded() -> None:
    text = f"failed: {URL} auth {SECRET} and s3cr%40t%2Fpass"
    out = scrub(text, URL)
    assert SECRET not in out and "s3cr%40t%2Fpass" not in out
    assert out.count("***") == 3
    assert scrub("password hunter2", "redis://h?password=hunter2") == "password ***"
    assert scrub("nothing to hide", "redis://h:6379") == "nothing to hide"


@pytest.mark.parametrize("error", [
    redis.ConnectionError(f"Error connecting with {SECRET}"),
    redis.TimeoutError(f"Timeout reading from {URL}"),
    redis.AuthenticationError(f"invalid password {SECRET}"),
    redis.ResponseError(f"NOAUTH {SECRET}"),
    OSError(f"socket {SECRET}"),
])
def test_every_failure_is_redis_unavailable_naming_host_and_port(error: Exception) -> None:
    q = RedisQueue(URL, "jobs")  # connects lazily: no server is contacted here
    with pytest.raises(RedisUnavailable) as info, q._io("LLEN", "jobs"):
        raise error
    text = str(info.value)
    assert text.startswith("Redis at redis.example:6380 unavailable: LLEN jobs: ")
    assert type(error).__name__ in text
    assert SECRET not in text and "s3cr%40t%2Fpass" not in text and "***" in text
    assert info.value.address == "redis.example:6380"
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert SECRET not in repr(q) and "s3cr" not in repr(q)


def test_a_wrong_type_is_a_value_error_naming_the_keys() -> None:
    q = RedisQueue(URL, "jobs")
    with pytest.raises(RedisKeyTypeError) as info, q._io("claim", "jobs", "jobs:docket:t"):
        raise redis.ResponseError("WRONGTYPE key jobs holds a hash, not a list")
    assert isinstance(info.value, ValueError)
    assert "jobs, jobs:docket:t" in str(info.value) and "redis.example:6380" in str(info.value)


def test_a_malformed_url_is_reported_without_the_password() -> None:
    with pytest.raises(ValueError) as info:
        RedisQueue("redis://u:topsecret@host:notaport", "jobs")
    assert "topsecret" not in str(info.value)
    with pytest.raises(ValueError, match="scheme"):
        RedisQueue("http://u:topsecret@host", "jobs")
    with pytest.raises(ValueError, match="non-empty key"):
        RedisQueue("redis://host", "")


def test_a_unix_socket_url_is_named_by_its_path() -> None:
    q = RedisQueue("unix:///run/redis.sock?password=pw9", "jobs")
    assert q.address == "unix:/run/redis.sock"
    with pytest.raises(RedisUnavailable) as info, q._io("LLEN", "jobs"):
        raise redis.ConnectionError("bad pw9")
    assert "pw9" not in str(info.value)


def test_dead_entries_that_are_not_json_or_not_ours_are_unknown() -> None:
    for raw in (b"plain text", b"\xff\xfe", b'{"id": "x"}', b"[1, 2]",
                b'{"id": "a", "message": "!!", "encoding": "base64", "reason": "r", '
                b'"execution": "e", "at": "t"}',
                b'{"id": "a", "message": "m", "encoding": "rot13", "reason": "r", '
                b'"execution": "e", "at": "t"}'):
        entry = parse_dead_entry(raw)
        assert entry.reason == "unknown" and entry.message == raw, raw
        assert entry.id == parse_dead_entry(raw).id and entry.id.startswith("unknown:")
