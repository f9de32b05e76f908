"""What the Queue commands share (`docket queue push|dead|requeue`, `get queues`, `describe
queue`): finding a Queue's source and dead letter, and every read and write they make there.

The CLI writes to a Queue's source as any producer does, never as the controller: it adds
messages and moves dead letters back, and leaves claims, acks and dead-lettering to the
controller (docs/architecture.md §8). Every write is conditional, so a command racing the
controller, another producer or a second `docket queue requeue` never loses or doubles a
message:

- **push, etcd**: each message becomes a key `<prefix>/queue-items/<ns>/<queue>/<itemId>`,
  written only if absent, up to 100 per transaction (controller/queues/etcd_push.py). Item
  ids are UTC times to the microsecond, strictly increasing within one command, plus random hex
  (`20261123T080000.000001Z-9f3a2b1c`), so `etcdctl get --prefix` lists them in the order
  they were pushed and two producers never pick the same id. A transaction that etcd applied
  but whose answer was lost is retried by the store and then fails its condition: the command
  reads the keys back and counts it as written when they hold its messages, so a message is
  never pushed twice.
- **push, Redis**: one RPUSH of every message (`RedisQueue.push`, all or nothing).
- **dead, etcd**: the keys under the dead-letter prefix (spec.deadLetter.key, default
  `<prefix>/queue-dead/<ns>/<queue>/`); the item id is the rest of the key. The controller
  writes each entry as JSON: `message` (text, or base64 with `"encoding": "base64"` when it is
  not UTF-8), `reason`, `execution`, `at`. An entry in another format is shown as it is, with
  reason `unknown`, and requeued as its raw bytes.
- **requeue, etcd**: per `REQUEUE_PER_TXN` ids, one transaction puts each message back under
  its original item id (only if no such item exists) and deletes its dead entry (only if it
  is unchanged since it was read). A conflict means someone else moved some of them: the
  command reads them again and retries with what is still there.
- **dead / requeue, Redis**: `RedisQueue.dead` and `RedisQueue.requeue` on the dead list
  (spec.deadLetter.key, default `<key>:dead`), whose scripts move each entry exactly once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from controller.api import EtcdSource, InvalidObject, Queue, RedisSource
from controller.cli._output import CommandError

if TYPE_CHECKING:
    from controller.queues.redis_source import RedisQueue
    from controller.store import Store, StoredObject

REQUEUE_PER_TXN = 50
"""Dead letters per transaction of `queue requeue`: a put and a delete each."""
ATTEMPTS = 5
"""Transactions retried after a conflict before the command gives up."""
REDIS_TIMEOUT = 3.0
"""Seconds a command waits for Redis: a person is waiting."""
UNKNOWN_REASON = "unknown"


@dataclass(frozen=True)
class QueueRef:
    """A Queue as stored, valid, with its name for messages."""

    namespace: str
    name: str
    queue: Queue
    stored: StoredObject

    @property
    def what(self) -> str:
        return f"queue {self.namespace}/{self.name}"


def load_queue(store: Store, namespace: str, name: str) -> QueueRef:
    """The Queue `namespace/name`; CommandError naming it if it is missing or invalid."""
    stored = store.get("queues", namespace, name)
    what = f"queue {namespace}/{name}"
    if stored is None:
        raise CommandError(f"{what} not found (no key "
                           f"{store.keys.object('queues', namespace, name)})")
    obj = stored.object
    if isinstance(obj, InvalidObject):
        raise CommandError(f"{what} is invalid, so its source is not known; fix it first: "
                           f"{obj.message}")
    assert isinstance(obj, Queue)
    return QueueRef(namespace, name, obj, stored)


def etcd_dead_prefix(store: Store, ref: QueueRef) -> str:
    dead = ref.queue.spec.dead_letter
    return dead.key if dead is not None else store.keys.queue_dead_prefix(ref.namespace,
                                                                         ref.name)


def redis_dead_key(queue: Queue) -> str:
    source = queue.spec.source
    assert isinstance(source, RedisSource)
    dead = queue.spec.dead_letter
    return dead.key if dead is not None else f"{source.key}:dead"


def redis_address(url: str) -> str:
    """host:port (or unix:path) of a Redis URL, never its password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        if parts.path and url.startswith("unix:"):
            return f"unix:{parts.path}"
        return f"{host}:{parts.port or 6379}"
    except ValueError:
        return "<invalid URL>"


