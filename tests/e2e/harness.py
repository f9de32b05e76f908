"""An in-process Docket for end-to-end tests: the real Manager (every kind), the real pymesos
adapter, a real etcd (the session server, under this test's own prefix) and a LocalMesos, with
short intervals. Jobs are written as users write them: raw JSON or YAML text at the spec key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from controller.api import ExecutionRecord, JobStatus
from controller.clock import Clock
from controller.localmesos import LocalMesos
from controller.manager import KnownTasks, Manager
from controller.mesos.adapter import MesosAdapter, MesosConfig
from controller.mesos.backend import MesosBackend
from controller.registry import KINDS, KindDef
from controller.store import Store


class StoreFrameworkIds:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self) -> str | None:
        return self.store.get_framework_id()

    def set(self, framework_id: str) -> None:
        self.store.put_framework_id(framework_id)


def mesos_config(lm: LocalMesos) -> MesosConfig:
    return MesosConfig(master=lm.master_url, refuse_seconds=0.5, accept_refuse_seconds=0.2,
                       tick_seconds=0.05, reconnect_delay_seconds=0.2)


class Docket:
    def __init__(self, store: Store, lm: LocalMesos, *, workers: int = 2,
                 resync_seconds: float = 1.0, kinds: Sequence[KindDef] = KINDS,
                 clock: Clock | None = None) -> None:
        self.store = store
        self.lm = lm
        config = mesos_config(lm)

        def make(known: KnownTasks) -> MesosBackend:
            return MesosAdapter(config, StoreFrameworkIds(store), known)

        self.jobs = Manager(store, make, kinds=kinds, workers=workers,
                            resync_seconds=resync_seconds, clock=clock)
        self.started = False

    def start(self) -> Docket:
        self.jobs.start()
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            self.jobs.stop()
            self.started = False

    # --- as a user ---------------------------------------------------------------------------
    def put_job(self, name: str, spec: dict[str, Any] | str, namespace: str = "default") -> int:
        if isinstance(spec, dict):
            doc: str = json.dumps({"apiVersion": "docket.dev/v1", "kind": "Job",
                                   "metadata": {"name": name, "namespace": namespace},
                                   "spec": spec})
        else:
            doc = spec
        return self.store.put_raw(self.store.keys.object("jobs", namespace, name), doc.encode())

    def delete_job(self, name: str, namespace: str = "default") -> None:
        self.store.delete_object("jobs", namespace, name)

    def status(self, name: str, namespace: str = "default") -> JobStatus | None:
        found = self.store.get_status("jobs", namespace, name)
        if found is None:
            return None
        assert isinstance(found.status, JobStatus)
        return found.status

    def executions(self, name: str, namespace: str = "default") -> list[ExecutionRecord]:
        return sorted((e.record for e in self.store.list_executions("jobs", namespace, name)),
                      key=lambda r: (r.index, r.attempt))

    def wait_phase(self, name: str, *phases: str, timeout: float = 30.0,
                   namespace: str = "default") -> JobStatus:
        def check() -> JobStatus | None:
            st = self.status(name, namespace)
            return st if st is not None and st.phase in phases else None
        found: JobStatus = wait_for(
            check, timeout, lambda: f"job {name} never reached {phases}: {self.status(name)}; "
                                    f"executions {self.executions(name)}")
        return found


def wait_for(check: Callable[[], Any], timeout: float = 30.0,
             describe: Callable[[], str] = lambda: "condition", interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {describe()}")
        time.sleep(interval)


def template(command: str = "true", **extra: Any) -> dict[str, Any]:
    return {"command": command, "resources": {"cpus": 0.1, "mem": 16}, **extra}


def sim(duration: float = 0.1, exit_code: int = 0, **extra: Any) -> dict[str, Any]:
    """A template for simulated agents: nothing runs, the agent pretends."""
    return template("true", env={"DOCKET_SIM_DURATION": str(duration),
                                 "DOCKET_SIM_EXIT_CODE": str(exit_code)}, **extra)


class Process:
    """A `docket run` process, killed and started again by crash tests."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "controller.cli.main", "run"],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def controller_env(etcd_endpoint: str, prefix: str, lm: LocalMesos, **settings: str
                   ) -> dict[str, str]:
    """The environment of a `docket run` process under test: this test's etcd prefix, the
    embedded Mesos, short intervals; `settings` (DOCKET_* names) override or add."""
    return {**os.environ,
            "DOCKET_ETCD_ENDPOINTS": etcd_endpoint,
            "DOCKET_KEY_PREFIX": prefix,
            "DOCKET_MESOS_MASTER": lm.master_url,
            "DOCKET_METRICS_ADDRESS": "127.0.0.1:0",
            "DOCKET_RESYNC_SECONDS": "1",
            "DOCKET_DECLINE_REFUSE_SECONDS": "0.5",
            "DOCKET_LOG_FORMAT": "json",
            **settings}
