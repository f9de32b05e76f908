"""A real agent's own HTTP server, and the sandbox file endpoints it shares with the master.

Mesos tools find a task's output through the agent, not the master: the agent's `/state`
(state_json.py) names each executor's sandbox `directory`, and its `/files/read` and
`/files/browse` serve what is in it. The master answers `/files/*` too (over every real
agent's sandboxes), for convenience, with the same `serve_files`.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.localmesos.http_server import RequestHandler, Server, path_and_query
from controller.localmesos.models import MESOS_VERSION
from controller.localmesos.state_json import agent_state

if TYPE_CHECKING:
    from controller.localmesos.cluster import LocalMesos


def serve_files(h: RequestHandler, path: str, query: dict[str, str],
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

        class Handler(RequestHandler):
            def routes(self, method: str) -> None:  # type: ignore[override]
                path, query = path_and_query(self)
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

        self.server = Server((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        # shutdown() waits for the poll: stop in 50 ms, not 0.5 s
                                        kwargs={"poll_interval": 0.05},
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

