"""Acknowledgements of status updates, sent on connections of their own, HTTP/1.1 pipelined.

Owns the ack senders (threads fed by a queue) and the small hand-written HTTP/1.1 client they
use. Acknowledgements are most of the calls to the master (one per update, about three per
task) and each is a blocking round trip: sent one at a time by the adapter's worker they
bounded throughput and queued offers behind them. Mesos does not care about their order, so
they go out apart from every other call, several at once when a backlog has built up.

Nothing here knows pymesos: the adapter says, through `AckTarget`, where and as whom to send.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from controller.mesos.backend import TaskUpdate
from controller.mesos.calls import ack_body

log = structlog.get_logger("docket.mesos")

# Acks one sender writes at once (HTTP/1.1 pipelining) when a backlog has built up.
ACK_PIPELINE = 256


class AckConnection:
    """A keep-alive HTTP/1.1 connection that sends several POSTs pipelined and reads their
    answers in order. http.client cannot: each response object buffers its own reads, and
    would swallow the start of the next answer."""

    def __init__(self, master: str, timeout: float) -> None:
        self.master = master
        host, _, port = master.rpartition(":")
        self._host = master
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def post_all(self, path: str, headers: Mapping[str, str], bodies: Sequence[bytes]
                 ) -> list[tuple[int, bytes]]:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        prefix = f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\n{head}".encode()
        self._sock.sendall(b"".join(
            b"%sContent-Length: %d\r\n\r\n%s" % (prefix, len(body), body) for body in bodies))
        return [self._response() for _ in bodies]

    def _response(self) -> tuple[int, bytes]:
        line = self._reader.readline(65537)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError(f"bad response from {self.master}: {line[:100]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        while True:
            header = self._reader.readline(65537)
            if header in (b"\r\n", b"\n"):
                break
            if not header:
                raise ConnectionError(f"{self.master} closed the connection")
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            body = b""
            while (size := int(self._reader.readline(65537).split(b";")[0], 16)) > 0:
                body += self._reader.read(size)
                self._reader.readline(65537)
            while self._reader.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return status, body
        if length is None:
            if status in (202, 204, 304) or status < 200:
                return status, b""
            raise ConnectionError(f"{self.master} answered {status} without a length")
        return status, self._reader.read(length)


@dataclass(frozen=True)
class AckTarget:
    """Where acks go right now: the subscription's master, stream and framework."""
    master: str
    stream_id: str
    framework_id: str
    credential: str | None = None
    """The `Authorization` header value, when the framework authenticates."""


class AckSenders:
    """Threads that acknowledge updates, each on its own keep-alive connection. `target` is
    asked before each batch and answers None while there is no subscription to send on."""

    def __init__(self, target: Callable[[], AckTarget | None], timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._queue: queue.SimpleQueue[TaskUpdate | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def qsize(self) -> int:
        return self._queue.qsize()

    def put(self, update: TaskUpdate) -> None:
        self._queue.put(update)

    def start(self, count: int) -> None:
        self._threads = [threading.Thread(target=self._loop, name=f"docket-mesos-ack-{i}",
                                          daemon=True)
                         for i in range(count)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """At stop, before the driver goes: the acks already asked for are sent (bounded)."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=self._timeout)
        self._threads = []

    def _loop(self) -> None:
        """One ack sender: its own keep-alive connection to the current master, with the
        current subscription's stream id. Whatever acks are waiting go out together, HTTP/1.1
        pipelined (written at once, answered in order: libprocess serves a connection's
        requests in order), so a backlog costs a few writes and reads instead of a round trip
        each. An ack that cannot be sent is dropped: Mesos sends the update again and it is
        acknowledged then."""
        conn: AckConnection | None = None
        while (update := self._queue.get()) is not None:
            batch = [update]
            stopping = False
            while len(batch) < ACK_PIPELINE:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            target = self._target()
            if target is None:
                log.info("mesos call skipped while disconnected", call="ACKNOWLEDGE",
                         count=len(batch))
            else:
                headers = {"Content-Type": "application/json",
                           "Mesos-Stream-Id": target.stream_id}
                if target.credential:
                    headers["Authorization"] = target.credential
                bodies = [json.dumps({"type": "ACKNOWLEDGE",
                                      "framework_id": {"value": target.framework_id},
                                      **ack_body(u)}).encode() for u in batch]
                try:
                    if conn is None or conn.master != target.master:
                        if conn is not None:
                            conn.close()
                        conn = AckConnection(target.master, self._timeout)
                    for status, text in conn.post_all("/api/v1/scheduler", headers, bodies):
                        if not 200 <= status < 300:
                            log.warning("mesos call failed", call="ACKNOWLEDGE",
                                        error=f"{status}: {text[:200]!r}")
                except Exception as exc:
                    if conn is not None:
                        conn.close()
                    conn = None
                    log.warning("mesos call failed", call="ACKNOWLEDGE", count=len(batch),
                                error=str(exc))
            if stopping:
                break
        if conn is not None:
            conn.close()
