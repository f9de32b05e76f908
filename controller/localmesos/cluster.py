"""`LocalMesos`: a master with its agents, started and stopped as one, with the fault hooks
tests use. The same object backs `docket local-mesos` and `docket up`.

With `zk` (a `zk://host:port/path` URL) and `masters` > 1, the masters are in HA: they
contend for leadership through ZooKeeper and share the agents (ha.py says how, and what is
modelled); `kill_leading_master()` and `start_master(i)` move the leadership. Without `zk`
there is one master, which leads from the start."""

from __future__ import annotations

import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from controller.localmesos.agents import RealRuntime, SimulatedRuntime
from controller.localmesos.auth import REALM, Credentials, CredentialsError
from controller.localmesos.ha import MasterNode, Masters
from controller.localmesos.http import MasterHTTP
from controller.localmesos.http_agent import AgentHTTP
from controller.localmesos.master import Master
from controller.localmesos.models import MasterConfig, Task
from controller.localmesos.resources import Resources

log = structlog.get_logger("docket.localmesos")


@dataclass
class LocalMesosConfig:
    host: str = "127.0.0.1"
    port: int = 5050  # the first master's; the next masters count up; 0 picks free ports
    masters: int = 1
    zk: str | None = None  # zk://host:port[,host:port]/path: the masters elect a leader there
    agents: int = 1
    cpus: float = 4.0
    mem: float = 4096.0
    disk: float = 10240.0
    gpus: float = 0.0
    ports: tuple[int, int] = (31000, 32000)
    attributes: dict[str, str] = field(default_factory=dict)
    simulate: bool = False
    agent_port: int = 5051  # first real agent's port; 0 picks free ports
    work_dir: Path | None = None
    heartbeat_interval: float = 15.0
    allocation_interval: float = 1.0
    offer_timeout: float | None = None
    default_refuse_seconds: float = 5.0
    status_update_retry_min: float = 10.0
    failover_timeout_cap: float | None = None
    sim_default_duration: float = 0.1
    authenticate_frameworks: bool = False
    """Mesos' --authenticate_http_frameworks with the basic authenticator (auth.py)."""
    credentials: Path | None = None
    """Mesos' --credentials: JSON {"credentials": [{"principal", "secret"}]}."""
    enable_faults: bool = False
    """Serve the fault-injection admin API (http_admin.py) over HTTP; off, it answers 403.
    The in-process fault methods of LocalMesos work either way."""


