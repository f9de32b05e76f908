"""The Redis I/O of a Redis-backed Queue: claim, ack, dead-letter, give back, requeue.

This module owns every Redis command Docket sends for a Queue; nothing else talks to a
Queue's Redis. It knows nothing of etcd, tasks or plans: the controller decides WHEN to claim,
ack or dead-letter a batch; this module makes each of those steps atomic and idempotent, so
that the controller's claim protocol (docs/architecture.md) can be repaired after a crash at
any point.

Keys (one Redis, one logical database; Redis Cluster is not supported, because each script
touches the source list and a processing or dead list at once):

- `<key>`: the source list. Producers RPUSH; the oldest message is at the head.
- `<key>:docket:<tag>`: the processing list of ONE batch, `tag` = `<ns>.<name>.<uid>.<batch>`.
  It exists exactly while the batch is claimed, through all the attempts of that batch.
- `<dead_key>` (the Queue's dead letter, by default `<key>:dead`): one JSON object per message
  that exhausted its retries or was too large (`dead_letter` says the format).

At every moment each message is in exactly one of these lists, because every step that moves
messages is ONE Lua script, and Redis runs a script atomically: no other command runs in the
middle, and the script's writes reach the append-only file (and replicas) as one MULTI/EXEC,
which Redis replays all-or-nothing after a crash (a truncated MULTI at the end of the AOF is
discarded on load). So a crash of Redis, or of the controller between two calls, never leaves a
message in two lists or in none. The steps:

- **claim(tag)**: if the processing list of `tag` exists, return its contents unchanged — a claim
  retried after a crash (of the controller, or of the connection after Redis ran the script but
  before the reply arrived) gets the same batch, never a second one. Otherwise move up to
  `count` messages from the head of the source into it, cut at `max_bytes`. The controller
  claims under a tag first and writes the launch intent naming the tag second; on restart, a
  processing list without an intent (`processing_tags`) is either claimed again under the same
  tag, giving the same messages, or given back.
- **ack(tag)**: DEL of the processing list when the batch's task finished. Idempotent: an update
  resent by Mesos acks a list that is already gone, which is a no-op.
- **dead_letter(tag, ...)**: the processing list's messages appended to the dead list as JSON,
  and the processing list deleted, in one script. Run again, it finds no list and moves 0.
- **give_back(tag)**: the processing list's messages pushed back to the HEAD of the source in
  their order (they were the oldest, they are next again), the list deleted, in one script.
- **requeue(dead_key, ids)**: chosen dead entries moved back to the TAIL of the source as their
  original bytes, in one script that moves exactly the entries it still finds, so a repeated or
  concurrent requeue never moves a message twice.

What Lua in Redis cannot do (base64, checking UTF-8) is done here, around the scripts: the
script is given both what the caller read and what to write, and checks under its atomicity
that the list still holds what was read.

Errors: every failure to talk to Redis (refused, timed out, authentication, a replica that
refuses writes, out of memory...) is raised as `RedisUnavailable`, naming `host:port` and the
error, never the URL's password; a key of the wrong type is a `RedisKeyTypeError` (a
ValueError): retrying will not fix it, the user must. redis-py's own retries are off: a retry
after a timeout could push a message twice (RPUSH is not idempotent), and a caller that waits
on a dead Redis must get its answer within `timeout`; the controller retries with backoff.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

#: Values per RPUSH/LPUSH inside a script: Lua's unpack() puts every value on the C stack,
#: which holds about 8,000; a batch or a requeue may be larger.
_LUA_CHUNK = 1000
#: Values per RPUSH from Python: one bounded request at a time inside one MULTI/EXEC.
_PUSH_CHUNK = 10_000
#: A script that finds its list changed between the caller's read and the script is run again
#: with a fresh read; this bounds that (it needs a concurrent writer of the same key to happen).
_ATTEMPTS = 5

# Every script starts by checking that each of its keys is a list or absent, so that a key of
# the wrong type is reported by name, before anything is written.
_CHECK_TYPES = """
for _, key in ipairs(KEYS) do
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= 'list' then
    return redis.error_reply('WRONGTYPE key ' .. key .. ' holds a ' .. t .. ', not a list')
  end
