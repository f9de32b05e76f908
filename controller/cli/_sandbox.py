"""Reading a task's sandbox files the way Mesos' own tools do (src/cli/mesos-tail, the web UI's
pailer), so `docket logs` works against any Mesos 1.x cluster and not only the embedded one:

1. the master names the agent's address: `GET /master/slaves?slave_id=ID` gives the same
   `slaves[]` entries as the master's `/state` (`pid` "slave(1)@host:port", else `hostname`
   and `port`), for one agent instead of the whole cluster; a non-leading master answers with
   a redirect to the leader, which is followed. Masters in HA (a list, or `zk://`) are asked
   who leads first (controller/mesos/masters.py: ZooKeeper's data, or `/master/redirect`);
2. the agent names the sandbox: its `/state` lists `frameworks[].executors[]` and, for tasks
   that ended, `completed_frameworks[]` and `completed_executors[]`, each with the
   executor's `directory` (a command task's executor is named after the task);
3. the agent serves the file: `GET /files/read?path=<directory>/stdout&offset=O&length=L`
   answers `{"data", "offset"}`. Mesos caps one read at 16 pages (64 KiB) and answers an
   offset at or past the end with no data; `offset=-1` answers the file's size as `offset`
   and no data. `data` holds the file's raw bytes (Mesos' JSON writer does not re-encode
   them), so the body is decoded with `surrogateescape` and the bytes recovered exactly.

Every failure becomes a `CommandError` naming the agent, task and file: a person reads it.
Only the CLI uses this module; the controller never reads sandboxes.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from controller.cli._output import CommandError

DEFAULT_MASTER = "http://127.0.0.1:5050"
HTTP_TIMEOUT = 10.0
# Mesos reads at most 16 pages at once (src/files/files.cpp); asking for more is harmless.
READ_LENGTH = 64 * 1024


class AgentGone(CommandError):
    """The master no longer knows the agent (removed, or marked gone)."""


class SandboxGone(CommandError):
    """The agent no longer has the sandbox or the file (garbage collected, or not made yet)."""


def master_url(flag: str | None) -> str:
    """The master as `docket run` takes it: `--mesos-master`, else $DOCKET_MESOS_MASTER, else
    `mesos_master` in the $DOCKET_CONFIG file, else the default; `host:port` or
    `http://host:port`, a list of them or a `zk://` URL, validated by the same rule."""
    from pathlib import Path

    from controller.config import ConfigError, Settings, read_config_file

    value, source = flag, "--mesos-master"
    if not value and os.environ.get("DOCKET_MESOS_MASTER"):
        value, source = os.environ["DOCKET_MESOS_MASTER"], "$DOCKET_MESOS_MASTER"
    if not value and os.environ.get("DOCKET_CONFIG"):
        path = Path(os.environ["DOCKET_CONFIG"])
        try:
            found = read_config_file(path).get("mesos_master")
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        value, source = (str(found), f"config file {path}") if found else (None, "")
    if not value:
        value, source = DEFAULT_MASTER, "default"
    try:
        return str(Settings._check_master(value))
    except ValueError as exc:
        raise CommandError(f"Mesos master {value!r} ({source}): {exc}") from None


def _get(url: str, what: str) -> Any:
    """GET `url` and decode its JSON body; 404 is a `SandboxGone`, anything else a
    `CommandError` naming `what`."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace").strip()
        message = f"{what}: HTTP {exc.code}" + (f" ({detail})" if detail else "")
        if exc.code == 404:
            raise SandboxGone(message) from None
        raise CommandError(message) from None
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CommandError(f"{what}: cannot reach {_origin(url)}: {reason}") from None
    try:
        return json.loads(body.decode("utf-8", errors="surrogateescape"))
    except ValueError as exc:
        raise CommandError(f"{what}: not JSON: {exc}") from None


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Agent:
    agent_id: str
    url: str  # http://host:port
    process: str  # libprocess id of the agent, "slave(1)"