def _attributes(attrs: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, value in attrs.items():
        try:
            out.append({"name": name, "type": "SCALAR", "scalar": {"value": float(value)}})
        except ValueError:
            out.append({"name": name, "type": "TEXT", "text": {"value": str(value)}})
    return out


def _credentials(c: LocalMesosConfig) -> Credentials | None:
    """As the master at start: exits (here, raises) on a credentials file it cannot use."""
    creds = Credentials.read(c.credentials) if c.credentials is not None else None
    if c.authenticate_frameworks and creds is None:
        raise CredentialsError("No credentials provided for the default 'basic' HTTP "
                               f"authenticator for realm '{REALM}' (see --credentials)")
    return creds if c.authenticate_frameworks else None


class LocalMesos:
    def __init__(self, config: LocalMesosConfig | None = None) -> None:
        self.config = config or LocalMesosConfig()
        c = self.config
        self._own_work_dir = c.work_dir is None
        self.credentials = _credentials(c)
        self.work_dir = Path(c.work_dir or tempfile.mkdtemp(prefix="localmesos-"))
        self.master = Master(MasterConfig(
            host=c.host, port=c.port, heartbeat_interval=c.heartbeat_interval,
            allocation_interval=c.allocation_interval, offer_timeout=c.offer_timeout,
            default_refuse_seconds=c.default_refuse_seconds,
            status_update_retry_min=c.status_update_retry_min,
            failover_timeout_cap=c.failover_timeout_cap,
        ))
        self.masters = Masters(self)
        self.master.config.port = self.masters.nodes[0].port
        self._agent_http: dict[str, AgentHTTP] = {}
        self._runtimes: dict[str, RealRuntime] = {}
        self._started = False

    def _node(self) -> MasterNode:
        """The leading master, else the first (no leader: it answers 503 or redirects)."""
        return self.masters.leading() or self.masters.nodes[0]

    @property
    def http(self) -> MasterHTTP:
        http = self._node().http or self.masters.nodes[0].http
        assert http is not None, "no master is running"
        return http

    @property
    def master_url(self) -> str:
        """The leading master's URL (the first master's while none leads)."""
        return f"http://{self.config.host}:{self._node().port}"

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self._node().port}"

    @property
    def master_addresses(self) -> list[str]:
        """Every master's `host:port`, running or not, in order."""
        return [f"{self.config.host}:{n.port}" for n in self.masters.nodes]

    @property
    def zk_url(self) -> str | None:
        return str(self.masters.zk) if self.masters.zk else None

    def leading_master(self) -> int | None:
        """The index of the master that leads (by its own detector), or None."""
        node = self.masters.leading()
        return node.index if node is not None else None

    def start(self) -> LocalMesos:
        for i in range(self.config.agents):
            self.add_agent(index=i)
        self.master.start()
        self.masters.start_all()
        self._started = True
        return self

    def stop(self) -> None:
        self.masters.stop_all()
        self.master.stop()
        for server in self._agent_http.values():
            server.stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> LocalMesos:
        return self.start() if not self._started else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_agent(self, *, index: int | None = None, cpus: float | None = None,
                  mem: float | None = None, disk: float | None = None,
                  gpus: float | None = None, attributes: dict[str, str] | None = None,
                  simulate: bool | None = None, hostname: str | None = None) -> str:
        c = self.config
        sim = c.simulate if simulate is None else simulate
        n = len(self.master.agents) if index is None else index
        resources = Resources.of(cpus=c.cpus if cpus is None else cpus,
                                 mem=c.mem if mem is None else mem,
                                 disk=c.disk if disk is None else disk,
                                 gpus=c.gpus if gpus is None else gpus, ports=[c.ports])
        attrs = _attributes({**c.attributes, **(attributes or {})})
        name = hostname or (f"agent-{n}.sim" if sim else
                            (socket.gethostname() if n == 0 else f"{socket.gethostname()}-{n}"))
        if sim:
            runtime: Any = SimulatedRuntime(self.master, c.sim_default_duration)
            agent = self.master.add_agent(hostname=name, port=c.agent_port or 5051,
                                          resources=resources, attributes=attrs,
                                          runtime=runtime)
            runtime.agent_id = agent.agent_id
            return agent.agent_id
        runtime = RealRuntime(self.master, self.work_dir)
        port = (c.agent_port + n) if c.agent_port else 0
        agent = self.master.add_agent(hostname=name, port=port, resources=resources,
                                      attributes=attrs, runtime=runtime,
                                      work_dir=str(self.work_dir))
        runtime.agent_id = agent.agent_id
        server = AgentHTTP(self, agent.agent_id, c.host, port)
        agent.port = server.port
        self._agent_http[agent.agent_id] = server
        self._runtimes[agent.agent_id] = runtime
        return agent.agent_id

    def agent_url(self, agent_id: str) -> str:
        return f"http://{self.config.host}:{self._agent_http[agent_id].port}"

    def runtime(self, agent_id: str) -> RealRuntime:
        """A real agent's runtime (KeyError for simulated or unknown agents)."""
        return self._runtimes[agent_id]

    def resolve_sandbox_path(self, path: str, agent_id: str | None = None) -> Path | None:
        """A sandbox path as `/files` takes it (the virtual
        `/frameworks/<FID>/executors/<EID>/runs/latest[/file]`, or an executor's
        `directory` from the agent's `/state`) -> a path on disk, on the given agent or on
        any real one."""
        candidates = [agent_id] if agent_id else list(self._runtimes)
        for aid in candidates:
            runtime = self._runtimes.get(aid or "")
            resolved = runtime.resolve(path) if runtime is not None else None
            if resolved is not None:
                return resolved
        return None

    # --- inspection ------------------------------------------------------------------------
    def tasks(self) -> list[Task]:
        with self.master.lock:
            return list(self.master.all_tasks.values())

    def launches(self) -> list[tuple[float, str, str, str]]:
        """Every launch the master accepted, in order: (time, framework id, task id, agent id).
        A task id launched twice appears twice, whatever became of the first."""
        with self.master.lock:
            return list(self.master.launch_log)

    def frameworks(self) -> list[str]:
        with self.master.lock:
            return list(self.master.frameworks)

    # --- faults ----------------------------------------------------------------------------
    def remove_agent(self, agent_id: str) -> None:
        self.master.remove_agent(agent_id)

    def partition_agent(self, agent_id: str) -> None:
        self.master.partition_agent(agent_id)

    def heal_agent(self, agent_id: str) -> None:
        self.master.heal_agent(agent_id)

    def kill_leading_master(self, keep: socket.socket | None = None) -> int:
        """The leading master dies (ha.py): returns its index. A standby takes over."""
        return self.masters.kill_leader(keep)

    def kill_master(self, index: int) -> None:
        self.masters.kill(index)

    def start_master(self, index: int) -> None:
        """Start a killed master again: it rejoins as a standby, with a new id."""
        self.masters.start(index)

    def restart_master(self, forget_frameworks: bool = False) -> None:
        self.master.restart(forget_frameworks)

    def half_open_streams(self) -> None:
        self.master.silence_streams()

    def rescind_offer(self, offer_id: str) -> bool:
        return self.master.rescind_offer(offer_id)

    def fault_updates(self, *, delay: float = 0.0, duplicate: bool = False,
                      drop: int = 0) -> None:
        self.master.fault_updates(delay=delay, duplicate=duplicate, drop=drop)

    def fail_next_launches(self, count: int = 1) -> None:
        self.master.fail_next_launches(count)