end
"""

# KEYS[1] source, KEYS[2] processing list; ARGV count, max_bytes, separator_len.
_CLAIM = _CHECK_TYPES + f"""
local claimed = redis.call('LRANGE', KEYS[2], 0, -1)
if #claimed > 0 then
  return claimed  -- claimed already (a retry): the same batch, nothing moves
end
local count = tonumber(ARGV[1])
local max_bytes = tonumber(ARGV[2])
local sep = tonumber(ARGV[3])
local head = redis.call('LRANGE', KEYS[1], 0, count - 1)
local n, total = 0, 0
for i, m in ipairs(head) do
  local size = string.len(m)
  if i > 1 then
    size = size + sep
    if total + size > max_bytes then break end
  end
  n, total = i, total + size
  -- A first message larger than max_bytes alone is taken alone: the caller dead-letters it
  -- (MessageTooLarge) instead of it blocking the head of the queue forever.
  if total > max_bytes then break end
end
if n == 0 then return {{}} end
local taken = {{}}
for i = 1, n do taken[i] = head[i] end
redis.call('LTRIM', KEYS[1], n, -1)
for i = 1, n, {_LUA_CHUNK} do
  redis.call('RPUSH', KEYS[2], unpack(taken, i, math.min(i + {_LUA_CHUNK} - 1, n)))
end
return taken
"""

# KEYS[1] processing list, KEYS[2] dead list; ARGV[1] = n, ARGV[2..n+1] the batch as the
# caller read it, ARGV[n+2..2n+1] the dead-letter entries it made of them.
# Returns how many moved, 0 if the list is gone, -1 if it is not what the caller read.
_DEAD_LETTER = _CHECK_TYPES + f"""
local batch = redis.call('LRANGE', KEYS[1], 0, -1)
if #batch == 0 then return 0 end
local n = tonumber(ARGV[1])
if #batch ~= n then return -1 end
for i = 1, n do
  if batch[i] ~= ARGV[1 + i] then return -1 end
