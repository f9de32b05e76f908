"""A minimal raw-HTTP v1 scheduler for tests and benchmarks: subscribes, collects events in
a queue, and sends calls with the stream id — no pymesos, so error cases can be driven."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse


class RawScheduler:
    def __init__(self, master_url: str, *, name: str = "test", user: str = "tester",
                 capabilities: tuple[str, ...] = (), framework_id: str | None = None,
                 failover_timeout: float | None = None, roles: list[str] | None = None) -> None:
        parsed = urlparse(master_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 5050
        info: dict[str, Any] = {"user": user, "name": name,
                                "capabilities": [{"type": c} for c in capabilities]}
        if framework_id:
            info["id"] = {"value": framework_id}
        if failover_timeout is not None:
            info["failover_timeout"] = failover_timeout
        if roles is not None:
            info["roles"] = roles
        self.info = info
        self.suppressed_roles: list[str] = []  # sent with SUBSCRIBE when set
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.all_events: list[dict[str, Any]] = []
        self.framework_id: str | None = framework_id
        self.stream_id: str | None = None
        self.closed = threading.Event()  # the subscription stream ended, whoever ended it
        self._sub: http.client.HTTPConnection | None = None
        # The streams' sockets, kept here as http.client may hand one over to its response.
        self._sub_socks: list[socket.socket] = []
        self._calls = http.client.HTTPConnection(self.host, self.port, timeout=10)
        # Background threads are joined by close(), so none outlives its test: an error
        # in one is reported against the test that caused it, not whichever runs next.
        self._readers: list[threading.Thread] = []
        self._ack_queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ackers: list[threading.Thread] = []

    def subscribe(self, timeout: float = 10) -> dict[str, Any]:
        call: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": self.info}}
        if self.suppressed_roles:
            call["subscribe"]["suppressed_roles"] = list(self.suppressed_roles)
        if self.framework_id:
            call["framework_id"] = {"value": self.framework_id}
        self._sub = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self._sub.request("POST", "/api/v1/scheduler", json.dumps(call),
                          {"Content-Type": "application/json", "Accept": "application/json"})
        if self._sub.sock is not None:
            self._sub_socks.append(self._sub.sock)
        resp = self._sub.getresponse()
        if resp.status != 200:
            raise AssertionError(f"SUBSCRIBE answered {resp.status}: {resp.read()!r}")
        self.stream_id = resp.getheader("Mesos-Stream-Id")
        reader = threading.Thread(target=self._read, args=(resp,), daemon=True,
                                  name=f"raw-scheduler-{self.info['name']}-events")
        self._readers.append(reader)
        reader.start()
        first = self.next_event(timeout=timeout)
        if first["type"] == "SUBSCRIBED":
            self.framework_id = first["subscribed"]["framework_id"]["value"]
            self.info["id"] = {"value": self.framework_id}
        return first

    def _read(self, resp: http.client.HTTPResponse) -> None:
        try:
            while True:
                line = resp.readline()
                if not line:
                    return  # the stream ended cleanly
                data = resp.read(int(line))
                event = json.loads(data)
                self.all_events.append(event)
                self.events.put(event)
        except (OSError, http.client.HTTPException):
            # The connection broke (the master dropped the stream, which tests observe
            # through `closed`, or close() shut the socket). Malformed RecordIO or JSON is
            # not caught: that is localmesos speaking badly and fails the test.
            return
        finally:
            self.closed.set()

    def close(self) -> None:
        """Stop every background thread, then the connections. Acknowledgements still queued
        are dropped (the test is over) and those in flight finish first, so none reaches
        the master after its framework was disconnected by closing the stream."""
        self.stop_ackers(drain=False)
        for sock in self._sub_socks:
            # Shut the socket, not close the connection: the reader sees the stream end
            # (EOF) rather than its response object torn down under it.
            with contextlib.suppress(OSError):  # the master may have closed it already
                sock.shutdown(socket.SHUT_RDWR)
        for reader in self._readers:
            reader.join(timeout=10)
            assert not reader.is_alive(), f"{reader.name} did not stop"
        self._readers.clear()
        if self._sub is not None:
            self._sub.close()
        self._calls.close()

    def call(self, call: dict[str, Any], *, headers: dict[str, str] | None = None
             ) -> tuple[int, str]:
        body = dict(call)
        if self.framework_id and "framework_id" not in body:
            body["framework_id"] = {"value": self.framework_id}
        hdrs = {"Content-Type": "application/json"}
        if self.stream_id:
            hdrs["Mesos-Stream-Id"] = self.stream_id
        hdrs.update(headers or {})
        self._calls.request("POST", "/api/v1/scheduler", json.dumps(body).encode(), hdrs)
        resp = self._calls.getresponse()
        return resp.status, resp.read().decode()

    def next_event(self, timeout: float = 10) -> dict[str, Any]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout}s") from None

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10,
                 what: str = "event") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if predicate(event):
                return event
        raise AssertionError(f"no {what} within {timeout}s")

    def wait_offers(self, timeout: float = 10) -> list[dict[str, Any]]:
        event = self.wait_for(lambda e: e["type"] == "OFFERS", timeout, "OFFERS")
        return list(event["offers"]["offers"])

    def wait_update(self, task_id: str, state: str | None = None, timeout: float = 10,
                    ack: bool = True) -> dict[str, Any]:
        def match(e: dict[str, Any]) -> bool:
            if e["type"] != "UPDATE":
                return False
            st = e["update"]["status"]
            if ack:
                self.ack(st)
            return bool(st["task_id"]["value"] == task_id and (state is None
                                                               or st["state"] == state))
        event = self.wait_for(match, timeout, f"UPDATE {task_id} {state}")
        return dict(event["update"]["status"])

    def ack(self, status: dict[str, Any]) -> None:
        if "uuid" in status:
            code, text = self.call({"type": "ACKNOWLEDGE", "acknowledge": {
                "agent_id": status["agent_id"], "task_id": status["task_id"],
                "uuid": status["uuid"]}})
            assert code == 202, text

    def start_ackers(self, count: int = 4) -> None:
        """Acknowledge in `count` background connections (see `ack_later`): with one
        connection a scale test is bound by request round trips, not by the master."""
        self._ackers = [threading.Thread(target=self._acker, daemon=True,
                                         name=f"raw-scheduler-acker-{i}")
                        for i in range(count)]
        for t in self._ackers:
            t.start()

    def _acker(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            while (status := self._ack_queue.get()) is not None:
                body = {"type": "ACKNOWLEDGE", "framework_id": {"value": self.framework_id},
                        "acknowledge": {"agent_id": status["agent_id"],
                                        "task_id": status["task_id"], "uuid": status["uuid"]}}
                conn.request("POST", "/api/v1/scheduler", json.dumps(body).encode(),
                             {"Content-Type": "application/json",
                              "Mesos-Stream-Id": self.stream_id or ""})
                resp = conn.getresponse()
                text = resp.read()
                # The stream is open while ackers run (close() joins them first), so any
                # answer but 202 is the master refusing a valid acknowledgement.
                assert resp.status == 202, (resp.status, text)
        finally:
            conn.close()

    def ack_later(self, status: dict[str, Any]) -> None:
        if "uuid" in status:
            self._ack_queue.put(status)

    def stop_ackers(self, *, drain: bool = True, timeout: float = 60) -> None:
        """Stop the acknowledging threads and join them. With `drain`, every queued
        acknowledgement is sent first; without, the queued ones are dropped and only those
        in flight complete."""
        if not drain:
            with contextlib.suppress(queue.Empty):
                while True:
                    self._ack_queue.get_nowait()
        for _ in self._ackers:
            self._ack_queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._ackers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
            assert not t.is_alive(), f"{t.name} still busy after {timeout}s"
        self._ackers = []

    def launch(self, offer: dict[str, Any], *tasks: dict[str, Any],
               filters: dict[str, Any] | None = None) -> tuple[int, str]:
        accept: dict[str, Any] = {"offer_ids": [offer["id"]], "operations": [
            {"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}]}
        if filters is not None:
            accept["filters"] = filters
        return self.call({"type": "ACCEPT", "accept": accept})


def task_info(offer: dict[str, Any], task_id: str, command: str = "true", *,
              cpus: float = 0.1, mem: float = 32, env: dict[str, str] | None = None,
              **extra: Any) -> dict[str, Any]:
    cmd: dict[str, Any] = {"value": command, "shell": True}
    if env:
        cmd["environment"] = {"variables": [{"name": k, "value": v} for k, v in env.items()]}
    info: dict[str, Any] = {
        "name": task_id, "task_id": {"value": task_id}, "agent_id": offer["agent_id"],
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}],
        "command": cmd,
    }
    info.update(extra)
    return info
