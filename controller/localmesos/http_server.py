"""The HTTP plumbing shared by the master's and the agents' servers: a threading server and a
request handler that parses requests and writes replies cheaply.

Every scheduler call is one small keep-alive POST, so request parsing and replies are on the
master's per-task path (three acknowledgements a task). The handler therefore parses the
request line and headers itself (the standard library's email-based parser dominated the cost
of a small request), caches the Date header per second, and writes a reply's head and body in
one write. Routing is left to each server (`http.py`, `http_agent.py`).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import structlog

from controller.localmesos.models import MESOS_VERSION

log = structlog.get_logger("docket.localmesos.http")

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


class Server(ThreadingHTTPServer):
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


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Mesos/" + MESOS_VERSION
    routes: Callable[[RequestHandler, str], None]

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


def path_and_query(handler: BaseHTTPRequestHandler) -> tuple[str, dict[str, str]]:
    """The request's path, without a trailing slash, and its query's last value per key."""
    if "?" not in handler.path and "#" not in handler.path and ";" not in handler.path:
        return handler.path.rstrip("/") or "/", {}
    parsed = urlparse(handler.path)
    return parsed.path.rstrip("/") or "/", {k: v[-1] for k, v in parse_qs(parsed.query).items()}
