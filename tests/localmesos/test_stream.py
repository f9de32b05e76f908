"""A stream's writes: records buffered under the master lock reach the socket, in order and
as well-formed chunks, also when the client is too slow to take them without blocking."""

from __future__ import annotations

import json
import select
import socket
import threading

from controller.localmesos.master import MasterLock, Stream


def _read_records(conn: socket.socket, count: int) -> list[dict[str, object]]:
    """Parse `count` RecordIO records out of HTTP chunks from `conn`."""
    data = b""
    records: list[dict[str, object]] = []
    body = b""
    while len(records) < count:
        chunk = conn.recv(65536)
        assert chunk, "connection closed early"
        data += chunk
        while b"\r\n" in data:
            size_line, rest = data.split(b"\r\n", 1)
            size = int(size_line, 16)
            if len(rest) < size + 2:
                break
            body += rest[:size]
            assert rest[size:size + 2] == b"\r\n"
            data = rest[size + 2:]
        while b"\n" in body:
            length, rest = body.split(b"\n", 1)
            if len(rest) < int(length):
                break
            records.append(json.loads(rest[:int(length)]))
            body = rest[int(length):]
    return records


def test_events_are_written_when_the_lock_is_released() -> None:
    lock = MasterLock()
    server, client = socket.socketpair()
    with server, client:
        stream = Stream("fw", lock=lock)
        stream.attach(server)
        with lock:
            with lock:
                stream.send({"type": "HEARTBEAT", "n": 1})
            readable, _, _ = select.select([client], [], [], 0.05)
            assert not readable, "written while the lock was held"
            stream.send({"type": "HEARTBEAT", "n": 2})
        assert _read_records(client, 2) == [{"type": "HEARTBEAT", "n": 1},
                                            {"type": "HEARTBEAT", "n": 2}]


def test_a_slow_client_gets_every_record_in_order() -> None:
    lock = MasterLock()
    server, client = socket.socketpair()
    with server, client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        stream = Stream("fw", lock=lock)
        stream.attach(server)
        total = 2000
        for n in range(total):
            with lock:
                stream.send({"type": "HEARTBEAT", "n": n, "pad": "x" * 200})
        # The socket could not take it all without blocking: the rest waits for the
        # stream's own thread, which is woken for it.
        assert stream.wakeup.is_set()
        writer = threading.Thread(target=stream.flush, kwargs={"block": True})
        writer.start()
        records = _read_records(client, total)
        writer.join(timeout=10)
        assert [r["n"] for r in records] == list(range(total))
        assert not stream.broken
