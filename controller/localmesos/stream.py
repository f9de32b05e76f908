"""A framework's event stream: the open SUBSCRIBE response, carrying events as RecordIO
records in HTTP chunks, and the master lock whose release writes them.

This is the master's hot path (every offer, update and heartbeat passes here), so its shape is
set by CPU cost: an event is encoded once (a resend reuses the bytes, see `Task.head_record`),
buffered under the master lock with no I/O, and written by the thread that made it as it
lets go of the lock, without blocking and with no thread woken per event. Only a client too
slow to take a write at once wakes the stream's own HTTP thread (`MasterHTTP._pump`).
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

_encode = json.JSONEncoder(separators=(",", ":")).encode


def recordio(event: dict[str, Any]) -> bytes:
    data = _encode(event).encode()
    return str(len(data)).encode() + b"\n" + data


class MasterLock:
    """The master's one reentrant lock. Events are not written to a stream's socket while it
    is held: `Stream.send` only buffers them, and the thread that leaves the outermost hold
    writes what it buffered, without blocking (see `Stream.flush`). So an event reaches its
    client as soon as the call or timer that made it is done, with no thread woken per event
    and no I/O under the lock."""

    __slots__ = ("_depth", "_dirty", "_lock")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # only the owner touches it
        self._dirty: list[Stream] = []

    def __enter__(self) -> None:
        self._lock.acquire()
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth or not self._dirty:
            self._lock.release()
            return
        dirty, self._dirty = self._dirty, []
        self._lock.release()
        for stream in dict.fromkeys(dirty):
            stream.flush()

    def buffered(self, stream: Stream) -> None:
        self._dirty.append(stream)


@dataclass(eq=False)
class Stream:
    """The open SUBSCRIBE response of one framework: events as RecordIO records in HTTP
    chunks. Records are buffered under the master lock and written by whichever thread gets
    the socket first: the one that made them when it leaves the lock (never blocking), or
    the stream's HTTP thread (`MasterHTTP._pump`), which is woken only to finish a write the
    client was too slow for, to close the stream, or when the client is gone."""

    framework_id: str
    stream_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    closed: bool = False
    silent: bool = False  # half-open fault: the connection stays up, nothing arrives
    lock: MasterLock | None = None  # whose release writes what `send` buffered
    broken: bool = False  # a write failed: the client is gone
    wakeup: threading.Event = field(default_factory=threading.Event)
    _records: list[bytes] = field(default_factory=list)  # guarded by _buffer_lock
    _buffer_lock: threading.Lock = field(default_factory=threading.Lock)
    # The socket, its bytes accepted but not yet written (a partial chunk) and whether
    # `flush` may write without blocking; all guarded by _io_lock.
    _sock: socket.socket | None = None
    _backlog: bytes = b""
    _nonblocking: bool = False
    _io_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, event: dict[str, Any], record: bytes | None = None) -> None:
        """Buffer `event`; `record` is its RecordIO encoding when the caller has it."""
        if not self.closed and not self.silent:
            if record is None:
                record = recordio(event)
            with self._buffer_lock:
                self._records.append(record)
            if self.lock is not None:
                self.lock.buffered(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.wakeup.set()

    def attach(self, sock: socket.socket | None) -> None:
        """The HTTP thread's socket, once the response headers are out (None: detached,
        before the server closes it, so no late write can reach a reused descriptor)."""
        with self._io_lock:
            self._sock = sock
            # Python waits for a socket with a timeout to be writable, MSG_DONTWAIT or not.
            self._nonblocking = sock is not None and sock.gettimeout() is None

    def flush(self, block: bool = False) -> None:
        """Write the buffered records as one chunk, after any backlog. Without `block`, a
        thread already writing is left to it (it looks again once done) and what the socket
        does not take at once becomes backlog for the stream's HTTP thread."""
        while True:
            if not self._io_lock.acquire(block):
                return
            try:
                sock = self._sock
                if sock is None or self.broken:
                    return
                if not block and not self._nonblocking:
                    self.wakeup.set()  # the stream's own thread writes
                    return
                with self._buffer_lock:
                    records, self._records = self._records, []
                data = self._backlog
                if records:
                    body = b"".join(records)
                    data += b"%x\r\n%s\r\n" % (len(body), body)
                self._backlog = b""
                if data:
                    if block:
                        sock.sendall(data)
                    else:
                        try:
                            sent = sock.send(data, socket.MSG_DONTWAIT)
                        except BlockingIOError:
                            sent = 0
                        if sent < len(data):
                            self._backlog = data[sent:]
                            self.wakeup.set()
                            return
            except OSError:
                self.broken = True
                self.wakeup.set()
                return
            finally:
                self._io_lock.release()
            if not self._records:
                return
