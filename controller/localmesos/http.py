"""HTTP front of the embedded Mesos: the v1 scheduler API, the read endpoints, the agents'
own servers (sandbox files and `/state`, shaped in state_json.py), and the admin API for fault
injection.

The scheduler endpoint checks a call in the order Mesos' master does
(src/master/http.cpp `Master::Http::scheduler` and validation.cpp `scheduler::call::validate`)
and answers with the same status codes and messages. Only JSON is served: a protobuf request
gets 415 saying so.

Admin API (POST, JSON body, on the master's port; for tests and chaos experiments):
    /admin/agents                    {"cpus","mem","disk","gpus","ports","attributes",
                                      "simulate"} -> {"agent_id"}
    /admin/agents/<id>/remove        the agent is gone for good
    /admin/agents/<id>/partition     the agent becomes unreachable
    /admin/agents/<id>/heal          an unreachable agent reregisters
    /admin/master/restart            {"forget_frameworks": bool}: drop every stream
    /admin/streams/silence           every stream stays open but goes silent (half-open)
    /admin/offers/<id>/rescind       rescind one outstanding offer
    /admin/updates                   {"delay": s, "duplicate": bool, "drop": n}
    /admin/launches/fail             {"count": n}: the next n launches fail
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import json
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import structlog

from controller.localmesos.master import MESOS_VERSION, ApiError, Master, Stream
from controller.localmesos.resources import Resources
from controller.localmesos.state_json import (
    AGENT_CAPABILITIES,
    agent_state,
    attribute_value,
    resources_json,
    task_json,
)

if TYPE_CHECKING:
    from controller.localmesos.cluster import LocalMesos

log = structlog.get_logger("docket.localmesos.http")

JSON = "application/json"
PROTOBUF = "application/x-protobuf"

CALL_TYPES = {
    "UNKNOWN", "SUBSCRIBE", "TEARDOWN", "ACCEPT", "DECLINE", "ACCEPT_INVERSE_OFFERS",
    "DECLINE_INVERSE_OFFERS", "REVIVE", "KILL", "SHUTDOWN", "ACKNOWLEDGE",
    "ACKNOWLEDGE_OPERATION_STATUS", "RECONCILE", "RECONCILE_OPERATIONS", "MESSAGE", "REQUEST",
    "SUPPRESS", "UPDATE_FRAMEWORK",
}
# The sub-message each call type must carry (validation.cpp).
SUB_MESSAGE = {
    "SUBSCRIBE": "subscribe", "ACCEPT": "accept", "DECLINE": "decline",
    "ACCEPT_INVERSE_OFFERS": "accept_inverse_offers",
    "DECLINE_INVERSE_OFFERS": "decline_inverse_offers", "KILL": "kill",
    "SHUTDOWN": "shutdown", "ACKNOWLEDGE": "acknowledge",
    "ACKNOWLEDGE_OPERATION_STATUS": "acknowledge_operation_status", "RECONCILE": "reconcile",
    "RECONCILE_OPERATIONS": "reconcile_operations", "MESSAGE": "message", "REQUEST": "request",
    "UPDATE_FRAMEWORK": "update_framework",
}


def _accepts_json(accept: str | None) -> bool:
    if accept is None:
        return True
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        params = part.split(";")[1:]
        if any(p.strip().replace(" ", "") == "q=0" for p in params):
            continue
        if media in (JSON, "application/*", "*/*"):
            return True
    return False


def _complete_ack(call: dict[str, Any]) -> bool:
    """The common ACKNOWLEDGE, checked without the general walk below."""
    if len(call) != 3 or "type" not in call:
        return False
    fid, ack = call.get("framework_id"), call.get("acknowledge")
    if not isinstance(fid, dict) or "value" not in fid or not isinstance(ack, dict) \
            or "uuid" not in ack:
        return False
    agent, task = ack.get("agent_id"), ack.get("task_id")
    return isinstance(agent, dict) and "value" in agent and isinstance(task, dict) \
        and "value" in task


def _missing_required(call: dict[str, Any]) -> list[str]:
    """Required proto2 fields a call lacks (Mesos: 'Not initialized: ...')."""
    if _complete_ack(call):
        return []
    missing = []

    def need(obj: Any, path: str, *fields: str) -> None:
        if not isinstance(obj, dict):
            return
        for f in fields:
            if f not in obj:
                missing.append(f"{path}.{f}" if path else f)

    def ids(obj: Any, path: str, *fields: str) -> None:
        if isinstance(obj, dict):
            for f in fields:
                if f in obj:
                    need(obj[f], f"{path}.{f}" if path else f, "value")

    ids(call, "", "framework_id")
    sub = call.get("subscribe")
    if isinstance(sub, dict):
        need(sub, "subscribe", "framework_info")
        fi = sub.get("framework_info")
        need(fi, "subscribe.framework_info", "user", "name")
        ids(fi, "subscribe.framework_info", "id")
    kill = call.get("kill")
    need(kill, "kill", "task_id")
    ids(kill, "kill", "task_id", "agent_id")
    ack = call.get("acknowledge")
    need(ack, "acknowledge", "agent_id", "task_id", "uuid")
    ids(ack, "acknowledge", "agent_id", "task_id")
    for i, t in enumerate((call.get("reconcile") or {}).get("tasks") or []):
        need(t, f"reconcile.tasks[{i}]", "task_id")
    msg = call.get("message")
    need(msg, "message", "agent_id", "executor_id", "data")
    shut = call.get("shutdown")
    need(shut, "shutdown", "executor_id", "agent_id")
    accept = call.get("accept")
    if isinstance(accept, dict):
        for i, op in enumerate(accept.get("operations") or []):
            if op.get("type") == "LAUNCH":
                for j, t in enumerate((op.get("launch") or {}).get("task_infos") or []):
                    path = f"accept.operations[{i}].launch.task_infos[{j}]"
                    need(t, path, "name", "task_id", "agent_id")
    return missing


# The message-typed fields of a Call, as far as the master reads them: {field: sub-schema}
# for a message, [sub-schema] for a repeated message, str for a string, [str] for repeated
# strings. Mesos' JSON-to-protobuf conversion refuses a value of the wrong JSON type (400).
_ID: dict[str, Any] = {"value": str}
_CALL_SCHEMA: dict[str, Any] = {
    "framework_id": _ID,
    "subscribe": {"framework_info": {"id": _ID, "user": str, "name": str, "role": str,
                                     "roles": [str], "principal": str, "hostname": str,
                                     "capabilities": [{}]},
                  "suppressed_roles": [str]},
    "accept": {"offer_ids": [_ID], "operations": [{"launch": {"task_infos": [
        {"name": str, "task_id": _ID, "agent_id": _ID, "resources": [{"name": str}],
         "command": {"value": str}}]}}], "filters": {}},
    "decline": {"offer_ids": [_ID], "filters": {}},
    "revive": {"roles": [str]},
    "suppress": {"roles": [str]},
    "kill": {"task_id": _ID, "agent_id": _ID, "kill_policy": {"grace_period": {}}},
    "shutdown": {"executor_id": _ID, "agent_id": _ID},
    "acknowledge": {"agent_id": _ID, "task_id": _ID, "uuid": str},
    "reconcile": {"tasks": [{"task_id": _ID, "agent_id": _ID}]},
    "message": {"agent_id": _ID, "executor_id": _ID, "data": str},
    "request": {},
}


def _shape_error(value: Any, schema: Any, path: str) -> str | None:
    if schema is str:
        return None if isinstance(value, str) else f"Expecting a string for '{path}'"
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"Expecting a JSON array for '{path}'"
        for i, item in enumerate(value):
            error = _shape_error(item, schema[0], f"{path}[{i}]")
            if error:
                return error
        return None
    if not isinstance(value, dict):
        return f"Expecting a JSON object for '{path}'"
    for name, sub in schema.items():
        if name in value:
            error = _shape_error(value[name], sub, f"{path}.{name}" if path else name)
            if error:
                return error
    return None


def validate_call(call: Any) -> dict[str, Any]:
    """Parse-level and semantic validation as Mesos does it; raises ApiError(400/501)."""
    if not isinstance(call, dict):
        raise ApiError(400, "Failed to convert JSON into Call protobuf: Expecting a JSON object")
    shape = _shape_error(call, _CALL_SCHEMA, "")
    if shape:
        raise ApiError(400, f"Failed to convert JSON into Call protobuf: {shape}")
    kind = call.get("type")
    if kind is not None and kind not in CALL_TYPES:
        raise ApiError(400, "Failed to convert JSON into Call protobuf: Failed to find enum "
                            f"for '{kind}'")
    missing = _missing_required(call)
    if missing:
        raise ApiError(400, "Failed to validate scheduler::Call: Not initialized: "
                            + ", ".join(missing))
    if kind is None:
        raise ApiError(400, "Failed to validate scheduler::Call: Expecting 'type' to be present")
    if kind == "SUBSCRIBE":
        if "subscribe" not in call:
            raise ApiError(400, "Failed to validate scheduler::Call: Expecting 'subscribe' to "
                                "be present")
        info_id = (call["subscribe"]["framework_info"].get("id") or {}).get("value")
        call_id = (call.get("framework_id") or {}).get("value")
        if info_id != call_id:
            raise ApiError(400, "Failed to validate scheduler::Call: 'framework_id' differs "
                                "from 'subscribe.framework_info.id'")
        return call
    if "framework_id" not in call:
        raise ApiError(400, "Failed to validate scheduler::Call: Expecting 'framework_id' to "
                            "be present")
    sub = SUB_MESSAGE.get(kind)
    if sub and sub not in call:
        raise ApiError(400, f"Failed to validate scheduler::Call: Expecting '{sub}' to be "
                            "present")
    if kind == "ACKNOWLEDGE":
        try:
            raw = base64.b64decode(call["acknowledge"]["uuid"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ApiError(400, "Failed to convert JSON into Call protobuf: Failed to parse "
                                "'acknowledge.uuid' as base64") from None
        # stout's UUID::fromBytes: 16 bytes whose version nibble boost knows (1 to 5).
        if len(raw) != 16 or not 1 <= raw[6] >> 4 <= 5:
            raise ApiError(400, "Failed to validate scheduler::Call: Not a valid UUID")
    return call


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _Headers(dict[str, str]):
    """Request headers by lower-cased name: all the handlers need is `get`, and building
    this costs a fraction of http.client's email-based parser, which dominated the cost of
    a small keep-alive POST."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


