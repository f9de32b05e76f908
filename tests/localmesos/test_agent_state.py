"""A real agent's `/state`, and the way Mesos tools use it to find a task's sandbox: from the
master's `/state` alone to the agent's address, from the agent's `/state` to the executor's
`directory` (live under `frameworks[].executors[]`, then under
`completed_frameworks[].completed_executors[]`), and from there to `/files/read` of its
`stdout` on the agent. Shapes follow Mesos 1.11's src/slave/http.cpp."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from controller.localmesos.agents import (
    MAX_COMPLETED_FRAMEWORKS,
    AgentFramework,
    ExecutorRun,
    RealRuntime,
)
from controller.localmesos.master import Master, Task
from controller.localmesos.resources import Resources
from controller.localmesos.state_json import agent_state
from tests.localmesos.scheduler import RawScheduler, task_info

Start = Callable[..., LocalMesos]

# The task prints, then waits for the test to let it finish, so it is seen while running.
HELLO = "echo hello; while [ ! -e release ]; do sleep 0.05; done"


@pytest.fixture
def scheduler() -> Iterator[Callable[[LocalMesos], RawScheduler]]:
    made: list[RawScheduler] = []

    def connect(lm: LocalMesos) -> RawScheduler:
        s = RawScheduler(lm.master_url)
        made.append(s)
        assert s.subscribe()["type"] == "SUBSCRIBED"
        return s

    yield connect
    for s in made:
        s.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def agent_address(master_url: str, agent_id: str) -> str:
    """host:port of an agent, as a tool finds it: from the master's /state only."""
    slave = next(s for s in get_json(master_url + "/state")["slaves"] if s["id"] == agent_id)
    name, _, address = slave["pid"].partition("@")
    assert name == "slave(1)" and address.endswith(f":{slave['port']}")
    return address


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.05)


def executors(state: dict[str, Any], *, completed: bool) -> list[tuple[str, dict[str, Any]]]:
    """(framework id, executor) pairs: live ones, or the completed ones wherever they are."""
    if not completed:
        return [(f["id"], e) for f in state["frameworks"] for e in f["executors"]]
    return [(f["id"], e) for f in state["frameworks"] + state["completed_frameworks"]
            for e in f["completed_executors"]]


def read_file(address: str, path: str) -> str:
    query = urllib.parse.urlencode({"path": path, "offset": 0})
    return str(get_json(f"http://{address}/files/read?{query}")["data"])


@pytest.mark.integration
def test_a_task_sandbox_is_found_from_the_master_state_alone(
        local_mesos: Start, scheduler: Callable[[LocalMesos], RawScheduler]) -> None:
    lm = local_mesos()
    s = scheduler(lm)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "hello", HELLO))
    s.wait_update("hello", "TASK_RUNNING")
    address = agent_address(lm.master_url, offer["agent_id"]["value"])

    state = get_json(f"http://{address}/state")
    assert state["id"] == offer["agent_id"]["value"]
    assert state["pid"] == f"slave(1)@{address}" and state["hostname"] == offer["hostname"]
    assert state["resources"]["cpus"] == 4 and state["resources"]["ports"] == "[31000-32000]"
    assert state["completed_frameworks"] == []
    [(fid, live)] = executors(state, completed=False)
    assert fid == s.framework_id
    assert (live["id"], live["source"]) == ("hello", "hello")
    assert live["name"] == "Command Executor (Task: hello) (Command: sh -c 'echo hello; ...')"
    assert [t["id"] for t in live["tasks"]] == ["hello"] and live["completed_tasks"] == []
    assert live["tasks"][0]["state"] == "TASK_RUNNING"
    assert live["queued_tasks"] == []
    # The command executor's allowance (0.1 cpus, 32 MB) on top of the task's resources.
    assert (live["resources"]["cpus"], live["resources"]["mem"]) == (0.2, 64)
    directory = live["directory"]
    assert directory.endswith(f"/frameworks/{fid}/executors/hello/runs/{live['container']}")
    assert wait_for("stdout while running",
                    lambda: read_file(address, directory + "/stdout")) == "hello\n"

    Path(directory, "release").touch()
    finished = s.wait_update("hello", "TASK_FINISHED", ack=False)
    # Until its terminal update is acknowledged, the agent keeps the executor among the
    # live ones, with the task among its completed tasks (Mesos' terminated tasks).
    [(_, live)] = executors(get_json(f"http://{address}/state"), completed=False)
    assert live["tasks"] == [] and [t["state"] for t in live["completed_tasks"]] == [
        "TASK_FINISHED"]
    s.ack(finished)
    done = wait_for("a completed executor",
                    lambda: executors(get_json(f"http://{address}/state"), completed=True))
    [(fid, completed)] = done
    assert fid == s.framework_id
    assert completed["directory"] == directory and completed["tasks"] == []
    assert [t["state"] for t in completed["completed_tasks"]] == ["TASK_FINISHED"]
    assert [st["state"] for st in completed["completed_tasks"][0]["statuses"]] == [
        "TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    state = get_json(f"http://{address}/state")
    # Its only executor completed, the framework has completed on this agent too.
    assert state["frameworks"] == [] and [f["id"] for f in state["completed_frameworks"]] == [
        s.framework_id]
    assert read_file(address, directory + "/stdout") == "hello\n"


@pytest.mark.integration
def test_the_agent_state_is_also_served_as_slave_1_state(
        local_mesos: Start, scheduler: Callable[[LocalMesos], RawScheduler]) -> None:
    lm = local_mesos()
    s = scheduler(lm)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "quick", "echo quick"))
    s.wait_update("quick", "TASK_FINISHED")
    address = agent_address(lm.master_url, offer["agent_id"]["value"])
    wait_for("a completed executor",
             lambda: executors(get_json(f"http://{address}/state"), completed=True))
    assert get_json(f"http://{address}/slave(1)/state") == get_json(f"http://{address}/state")


