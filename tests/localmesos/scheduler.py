"""A minimal raw-HTTP v1 scheduler for tests and benchmarks: subscribes, collects events in
a queue, and sends calls with the stream id — no pymesos, so error cases can be driven."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
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
        self.closed = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._sub: http.client.HTTPConnection | None = None
        self._calls = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def subscribe(self, timeout: float = 10) -> dict[str, Any]:
        call: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": self.info}}
        if self.suppressed_roles:
            call["subscribe"]["suppressed_roles"] = list(self.suppressed_roles)
        if self.framework_id:
            call["framework_id"] = {"value": self.framework_id}
        self._sub = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self._sub.request("POST", "/api/v1/scheduler", json.dumps(call),
                          {"Content-Type": "application/json", "Accept": "application/json"})
        resp = self._sub.getresponse()
        if resp.status != 200:
            raise AssertionError(f"SUBSCRIBE answered {resp.status}: {resp.read()!r}")
        self.stream_id = resp.getheader("Mesos-Stream-Id")
        threading.Thread(target=self._read, args=(resp,), daemon=True).start()
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
                    return
                data = resp.read(int(line))
                event = json.loads(data)
                self.all_events.append(event)
                self.events.put(event)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            return
        finally:
            self.closed.set()

    def close(self) -> None:
        if self._sub is not None and self._sub.sock is not None:
            import socket

            with contextlib.suppress(OSError):
                self._sub.sock.shutdown(socket.SHUT_RDWR)
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
        self._ack_queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ackers = [threading.Thread(target=self._acker, daemon=True) for _ in range(count)]
        for t in self._ackers:
            t.start()

    def _acker(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        while (status := self._ack_queue.get()) is not None:
            body = {"type": "ACKNOWLEDGE", "framework_id": {"value": self.framework_id},
                    "acknowledge": {"agent_id": status["agent_id"],
                                    "task_id": status["task_id"], "uuid": status["uuid"]}}
            conn.request("POST", "/api/v1/scheduler", json.dumps(body).encode(),
                         {"Content-Type": "application/json",
                          "Mesos-Stream-Id": self.stream_id or ""})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 202, resp.status
        conn.close()

    def ack_later(self, status: dict[str, Any]) -> None:
        if "uuid" in status:
            self._ack_queue.put(status)

    def stop_ackers(self) -> None:
        for _ in self._ackers:
            self._ack_queue.put(None)
        for t in self._ackers:
            t.join(timeout=10)

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