def source_text(queue: Queue, items_prefix: str) -> str:
    """The source in one line, for `describe queue` and command output."""
    source = queue.spec.source
    if isinstance(source, EtcdSource):
        return f"etcd, keys under {items_prefix}"
    return f"redis list {source.key!r} at {redis_address(source.url)}"


def dead_letter_text(queue: Queue, default_prefix: str) -> str:
    source = queue.spec.source
    dead = queue.spec.dead_letter
    if isinstance(source, EtcdSource):
        return (f"etcd, keys under {dead.key}" if dead is not None
                else f"etcd, keys under {default_prefix} (default)")
    return (f"redis list {dead.key!r}" if dead is not None
            else f"redis list {source.key + ':dead'!r} (default)")


# --- messages in and out ----------------------------------------------------------------------
def lines_of(data: bytes) -> list[bytes]:
    """One message per line: the line ending (LF or CRLF) is not part of it; empty lines are
    skipped."""
    out = []
    for line in data.split(b"\n"):
        line = line.removesuffix(b"\r")
        if line:
            out.append(line)
    return out


def preview(message: bytes, width: int = 50) -> str:
    """A message in one short cell: text with line breaks and tabs escaped, cut to `width`;
    bytes that are not UTF-8 as their size."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(message)} bytes, not UTF-8>"
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= width else text[:width - 3] + "..."


def parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


@dataclass(frozen=True)
class DeadEntry:
    """One dead letter. `key` and `mod_revision` are set for etcd entries only."""

    id: str
    message: bytes
    reason: str
    execution: str
    at: str
    key: str = ""
    mod_revision: int = 0

    def document(self) -> dict[str, str]:
        """For -o json|yaml: every byte of the message (base64 when it is not UTF-8)."""
        doc = {"id": self.id}
        try:
            doc["message"] = self.message.decode("utf-8")
        except UnicodeDecodeError:
            doc["message"] = base64.b64encode(self.message).decode("ascii")
            doc["encoding"] = "base64"
        doc.update(reason=self.reason, execution=self.execution, at=self.at)
        if self.key:
            doc["key"] = self.key
        return doc


def parse_etcd_dead(item_id: str, key: str, raw: bytes, mod_revision: int) -> DeadEntry:
    """An etcd dead-letter entry; one not in Docket's format is shown (and requeued) as its
    raw bytes, with reason `unknown`."""
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict):
            text, encoding = doc.get("message"), doc.get("encoding")
            fields = [doc.get(k, "") for k in ("reason", "execution", "at")]
            if isinstance(text, str) and encoding in (None, "base64") and all(
                    isinstance(f, str) for f in fields):
                message = (base64.b64decode(text, validate=True) if encoding == "base64"
                           else text.encode("utf-8"))
                reason, execution, at = (str(f) for f in fields)
                return DeadEntry(item_id, message, reason, execution, at, key, mod_revision)
    except (ValueError, binascii.Error):  # not JSON, not UTF-8, not base64
        pass
    return DeadEntry(item_id, raw, UNKNOWN_REASON, "", "", key, mod_revision)


# --- etcd ---------------------------------------------------------------------------------------
def push_etcd(store: Store, ref: QueueRef, messages: Sequence[bytes]) -> int:
    """Write `messages` as new items, in order; how many were written. Raises CommandError
    saying how many were written before a failure."""
    from controller.queues.etcd_push import PushIncomplete, push_items

    try:
        return push_items(store, ref.namespace, ref.name, messages)
    except PushIncomplete as exc:
        raise CommandError(f"{ref.what}: {exc.pushed} of {len(messages)} message(s) pushed, "
                           f"then: {exc}") from None


def dead_etcd(store: Store, prefix: str) -> list[DeadEntry]:
    """The dead letters under `prefix`, oldest first (by the revision that wrote them)."""
    items, _ = store.list_raw(prefix)
    entries = sorted(items, key=lambda kv: kv[3])
    return [parse_etcd_dead(key[len(prefix):], key, value, mod)
            for key, value, mod, _create, _version in entries if key[len(prefix):]]


@dataclass
class Requeued:
    """What `requeue` did: moved back, gone meanwhile (requeued by someone else), or left
    in the dead letter because an item with that id is in the queue already."""

    moved: int = 0
    gone: int = 0
    blocked: list[str] = field(default_factory=list)


def requeue_etcd(store: Store, ref: QueueRef, entries: Sequence[DeadEntry]) -> Requeued:
    """Move `entries` back into the queue under their item ids, each exactly once."""
    from controller.store import Conflict, Delete, Expect, Put

    out = Requeued()
    for start in range(0, len(entries), REQUEUE_PER_TXN):
        chunk = list(entries[start:start + REQUEUE_PER_TXN])
        for _ in range(ATTEMPTS):
            if not chunk:
                break
            ops: list[Put | Delete] = []
            expect: list[Expect] = []
            for e in chunk:
                item = store.keys.queue_item(ref.namespace, ref.name, e.id)
                ops += [Put(item, e.message), Delete(e.key)]
                expect += [Expect(item, 0), Expect(e.key, e.mod_revision)]
            try:
                store.commit(ops, expect)
            except Conflict:
                chunk = _still_dead(store, ref, chunk, out)
                continue
            out.moved += len(chunk)
            break
        else:
            raise CommandError(f"{ref.what}: {out.moved} message(s) requeued, then the "
                               f"dead letter kept changing during {ATTEMPTS} attempts; run "
                               "the command again")
    return out


def _still_dead(store: Store, ref: QueueRef, chunk: Sequence[DeadEntry],
                out: Requeued) -> list[DeadEntry]:
    """After a conflict: the entries of `chunk` as they are now, those that can still move.
    The others are noted in `out` (gone, or blocked by an item of the same id)."""
    again = []
    for e in chunk:
        found = store.get_raw(e.key)
        if found is None:
            out.gone += 1
            continue
        raw, mod, _ = found
        if store.get_raw(store.keys.queue_item(ref.namespace, ref.name, e.id)) is not None:
            out.blocked.append(e.id)
            continue
        again.append(parse_etcd_dead(e.id, e.key, raw, mod))
    return again


# --- Redis --------------------------------------------------------------------------------------
@contextmanager
def redis_queue(ref: QueueRef) -> Iterator[RedisQueue]:
    """The Queue's Redis list; every Redis failure becomes a CommandError naming the Queue
    (and Redis' address, never the URL's password)."""
    from controller.queues.redis_source import RedisKeyTypeError, RedisQueue, RedisUnavailable

    source = ref.queue.spec.source
    assert isinstance(source, RedisSource)
    try:
        client = RedisQueue(source.url, source.key, timeout=REDIS_TIMEOUT)
    except ValueError as exc:
        raise CommandError(f"{ref.what}: {exc}") from None
    try:
        yield client
    except (RedisUnavailable, RedisKeyTypeError) as exc:
        raise CommandError(f"{ref.what}: {exc}") from None
    finally:
        client.close()


def dead_redis(client: RedisQueue, dead_key: str) -> list[DeadEntry]:
    return [DeadEntry(d.id, d.message, d.reason, d.execution, d.at)
            for d in client.dead(dead_key)]