end
for i = 1, n, {_LUA_CHUNK} do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, n + 1 + i, n + 1 + math.min(i + {_LUA_CHUNK} - 1, n)))
end
redis.call('DEL', KEYS[1])
return n
"""

# KEYS[1] source, KEYS[2] processing list. Returns how many went back.
_GIVE_BACK = _CHECK_TYPES + f"""
local batch = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #batch
if n == 0 then return 0 end
-- LPUSH puts each value at the head in turn: push from the batch's last message to its
-- first, so that its first is at the head again and the order is kept.
local i = n
while i >= 1 do
  local lo = math.max(1, i - {_LUA_CHUNK} + 1)
  local values = {{}}
  for j = i, lo, -1 do values[#values + 1] = batch[j] end
  redis.call('LPUSH', KEYS[1], unpack(values))
  i = lo - 1
end
redis.call('DEL', KEYS[2])
return n
"""

# KEYS[1] dead list, KEYS[2] source; ARGV pairs (dead entry as the caller read it, the
# message to put back). Moves each entry it still finds (once per pair), keeps the others in
# their order, and returns how many moved.
_REQUEUE = _CHECK_TYPES + f"""
local wanted = {{}}
for i = 1, #ARGV, 2 do
  local w = wanted[ARGV[i]]
  if w == nil then wanted[ARGV[i]] = {{ARGV[i + 1], 1}} else w[2] = w[2] + 1 end
end
local dead = redis.call('LRANGE', KEYS[1], 0, -1)
local kept, moved = {{}}, {{}}
for _, entry in ipairs(dead) do
  local w = wanted[entry]
  if w ~= nil and w[2] > 0 then
    moved[#moved + 1] = w[1]
    w[2] = w[2] - 1
  else
    kept[#kept + 1] = entry
  end
end
if #moved == 0 then return 0 end
redis.call('DEL', KEYS[1])
for i = 1, #kept, {_LUA_CHUNK} do
  redis.call('RPUSH', KEYS[1], unpack(kept, i, math.min(i + {_LUA_CHUNK} - 1, #kept)))
end
for i = 1, #moved, {_LUA_CHUNK} do
  redis.call('RPUSH', KEYS[2], unpack(moved, i, math.min(i + {_LUA_CHUNK} - 1, #moved)))
end
return #moved
"""

#: The reason shown for a dead-list entry that is not Docket's JSON (written by someone else).
UNKNOWN_REASON = "unknown"


class RedisUnavailable(Exception):
    """Redis could not be reached or refused the operation. The message names host:port and
    the error — never the password of the URL."""

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(f"Redis at {address} unavailable: {detail}")
        self.address = address
        self.detail = detail


class RedisKeyTypeError(ValueError):
    """A Queue's key (source, processing or dead list) holds something other than a list: a
    configuration error that retrying will not fix."""


@dataclass(frozen=True)
class DeadMessage:
    """One entry of a dead list. `message` is the original bytes; `at` is RFC 3339 (UTC)."""

    id: str
    message: bytes
    reason: str
    execution: str
    at: str


def _rfc3339(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"dead-letter time {at!r} has no time zone")
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dead_entry(entry_id: str, message: bytes, reason: str, execution: str, at: str) -> bytes:
    """The JSON a dead list holds for one message: text as is, anything that is not valid
    UTF-8 as base64 with `"encoding": "base64"`, so every byte comes back on requeue."""
    doc: dict[str, str] = {"id": entry_id}
    try:
        doc["message"] = message.decode("utf-8")
    except UnicodeDecodeError:
        doc["message"] = base64.b64encode(message).decode("ascii")
        doc["encoding"] = "base64"
    doc.update(reason=reason, execution=execution, at=at)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_dead_entry(raw: bytes) -> DeadMessage:
    """A dead-list entry as a DeadMessage. An entry that is not Docket's JSON is shown as it
    is, with reason "unknown" and an id made of its content (stable, so it can be requeued)."""
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict):
            fields = [doc.get(k) for k in ("id", "message", "reason", "execution", "at")]
            encoding = doc.get("encoding")
            if all(isinstance(f, str) for f in fields) and encoding in (None, "base64"):
                entry_id, text, reason, execution, at = cast(list[str], fields)
                message = (base64.b64decode(text, validate=True) if encoding == "base64"
                           else text.encode("utf-8"))
                return DeadMessage(entry_id, message, reason, execution, at)
    except (ValueError, binascii.Error):  # not JSON, not UTF-8, not base64
        pass
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return DeadMessage(f"unknown:{digest}", raw, UNKNOWN_REASON, "", "")


def _secrets(url: str) -> list[str]:
    """The password of a Redis URL, in every form it may take in an error message."""
    found: set[str] = set()
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            found |= {parts.password, unquote(parts.password)}
        for value in parse_qs(parts.query).get("password", []):
            found |= {value, quote(value)}
    # Longest first: a password containing another one is replaced whole.
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with the password of `url` replaced by ***."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)


def _glob_escape(text: str) -> str:
    """`text` matched literally by SCAN MATCH (Redis glob: * ? [ ] and \\ are special)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisQueue:
    """One Queue's Redis list. Thread-safe (redis-py's connection pool); connects lazily, so
    constructing one never fails on a Redis that is down."""

    def __init__(self, url: str, key: str, *, timeout: float = 2.0) -> None:
        if not key:
            raise ValueError("a Redis queue needs a non-empty key")
        self._url = url
        self.key = key
        try:
            self._redis = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0), decode_responses=False)
        except ValueError as exc:  # a malformed URL; redis-py's text may quote parts of it
            raise ValueError(f"invalid Redis URL: {scrub(str(exc), url)}") from None
        kwargs = self._redis.get_connection_kwargs()
        if kwargs.get("path"):
            self.address = f"unix:{kwargs['path']}"
        else:
            self.address = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        self._claim = self._redis.register_script(_CLAIM)
        self._dead_letter = self._redis.register_script(_DEAD_LETTER)
        self._give_back = self._redis.register_script(_GIVE_BACK)
        self._requeue = self._redis.register_script(_REQUEUE)

    def __repr__(self) -> str:  # the URL may hold a password: never shown
        return f"RedisQueue({self.address!r}, key={self.key!r})"

    def close(self) -> None:
        self._redis.close()

    @contextlib.contextmanager
    def _io(self, op: str, *keys: str) -> Iterator[None]:
        """Map every failure of `op` on `keys` to RedisUnavailable or RedisKeyTypeError. The
        original exception is not chained: its text is repeated, scrubbed of the password."""
        try:
            yield
        except redis.ResponseError as exc:
            # A pipeline's error quotes the failing command, messages included: keep only
            # Redis's own words.
            text = _PIPELINE_PREFIX.sub("", scrub(str(exc), self._url))
            if text.startswith("WRONGTYPE"):
                what = ", ".join(keys)
                raise RedisKeyTypeError(
                    f"Redis at {self.address}: {op} on {what}: {text} (every key of a Queue "
                    f"must be a list)") from None
            raise RedisUnavailable(self.address,
                                   f"{op} {keys[0] if keys else ''}: "
                                   f"{type(exc).__name__}: {text}") from None
        except (redis.RedisError, OSError) as exc:
            text = scrub(str(exc), self._url) or "no detail"
            raise RedisUnavailable(self.address,
                                   f"{op} {keys[0] if keys else ''}: "
                                   f"{type(exc).__name__}: {text}") from None

    def processing_key(self, tag: str) -> str:
        return f"{self.key}:docket:{tag}"

    def length(self) -> int:
        """Messages pending in the source list (claimed ones are not there)."""
        with self._io("LLEN", self.key):
            return int(cast(Any, self._redis.llen(self.key)))

    def claim(self, tag: str, count: int, max_bytes: int, separator_len: int = 1) -> list[bytes]:
        """The batch of `tag`: what it holds if claimed already, else up to `count` messages
        moved from the head of the source, cut before their size (with `separator_len` between
        two) would pass `max_bytes`; a first message larger than that is taken alone."""
        if count < 1 or max_bytes < 1 or separator_len < 0:
            raise ValueError(f"claim needs count >= 1, max_bytes >= 1, separator_len >= 0 "
                             f"(got {count}, {max_bytes}, {separator_len})")
        processing = self.processing_key(tag)
        with self._io("claim", self.key, processing):
            got = self._claim(keys=[self.key, processing],
                              args=[count, max_bytes, separator_len])
        return [bytes(m) for m in cast(list[bytes], got)]

    def batch(self, tag: str) -> list[bytes] | None:
        """The messages claimed under `tag`, None if no batch is claimed under it (a list is
        never empty in Redis: one that exists holds the batch)."""
        processing = self.processing_key(tag)
        with self._io("LRANGE", processing):
            got = cast(list[bytes], self._redis.lrange(processing, 0, -1))
        return list(got) or None

    def batches(self, tags: Iterable[str]) -> dict[str, list[bytes] | None]:
        """batch() of many tags in one round trip."""
        tags = list(tags)
        if not tags:
            return {}
        with self._io("LRANGE", *(self.processing_key(t) for t in tags)):
            pipe = self._redis.pipeline(transaction=False)
            for tag in tags:
                pipe.lrange(self.processing_key(tag), 0, -1)
            results = pipe.execute()
        return {tag: (list(got) or None) for tag, got in zip(tags, results, strict=True)}

    def ack(self, tag: str) -> None:
        """The batch of `tag` is done: its messages are deleted (no-op if already gone)."""
        processing = self.processing_key(tag)
        with self._io("DEL", processing):
            self._redis.delete(processing)

    def dead_letter(self, tag: str, dead_key: str, reason: str, execution: str,
                    at: datetime) -> int:
        """Move the batch of `tag` to `dead_key` (one JSON entry per message, id
        `<execution>:<index in batch>`) and delete it; how many moved, 0 if it was gone."""
        stamp = _rfc3339(at)
        processing = self.processing_key(tag)
        for _ in range(_ATTEMPTS):
            batch = self.batch(tag)
            if batch is None:
                return 0
            entries = [dead_entry(f"{execution}:{i}", m, reason, execution, stamp)
                       for i, m in enumerate(batch)]
            with self._io("dead-letter", processing, dead_key):
                moved = int(cast(Any, self._dead_letter(
                    keys=[processing, dead_key], args=[len(batch), *batch, *entries])))
            if moved >= 0:
                return moved
            # -1: the list changed between the read and the script (deleted and claimed again
            # meanwhile); read it again.
        raise RedisUnavailable(self.address, f"dead-letter {processing}: the batch kept "
                                             f"changing during {_ATTEMPTS} attempts")

    def give_back(self, tag: str) -> int:
        """Return the batch of `tag` to the head of the source, in its order; how many."""
        processing = self.processing_key(tag)
        with self._io("give-back", self.key, processing):
            return int(cast(Any, self._give_back(keys=[self.key, processing])))

    def processing_tags(self, tag_prefix: str) -> list[str]:
        """The tags starting with `tag_prefix` that have a batch claimed, sorted (e.g. every
        batch of one Queue incarnation: `<ns>.<name>.<uid>.`)."""
        head = f"{self.key}:docket:"
        pattern = _glob_escape(head + tag_prefix) + "*"
        with self._io("SCAN", pattern):
            found = {cast(bytes, k).decode("utf-8", "replace")
                     for k in self._redis.scan_iter(match=pattern, count=1000)}
        return sorted(k[len(head):] for k in found)

    def push(self, messages: Iterable[bytes | str]) -> int:
        """RPUSH messages (str as UTF-8) at the tail, all or none; the new length."""
        values = [m.encode("utf-8") if isinstance(m, str) else bytes(m) for m in messages]
        if not values:
            return self.length()
        with self._io("RPUSH", self.key):
            pipe = self._redis.pipeline(transaction=True)
            for i in range(0, len(values), _PUSH_CHUNK):
                pipe.rpush(self.key, *values[i:i + _PUSH_CHUNK])
            return int(pipe.execute()[-1])

    def _dead_raw(self, dead_key: str) -> list[bytes]:
        with self._io("LRANGE", dead_key):
            return list(cast(list[bytes], self._redis.lrange(dead_key, 0, -1)))

    def dead(self, dead_key: str) -> list[DeadMessage]:
        """The dead list, oldest first."""
        return [parse_dead_entry(raw) for raw in self._dead_raw(dead_key)]

    def requeue(self, dead_key: str, ids: Sequence[str] | None) -> int:
        """Move the dead entries whose id is in `ids` (None: all) to the tail of the source as
        their original bytes, in dead-list order; how many moved. Unknown ids are ignored."""
        wanted = None if ids is None else set(ids)
        args: list[bytes] = []
        for raw in self._dead_raw(dead_key):
            entry = parse_dead_entry(raw)
            if wanted is None or entry.id in wanted:
                args += [raw, entry.message]
        if not args:
            return 0
        with self._io("requeue", dead_key, self.key):
            return int(cast(Any, self._requeue(keys=[dead_key, self.key], args=args)))