def leading_master(master: str) -> str:
    """`http://host:port` of the master to ask: the one given, or the leader of those."""
    from controller.mesos.masters import leader_url, parse_masters

    spec = parse_masters(master)
    if not spec.zk and len(spec.addresses) == 1:
        return f"http://{spec.addresses[0]}"
    try:
        return leader_url(spec, timeout=HTTP_TIMEOUT)
    except LookupError as exc:
        raise CommandError(f"Mesos masters {master}: cannot find the leader: {exc}") from None


def find_agent(master: str, agent_id: str) -> Agent:
    """The agent's HTTP address, as the (leading) master knows it."""
    master = leading_master(master)
    query = urllib.parse.urlencode({"slave_id": agent_id})
    found = _get(f"{master}/master/slaves?{query}", f"Mesos master {master} (/master/slaves)")
    for slave in found.get("slaves", []) if isinstance(found, dict) else []:
        if slave.get("id") != agent_id:
            continue  # a master before 1.2 ignores the filter
        pid = str(slave.get("pid") or "")
        process, at, address = pid.partition("@")
        if not at or not address:
            process = "slave(1)"
            address = f"{slave.get('hostname')}:{slave.get('port', 5051)}"
        return Agent(agent_id, f"http://{address}", process or "slave(1)")
    raise AgentGone(f"agent {agent_id} is not registered with the Mesos master {master} "
                    "(removed or gone): its sandboxes cannot be read")


def _executors(state: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for group in ("frameworks", "completed_frameworks"):
        for framework in state.get(group) or []:
            for kind in ("executors", "completed_executors"):
                for executor in framework.get(kind) or []:
                    yield str(framework.get("id", "")), executor


def _runs_task(executor: dict[str, Any], task_id: str) -> bool:
    if executor.get("id") == task_id:  # the command executor is named after its task
        return True
    return any(task.get("id") == task_id
               for kind in ("tasks", "queued_tasks", "completed_tasks")
               for task in executor.get(kind) or [])


def sandbox_directory(agent: Agent, task_id: str, framework_id: str | None) -> str:
    """The sandbox `directory` of the executor that runs (or ran) `task_id` on `agent`.
    Raises `SandboxGone` when the agent no longer lists it."""
    state = _get(f"{agent.url}/{agent.process}/state",
                 f"agent {agent.agent_id} at {agent.url} (/state)")
    if not isinstance(state, dict):
        raise CommandError(f"agent {agent.agent_id} at {agent.url}: /state is not an object")
    # Newest last: a live executor comes after completed ones of the same id.
    found = [e for fid, e in _executors(state)
             if (framework_id is None or fid == framework_id) and _runs_task(e, task_id)]
    if not found or not found[-1].get("directory"):
        raise SandboxGone(f"agent {agent.agent_id} at {agent.url} no longer lists the sandbox "
                          f"of task {task_id} (garbage collected after the task ended?)")
    return str(found[-1]["directory"])


@dataclass(frozen=True)
class SandboxFile:
    agent: Agent
    path: str  # <directory>/stdout
    task_id: str

    def _read(self, offset: int, length: int) -> tuple[int, bytes]:
        query = urllib.parse.urlencode({"path": self.path, "offset": offset, "length": length})
        what = (f"{os.path.basename(self.path)} of task {self.task_id} on agent "
                f"{self.agent.agent_id} at {self.agent.url}")
        try:
            found = _get(f"{self.agent.url}/files/read?{query}", what)
        except SandboxGone as exc:
            raise SandboxGone(f"{exc} (the sandbox was garbage collected, or the file is not "
                              "there yet)") from None
        if not isinstance(found, dict) or not isinstance(found.get("data"), str):
            raise CommandError(f"{what}: /files/read answered {str(found)[:200]!r}")
        data = str(found["data"]).encode("utf-8", errors="surrogateescape")
        return int(found.get("offset", offset)), data

    def size(self) -> int:
        return self._read(-1, -1)[0]

    def read(self, offset: int, end: int | None = None) -> Iterator[bytes]:
        """The file's bytes from `offset` up to `end` (or to its current end), in chunks."""
        while end is None or offset < end:
            length = READ_LENGTH if end is None else min(READ_LENGTH, end - offset)
            _, data = self._read(offset, length)
            if not data:
                return
            offset += len(data)
            yield data