_MAX_LINE = 65536
_MAX_HEADERS = 100
_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Mesos/" + MESOS_VERSION
    routes: Callable[[_Handler, str], None]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        """The request line and headers, parsed as BaseHTTPRequestHandler does (same
        keep-alive, Expect: 100-continue and error answers) but without the email package."""
        self.command = None  # type: ignore[assignment]
        self.request_version = self.default_request_version
        self.close_connection = True
        raw: bytes = self.raw_requestline  # type: ignore[attr-defined]
        requestline = str(raw, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self.send_error(400, f"Bad request syntax ({requestline!r})")
            return False
        command, path, version = words
        try:
            major, minor = (int(x) for x in version[5:].split(".", 1))
        except ValueError:
            self.send_error(400, f"Bad request version ({version!r})")
            return False
        if major != 1 or minor < 0:
            self.send_error(505, f"Invalid HTTP version ({version[5:]})")
            return False
        self.command, self.path, self.request_version = command, path, version
        if path.startswith("//"):
            self.path = "/" + path.lstrip("/")
        headers = _Headers()
        rfile = self.rfile
        for _ in range(_MAX_HEADERS + 1):
            line = rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(431, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = str(line, "iso-8859-1").partition(":")
            if not sep:
                continue
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        else:
            self.send_error(431, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif minor >= 1 or connection == "keep-alive":
            self.close_connection = False
        expects = headers.get("expect", "").lower() == "100-continue" and minor >= 1
        return not expects or self.handle_expect_100()

    def reply(self, status: int, body: bytes | str | dict[str, Any] | list[Any] = b"",
              content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            content_type = JSON
        elif isinstance(body, str):
            body = body.encode()
        phrase = self.responses.get(status, ("",))[0]
        head = (f"HTTP/1.1 {status} {phrase}\r\nServer: {self.server_version}\r\n"
                f"Date: {_http_date()}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n")
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
            if k.lower() == "connection" and v.lower() == "close":
                self.close_connection = True
        # Headers and body leave in one write, one TCP segment for small answers.
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            type(self).routes(self, self.command)
        except BrokenPipeError:
            pass
        except Exception as exc:  # never kill the server thread; answer 500
            log.exception("request failed", path=self.path)
            with contextlib.suppress(Exception):
                self.reply(500, f"Internal error: {exc}")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch


def _query(handler: BaseHTTPRequestHandler) -> tuple[str, dict[str, str]]:
    if "?" not in handler.path and "#" not in handler.path and ";" not in handler.path:
        return handler.path.rstrip("/") or "/", {}
    parsed = urlparse(handler.path)
    return parsed.path.rstrip("/") or "/", {k: v[-1] for k, v in parse_qs(parsed.query).items()}


class MasterHTTP:
    """The master's HTTP server on (host, port); port 0 picks a free one."""

    def __init__(self, cluster: LocalMesos, host: str, port: int) -> None:
        self.cluster = cluster
        self.master: Master = cluster.master
        outer = self

        class Handler(_Handler):
            def routes(self, method: str) -> None:  # type: ignore[override]
                outer.route(self, method)

        self.server = _Server((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="localmesos-master-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- routing ---------------------------------------------------------------------------
    def route(self, h: _Handler, method: str) -> None:
        path, query = _query(h)
        if path in ("/api/v1/scheduler", "/master/api/v1/scheduler"):
            self.scheduler(h, method)
        elif path.startswith("/admin/"):
            self.admin(h, method, path)
        elif path in ("/version", "/master/version"):
            h.reply(200, {"version": MESOS_VERSION, "build_date": "", "build_time": 0,
                          "build_user": "docket", "git_sha": "", "git_tag": MESOS_VERSION})
        elif path in ("/health", "/master/health"):
            h.reply(200)
        elif path in ("/state", "/master/state", "/state.json", "/master/state.json"):
            h.reply(200, self.state())
        elif path in ("/slaves", "/master/slaves", "/slaves.json", "/master/slaves.json"):
            h.reply(200, {"slaves": self.state()["slaves"], "recovered_slaves": []})
        elif path in ("/tasks", "/master/tasks", "/tasks.json", "/master/tasks.json"):
            self.tasks(h, query)
        elif path in ("/files/read", "/files/browse", "/files/read.json", "/files/browse.json"):
            self.files(h, path, query)
        else:
            h.reply(404)

    # --- scheduler API ---------------------------------------------------------------------
    def scheduler(self, h: _Handler, method: str) -> None:
        body = h.body()
        if method != "POST":
            h.reply(405, f"405 Method Not Allowed. Expecting one of {{ 'POST' }}, but received "
                         f"'{method}'", headers={"Allow": "POST"})
            return
        content_type = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not h.headers.get("Content-Type"):
            h.reply(400, "Expecting 'Content-Type' to be present")
            return
        if content_type == PROTOBUF:
            h.reply(415, f"Expecting 'Content-Type' of {JSON}: this embedded Mesos serves only "
                         f"JSON ({PROTOBUF} is not supported)")
            return
        if content_type != JSON:
            h.reply(415, f"Expecting 'Content-Type' of {JSON} (only JSON is served)")
            return
        try:
            parsed = json.loads(body or b"")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            h.reply(400, f"Failed to parse body into JSON: {exc}")
            return
        try:
            call = validate_call(parsed)
            kind = call["type"]
            if kind == "SUBSCRIBE":
                if not _accepts_json(h.headers.get("Accept")):
                    raise ApiError(406, f"Expecting 'Accept' to allow '{PROTOBUF}' or "
                                        f"'{JSON}'")
                if h.headers.get("Mesos-Stream-Id") is not None:
                    raise ApiError(400, "Subscribe calls should not include the "
                                        "'Mesos-Stream-Id' header")
                self.subscribe(h, call)
                return
            if kind == "UNKNOWN":
                with self.master.lock:
                    self.master.framework_for_call(call["framework_id"]["value"],
                                                   h.headers.get("Mesos-Stream-Id"))
                h.reply(501)
                return
            if kind == "UPDATE_FRAMEWORK":
                raise ApiError(501, "UPDATE_FRAMEWORK is not supported by this embedded Mesos")
            self.master.handle_call(call, h.headers.get("Mesos-Stream-Id"))
            h.reply(202)
        except ApiError as err:
            h.reply(err.status, err.message)

    def subscribe(self, h: _Handler, call: dict[str, Any]) -> None:
        stream = self.master.subscribe(call)
        h.send_response(200)
        h.send_header("Content-Type", JSON)
        h.send_header("Mesos-Stream-Id", stream.stream_id)
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        h.close_connection = True
        self._pump(h, stream)

    def _pump(self, h: _Handler, stream: Stream) -> None:
        """Keep the stream's connection: the threads that make events write them (see
        `Stream.flush`); this one finishes the writes a slow client could not take at once,
        ends the response when the master closes the stream, and notices a client that
        hung up."""
        sock = h.connection
        last_check = 0.0
        stream.attach(sock)
        try:
            while True:
                closing = stream.closed
                # What was buffered before the socket was attached (SUBSCRIBED), or left
                # over by a write that would have blocked.
                stream.flush(block=True)
                if stream.broken:
                    return
                if closing:  # the master closed the stream
                    with contextlib.suppress(OSError):
                        h.wfile.write(b"0\r\n\r\n")
                        h.wfile.flush()
                    return
                stream.wakeup.wait(0.25)
                stream.wakeup.clear()
                now = time.monotonic()
                if now - last_check > 0.25:
                    last_check = now
                    # The client sends nothing on this connection: readable means it hung up.
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable and not sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK):
                        raise ConnectionResetError("client closed the subscription")
        except (OSError, ValueError):
            pass
        finally:
            stream.attach(None)
            self.master.stream_closed(stream)

    # --- read endpoints --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        m = self.master
        leader = m.master_info()
        with m.lock:
            def framework(fw: Any) -> dict[str, Any]:
                info = fw.info
                used = Resources()
                for t in fw.tasks.values():
                    if not t.resources_released:
                        used = used + t.resources
                offered = Resources()
                for o in fw.offers:
                    if o in m.offers:
                        offered = offered + m.offers[o].resources
                return {
                    "id": fw.framework_id,
                    "name": info.get("name", ""),
                    "user": info.get("user", ""),
                    "hostname": info.get("hostname", ""),
                    "principal": info.get("principal"),
                    "role": info.get("role", "*"),
                    "roles": fw.roles,
                    "active": fw.active,
                    "connected": fw.connected,
                    "recovered": False,
                    "checkpoint": bool(info.get("checkpoint", False)),
                    "failover_timeout": fw.failover_timeout,
                    "webui_url": info.get("webui_url", ""),
                    "resources": resources_json(used),
                    "used_resources": resources_json(used),
                    "offered_resources": resources_json(offered),
                    "capabilities": sorted(fw.capabilities),
                    "registered_time": fw.registered_time,
                    "unregistered_time": fw.unregistered_time or 0,
                    "tasks": [task_json(t) for t in fw.tasks.values()],
                    "unreachable_tasks": [task_json(t) for t in fw.unreachable_tasks.values()],
                    "completed_tasks": [task_json(t) for t in fw.completed_tasks],
                    "offers": [self._offer_json(m.offers[o]) for o in fw.offers if o in m.offers],
                    "executors": [],
                    "completed_executors": [],
                }

            slaves = []
            for a in m.agents.values():
                if a.state == "gone":
                    continue
                slaves.append({
                    "id": a.agent_id,
                    "pid": f"{a.pid_name}@{m.config.host}:{a.port}",
                    "hostname": a.hostname,
                    "port": a.port,
                    "resources": resources_json(a.total),
                    "used_resources": resources_json(a.used),
                    "offered_resources": resources_json(a.offered),
                    "unreserved_resources": resources_json(a.total),
                    "reserved_resources": {},
                    "deactivated": False,
                    "capabilities": AGENT_CAPABILITIES,
                    "attributes": {x["name"]: attribute_value(x) for x in a.attributes},
                    "active": a.state == "active",
                    "version": MESOS_VERSION,
                    "registered_time": a.registered_time,
                })
            return {
                "version": MESOS_VERSION,
                "id": m.master_id,
                "pid": f"master@{m.config.host}:{m.config.port}",
                "hostname": m.config.hostname,
                "start_time": m.start_time,
                "elected_time": m.start_time,
                "leader": f"master@{m.config.host}:{m.config.port}",
                # readonly_handler.cpp writes the leader with common/http.cpp's
                # json(MasterInfo): id, pid, port and hostname only.
                "leader_info": {k: leader[k] for k in ("id", "pid", "port", "hostname")},
                "activated_slaves": sum(1 for a in m.agents.values() if a.state == "active"),
                "deactivated_slaves": 0,
                "unreachable_slaves": sum(1 for a in m.agents.values()
                                          if a.state == "unreachable"),
                "slaves": slaves,
                "frameworks": [framework(fw) for fw in m.frameworks.values()],
                "completed_frameworks": [framework(fw) for fw in m.removed_frameworks.values()],
                "orphan_tasks": [],
                "capabilities": ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"],
                "unregistered_frameworks": [],
                "flags": {"allocation_interval": f"{m.config.allocation_interval}secs",
                          "offer_timeout": str(m.config.offer_timeout)},
            }

    def _offer_json(self, offer: Any) -> dict[str, Any]:
        return {"id": offer.offer_id, "framework_id": offer.framework_id,
                "slave_id": offer.agent_id,
                "resources": resources_json(offer.resources)}

    def tasks(self, h: _Handler, query: dict[str, str]) -> None:
        try:
            limit = int(query.get("limit", 100))
            offset = int(query.get("offset", 0))
        except ValueError:
            h.reply(400, "Failed to parse 'limit' or 'offset': not a number")
            return
        order = query.get("order", "des")
        if order not in ("asc", "des"):
            h.reply(400, "Failed to parse 'order': must be 'asc' or 'des'")
            return
        with self.master.lock:
            tasks = list(self.master.all_tasks.values())
            if "framework_id" in query:
                tasks = [t for t in tasks if t.framework_id == query["framework_id"]]
            if "task_id" in query:
                tasks = [t for t in tasks if t.task_id == query["task_id"]]
            tasks.sort(key=lambda t: t.statuses[0]["timestamp"] if t.statuses else 0,
                       reverse=order == "des")
            page = [task_json(t) for t in tasks[offset:offset + limit]]
        h.reply(200, {"tasks": page})

    # --- sandboxes (served by the agents in Mesos; the master answers too, for convenience)
    def files(self, h: _Handler, path: str, query: dict[str, str]) -> None:
        serve_files(h, path, query, self.cluster.resolve_sandbox_path)

    # --- admin -----------------------------------------------------------------------------
    def admin(self, h: _Handler, method: str, path: str) -> None:
        if method != "POST":
            h.reply(405, "admin endpoints take POST", headers={"Allow": "POST"})
            return
        try:
            body = json.loads(h.body() or b"{}")
        except json.JSONDecodeError as exc:
            h.reply(400, f"invalid JSON: {exc}")
            return
        parts = path.strip("/").split("/")
        c = self.cluster
        try:
            if parts == ["admin", "agents"]:
                agent = c.add_agent(
                    cpus=float(body.get("cpus", 4)), mem=float(body.get("mem", 4096)),
                    disk=float(body.get("disk", 10240)), gpus=float(body.get("gpus", 0)),
                    attributes=body.get("attributes") or {},
                    simulate=bool(body.get("simulate", c.config.simulate)))
                h.reply(200, {"agent_id": agent})
            elif len(parts) == 4 and parts[1] == "agents" and parts[3] in (
                    "remove", "partition", "heal"):
                getattr(c, f"{parts[3]}_agent")(parts[2])
                h.reply(200, {"ok": True})
            elif parts == ["admin", "master", "restart"]:
                c.restart_master(forget_frameworks=bool(body.get("forget_frameworks")))
                h.reply(200, {"ok": True})
            elif parts == ["admin", "streams", "silence"]:
                c.half_open_streams()
                h.reply(200, {"ok": True})
            elif len(parts) == 4 and parts[1] == "offers" and parts[3] == "rescind":
                h.reply(200, {"rescinded": c.rescind_offer(parts[2])})
            elif parts == ["admin", "updates"]:
                c.fault_updates(delay=float(body.get("delay", 0)),
                                duplicate=bool(body.get("duplicate", False)),
                                drop=int(body.get("drop", 0)))
                h.reply(200, {"ok": True})
            elif parts == ["admin", "launches", "fail"]:
                c.fail_next_launches(int(body.get("count", 1)))
                h.reply(200, {"ok": True})
            else:
                h.reply(404, f"unknown admin endpoint {path}")
        except KeyError as exc:
            h.reply(404, f"unknown id {exc}")


def serve_files(h: _Handler, path: str, query: dict[str, str],
                resolve: Callable[[str], Path | None]) -> None:
    """Mesos' /files/read and /files/browse over virtual sandbox paths."""
    virtual = query.get("path")
    if not virtual:
        h.reply(400, "Expecting 'path' to be specified.")
        return
    real = resolve(virtual)
    if real is None or not real.exists():
        h.reply(404, f"File not found: {virtual}")
        return
    if path.startswith("/files/browse"):
        if not real.is_dir():
            h.reply(400, f"Cannot browse a file: {virtual}")
            return
        entries = []
        for child in sorted(real.iterdir()):
            st = child.stat()
            entries.append({"path": f"{virtual.rstrip('/')}/{child.name}",
                            "nlink": st.st_nlink, "size": st.st_size, "mtime": st.st_mtime,
                            "mode": stat.filemode(st.st_mode), "uid": str(st.st_uid),
                            "gid": str(st.st_gid)})
        h.reply(200, entries)
        return
    if real.is_dir():
        h.reply(400, f"Cannot read a directory: {virtual}")
        return
    try:
        offset = int(query.get("offset", -1))
        length = int(query["length"]) if "length" in query else None
    except ValueError:
        h.reply(400, "Failed to parse 'offset' or 'length'")
        return
    size = os.path.getsize(real)
    if offset == -1:  # Mesos: report the size, read nothing
        h.reply(200, {"data": "", "offset": size})
        return
    if offset < 0 or (length is not None and length < -1):
        h.reply(400, "Negative offset or length")
        return
    if offset > size:
        h.reply(200, {"data": "", "offset": size})
        return
    with open(real, "rb") as f:
        f.seek(offset)
        data = f.read() if length in (None, -1) else f.read(length)
    h.reply(200, {"data": data.decode("utf-8", errors="replace"), "offset": offset})


class AgentHTTP:
    """A real agent's own HTTP server: /files/read, /files/browse, /health, /state (each
    also under /slave(1), the agent's process, as libprocess serves it)."""

    def __init__(self, cluster: LocalMesos, agent_id: str, host: str, port: int) -> None:
        self.cluster = cluster
        self.agent_id = agent_id
        outer = self

        class Handler(_Handler):
            def routes(self, method: str) -> None:  # type: ignore[override]
                path, query = _query(self)
                if path.startswith("/files/"):
                    serve_files(self, path, query,
                                lambda v: outer.cluster.resolve_sandbox_path(v, agent_id))
                elif path in ("/health", "/slave(1)/health"):
                    self.reply(200)
                elif path in ("/state", "/slave(1)/state"):
                    self.reply(200, outer.state())
                elif path in ("/version",):
                    self.reply(200, {"version": MESOS_VERSION})
                else:
                    self.reply(404)

        self.server = _Server((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name=f"localmesos-agent-{port}", daemon=True)
        self._thread.start()

    def state(self) -> dict[str, Any]:
        master = self.cluster.master
        runtime = self.cluster.runtime(self.agent_id)
        with master.lock:
            return agent_state(master, master.agents[self.agent_id], runtime)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