@pytest.mark.integration
def test_a_task_id_run_again_has_a_new_sandbox_and_latest_follows_it(
        local_mesos: Start, scheduler: Callable[[LocalMesos], RawScheduler]) -> None:
    lm = local_mesos()
    s = scheduler(lm)
    address = ""
    for word in ("first", "second"):
        offer = s.wait_offers()[0]
        s.launch(offer, task_info(offer, "again", f"echo {word}"))
        s.wait_update("again", "TASK_FINISHED")
        address = agent_address(lm.master_url, offer["agent_id"]["value"])

    def completed_runs() -> list[dict[str, Any]]:
        runs = executors(get_json(f"http://{address}/state"), completed=True)
        return [e for _, e in runs] if len(runs) == 2 else []

    runs = wait_for("two completed runs", completed_runs)
    assert len({e["directory"] for e in runs}) == 2
    assert [read_file(address, e["directory"] + "/stdout") for e in runs] == [
        "first\n", "second\n"]
    virtual = f"/frameworks/{s.framework_id}/executors/again/runs/latest/stdout"
    assert read_file(address, virtual) == "second\n"
    assert read_file(address, runs[1]["directory"].rsplit("/", 1)[0] + "/latest/stdout") == \
        "second\n"


@pytest.mark.integration
def test_files_outside_a_sandbox_are_not_served(
        local_mesos: Start, scheduler: Callable[[LocalMesos], RawScheduler]) -> None:
    lm = local_mesos()
    s = scheduler(lm)
    offer = s.wait_offers()[0]
    s.launch(offer, task_info(offer, "t", "echo t"))
    s.wait_update("t", "TASK_FINISHED")
    address = agent_address(lm.master_url, offer["agent_id"]["value"])
    [(_, run)] = wait_for("a completed executor", lambda: executors(
        get_json(f"http://{address}/state"), completed=True))
    for path in (run["directory"] + "/.." * 20 + "/etc/passwd",
                 f"{lm.work_dir}/slaves", "/etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as err:
            read_file(address, path)
        assert err.value.code == 404, path


def test_only_the_most_recent_completed_frameworks_are_remembered() -> None:
    runtime = RealRuntime(master=None, work_dir=Path("/nonexistent"))  # type: ignore[arg-type]
    for i in range(MAX_COMPLETED_FRAMEWORKS + 2):
        runtime.frameworks[f"fw-{i}"] = AgentFramework({"name": str(i)})
        runtime.sweep(())
    assert list(runtime.frameworks) == [f"fw-{i}" for i in range(2, MAX_COMPLETED_FRAMEWORKS + 2)]


def test_a_task_the_executor_has_not_started_is_queued() -> None:
    master = Master()
    try:
        runtime = RealRuntime(master, Path("/work"))
        agent = master.add_agent(hostname="a1", port=5051, resources=Resources.of(cpus=1),
                                 attributes=[], runtime=runtime)
        runtime.agent_id = agent.agent_id
        task = Task("t1", "t1", "fw", agent.agent_id, Resources.of(cpus=0.5, mem=64),
                    {"command": {"value": "echo hi", "shell": True}}, "*")
        agent.tasks[("fw", "t1")] = task
        runtime.frameworks["fw"] = AgentFramework(
            {"name": "f", "user": "u"}, executors={"t1": ExecutorRun(task, Path("/work/x"))})
        with master.lock:
            state = agent_state(master, agent, runtime)
        [framework] = state["frameworks"]
        [executor] = framework["executors"]
        assert executor["tasks"] == [] and executor["completed_tasks"] == []
        assert executor["queued_tasks"] == [{
            "id": "t1", "name": "t1", "slave_id": agent.agent_id,
            "resources": {"cpus": 0.5, "mem": 64, "disk": 0, "gpus": 0}, "role": "*",
            "command": {"shell": True, "value": "echo hi", "argv": [], "uris": []}}]
        assert (executor["resources"]["cpus"], executor["resources"]["mem"]) == (0.6, 96)
    finally:
        master.stop()
