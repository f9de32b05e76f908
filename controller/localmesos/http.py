"""The master's HTTP server: the v1 scheduler API, the read endpoints, and (routed from here)
the sandbox files and the admin API.

The scheduler endpoint checks the request as Mesos' master does (src/master/http.cpp
`Master::Http::scheduler`): method, Content-Type, a JSON body, then the Call itself
(validation.py, which the master shares) and, for SUBSCRIBE, the Accept and Mesos-Stream-Id
headers; it answers with the same status codes and messages. Only JSON is served: a protobuf
request gets 415 saying so. Everything else about a call, from whether its caller is
subscribed on, is the master's.

A master that does not lead (masters in HA, ha.py) answers as Mesos 1.11's does
(src/master/http.cpp `Master::Http::redirect`): the scheduler API and the read endpoints that
check `elected()` answer 307 Temporary Redirect to the leader, `Location:
//<leader hostname>:<port><path and query>` (protocol-relative), or 503 "No leader elected"
while its detector knows no leader; `/redirect` and `/master/redirect` answer 307 to the
leader's base `//host:port` on every master, the leader included, and any path below them 404
(no redirect loop). `/version`, `/health` and `/files` answer on every master.

With `authenticate_frameworks`, the scheduler endpoint is in Mesos' framework realm (auth.py):
401 before anything else, even on a standby. The admin API answers 403 unless the cluster was
started with `enable_faults` (`--enable-faults`): it kills masters and agents for anyone.

Served elsewhere: the request plumbing (http_server.py), a real agent's own server and the
`/files` endpoints (http_agent.py), the admin API (http_admin.py), the JSON of `/state` and
`/tasks` (state_json.py).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from controller.localmesos.auth import CHALLENGE, principal_mismatch
from controller.localmesos.http_admin import admin
from controller.localmesos.http_agent import AgentHTTP, serve_files
from controller.localmesos.http_server import JSON, PROTOBUF, RequestHandler, Server, path_and_query
from controller.localmesos.master import Master
from controller.localmesos.models import MESOS_VERSION
from controller.localmesos.state_json import master_state, task_json
from controller.localmesos.stream import Stream
from controller.localmesos.validation import CALL_TYPES, SUB_MESSAGE, ApiError, validate_call

if TYPE_CHECKING:
    from controller.localmesos.cluster import LocalMesos
    from controller.localmesos.ha import MasterNode

__all__ = ["CALL_TYPES", "JSON", "PROTOBUF", "SUB_MESSAGE", "AgentHTTP", "MasterHTTP",
           "serve_files", "validate_call"]


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


SCHEDULER_PATHS = frozenset({"/api/v1/scheduler", "/master/api/v1/scheduler"})
# The endpoints served here whose handlers in http.cpp start with `if (!master->elected())
# return redirect(request);`.
LEADER_PATHS = SCHEDULER_PATHS | {
    f"{prefix}/{name}{suffix}" for prefix in ("", "/master")
    for name in ("state", "slaves", "tasks", "frameworks") for suffix in ("", ".json")}
REDIRECT_PATHS = ("/redirect", "/master/redirect")


class _TrackingServer(Server):
    """Remembers its open connections, so that a killed master drops them all (keep-alive
    calls and event streams) as a dead process's sockets would be."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.open_sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()
        super().__init__(*args, **kw)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self, keep: socket.socket | None = None) -> None:
        with self._sockets_lock:
            sockets = [s for s in self.open_sockets if s is not keep]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class MasterHTTP:
    """A master's HTTP server on (host, port); port 0 picks a free one. `node` is the master
    it serves (ha.py): whether that master leads decides what it answers."""

    def __init__(self, cluster: LocalMesos, host: str, port: int,
                 node: MasterNode | None = None) -> None:
        self.cluster = cluster
        self.master: Master = cluster.master
        self.node = node
        outer = self

        class Handler(RequestHandler):
            def routes(self, method: str) -> None:  # type: ignore[override]
                outer.route(self, method)

        self.server = _TrackingServer((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        # shutdown() waits for the poll: stop in 50 ms, not 0.5 s
                                        kwargs={"poll_interval": 0.05},
                                        name="localmesos-master-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop never run
            self.server.shutdown()
        self.server.server_close()

    def kill(self, keep: socket.socket | None = None) -> None:
        """The master's process dies: nothing listens any more and every connection drops
        (but `keep`, the one asking for this over the admin API, which is answered)."""
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
        self.server.drop_connections(keep)

    # --- routing ---------------------------------------------------------------------------
    def route(self, h: RequestHandler, method: str) -> None:
        path, query = path_and_query(h)
        node = self.node
        if node is not None and not node.running:
            # Killed while this request was on its way: a dead process answers nothing (a
            # 503 "No leader elected" from it would be an answer Mesos never gives).
            h.close_connection = True
            return
        principal: str | None = None
        if path in SCHEDULER_PATHS and self.cluster.credentials is not None:
            # libprocess authenticates a route's requests before its handler runs (auth.py)
            principal = self.cluster.credentials.authenticate(h.headers.get("Authorization"))
            if principal is None:
                h.body()
                h.reply(401, headers=CHALLENGE)
                return
        if node is not None and (path in REDIRECT_PATHS or path.startswith(
                tuple(p + "/" for p in REDIRECT_PATHS)) or (
                path in LEADER_PATHS and not node.elected)):
            self.redirect(h, path, node)
        elif path in SCHEDULER_PATHS:
            self.scheduler(h, method, principal)
        elif path.startswith("/admin/"):
            if self.cluster.config.enable_faults:
                self.admin(h, method, path)
            else:
                h.body()
                h.reply(403, "the fault-injection admin API is off (start with "
                             "--enable-faults)")
        elif path in ("/version", "/master/version"):
            h.reply(200, {"version": MESOS_VERSION, "build_date": "", "build_time": 0,
                          "build_user": "docket", "git_sha": "", "git_tag": MESOS_VERSION})
        elif path in ("/health", "/master/health"):
            h.reply(200)
        elif path in ("/state", "/master/state", "/state.json", "/master/state.json"):
            h.reply(200, self.state())
        elif path in ("/frameworks", "/master/frameworks", "/frameworks.json",
                      "/master/frameworks.json"):
            state = self.state()
            h.reply(200, {"frameworks": state["frameworks"],
                          "completed_frameworks": state["completed_frameworks"],
                          "unregistered_frameworks": []})
        elif path in ("/slaves", "/master/slaves", "/slaves.json", "/master/slaves.json"):
            h.reply(200, {"slaves": self.state()["slaves"], "recovered_slaves": []})
        elif path in ("/tasks", "/master/tasks", "/tasks.json", "/master/tasks.json"):
            self.tasks(h, query)
        elif path in ("/files/read", "/files/browse", "/files/read.json", "/files/browse.json"):
            self.files(h, path, query)
        else:
            h.reply(404)

    # --- scheduler API ---------------------------------------------------------------------
    def scheduler(self, h: RequestHandler, method: str, principal: str | None = None) -> None:
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
            try:
                call = validate_call(parsed)
            except ApiError as err:
                # UPDATE_FRAMEWORK passed every check the calls share when validation.py
                # answers it 501; the master checks the rest (master.update_framework).
                if err.status != 501 or parsed.get("type") != "UPDATE_FRAMEWORK":
                    raise
                call = parsed
            kind = call["type"]
            if principal is not None:
                self.check_principal(call, principal)
            if kind == "SUBSCRIBE":
                if not _accepts_json(h.headers.get("Accept")):
                    raise ApiError(406, f"Expecting 'Accept' to allow '{PROTOBUF}' or "
                                        f"'{JSON}'")
                if h.headers.get("Mesos-Stream-Id") is not None:
                    raise ApiError(400, "Subscribe calls should not include the "
                                        "'Mesos-Stream-Id' header")
                self.subscribe(h, call)
                return
            if kind == "UPDATE_FRAMEWORK":  # answered 200 OK, not 202 (http.cpp)
                self.master.update_framework(call, h.headers.get("Mesos-Stream-Id"))
                h.reply(200)
                return
            self.master.handle_call(call, h.headers.get("Mesos-Stream-Id"))
            h.reply(202)
        except ApiError as err:
            h.reply(err.status, err.message)

    def check_principal(self, call: dict[str, Any], principal: str) -> None:
        """An authenticated caller acts only as the principal its FrameworkInfo names:
        validation.cpp for SUBSCRIBE (which gets the principal when it names none), http.cpp
        `Master::Http::scheduler` for the other calls of a known framework; both 400."""
        if call["type"] == "SUBSCRIBE":
            info = call["subscribe"]["framework_info"]
            wrong = principal_mismatch(principal, info)
            if wrong:
                raise ApiError(400, f"Failed to validate scheduler::Call: {wrong}")
            info.setdefault("principal", principal)
            return
        with self.master.lock:
            fw = self.master.frameworks.get(str(call.get("framework_id", {}).get("value")))
            declared = fw.info.get("principal", "") if fw is not None else None
        if declared is not None and declared != principal:
            raise ApiError(400, principal_mismatch(principal, {"principal": declared}) or "")

    def subscribe(self, h: RequestHandler, call: dict[str, Any]) -> None:
        stream = self.master.subscribe(call)
        h.send_response(200)
        h.send_header("Content-Type", JSON)
        h.send_header("Mesos-Stream-Id", stream.stream_id)
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        h.close_connection = True
        self._pump(h, stream)

    def _pump(self, h: RequestHandler, stream: Stream) -> None:
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
        with self.master.lock:
            return master_state(self.master)

    def tasks(self, h: RequestHandler, query: dict[str, str]) -> None:
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
    def files(self, h: RequestHandler, path: str, query: dict[str, str]) -> None:
        serve_files(h, path, query, self.cluster.resolve_sandbox_path)

    def redirect(self, h: RequestHandler, path: str, node: MasterNode) -> None:
        """`Master::Http::redirect`: to the leader this master's detector knows."""
        h.body()  # the connection may be kept alive: the next request starts after it
        leader = node.leader if node.running else None
        if leader is None:
            h.reply(503, "No leader elected")
            return
        base = f"//{leader.get('hostname') or leader['address']['ip']}:{leader['port']}"
        if path in REDIRECT_PATHS:
            h.reply(307, headers={"Location": base})
        elif path.startswith(tuple(p + "/" for p in REDIRECT_PATHS)):
            h.reply(404)  # no redirection loop
        else:
            h.reply(307, headers={"Location": base + h.path})

    # --- admin -----------------------------------------------------------------------------
    def admin(self, h: RequestHandler, method: str, path: str) -> None:
        admin(self.cluster, h, method, path)
