"""The embedded Mesos driven by pymesos' MesosSchedulerDriver, the client Docket uses."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from typing import Any

import pytest

from controller.localmesos import LocalMesos

pytestmark = pytest.mark.integration

Start = Callable[..., LocalMesos]


class Recorder:
    """A pymesos Scheduler that launches one command and records what happens."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.launched = False
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.seen: list[tuple[str, Any]] = []

    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        self.events.put(("registered", framework_id["value"]))

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self.events.put(("reregistered", None))

    def disconnected(self, driver: Any) -> None:
        self.events.put(("disconnected", None))

    def processHeartBeat(self, driver: Any) -> None:
        self.events.put(("heartbeat", None))

    def resourceOffers(self, driver: Any, offers: list[Any]) -> None:
        for offer in offers:
            if self.launched:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60})
                continue
            self.launched = True
            task = {
                "name": "hello", "task_id": {"value": "hello"},
                "agent_id": offer["agent_id"],
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
                "command": {"value": self.command},
            }
            driver.launchTasks(offer["id"], [task])

    def statusUpdate(self, driver: Any, update: Any) -> None:
        self.events.put(("update", dict(update)))
        driver.acknowledgeStatusUpdate(update)

    def offerRescinded(self, driver: Any, offer_id: Any) -> None:
        pass

    def error(self, driver: Any, message: str) -> None:
        self.events.put(("error", message))

    def wait(self, kind: str, timeout: float = 15,
             pred: Callable[[Any], bool] = lambda _: True) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.events.get(timeout=0.1))
            for got, value in self.seen:
                if got == kind and pred(value):
                    return value
        raise AssertionError(f"pymesos never reported {kind}")


def test_pymesos_subscribes_launches_and_hears_heartbeats(local_mesos: Start) -> None:
    from pymesos import MesosSchedulerDriver

    lm = local_mesos(heartbeat_interval=0.3)
    sched = Recorder("echo hello")
    framework = {"user": "tester", "name": "pymesos-test", "failover_timeout": 60,
                 "capabilities": [{"type": "PARTITION_AWARE"}]}
    driver = MesosSchedulerDriver(sched, framework, lm.address, use_addict=False,
                                  implicit_acknowledgements=False)
    driver.start()
    try:
        fid = sched.wait("registered")
        assert fid.endswith("-0000")
        sched.wait("heartbeat", timeout=5)
        done = sched.wait("update", pred=lambda u: u["state"] == "TASK_FINISHED")
        assert done["message"] == "Command exited with status 0"
        with lm.master.lock:
            task = lm.master.all_tasks[(fid, "hello")]
            assert not task.pending, "every update was acknowledged by pymesos"
    finally:
        driver.stop(failover=True)
        driver.join()
    assert lm.frameworks() == [fid], "stop(failover=True) keeps the framework registered"


def test_pymesos_failed_task(local_mesos: Start) -> None:
    from pymesos import MesosSchedulerDriver

    lm = local_mesos()
    sched = Recorder("exit 7")
    driver = MesosSchedulerDriver(sched, {"user": "tester", "name": "t"}, lm.address,
                                  use_addict=False, implicit_acknowledgements=False)
    driver.start()
    try:
        failed = sched.wait("update", pred=lambda u: u["state"] == "TASK_FAILED")
        assert failed["message"] == "Command exited with status 7"
    finally:
        driver.stop(failover=True)
        driver.join()


def test_readme_pymesos_example_runs(local_mesos: Start) -> None:
    import subprocess
    import sys
    from pathlib import Path

    lm = local_mesos()
    example = Path(__file__).resolve().parents[2] / "deploy/examples/pymesos_hello.py"
    out = subprocess.run([sys.executable, str(example), lm.address], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "hello TASK_FINISHED Command exited with status 0" in out.stdout
