"""The adapter with the admission policy's roles, against localmesos with real agents: the
framework becomes MULTI_ROLE by UPDATE_FRAMEWORK while subscribed (or subscribes so), a
namespace's task runs under its role as the master's `/state` shows it, a task without a role
under the configured one, and `/frameworks` lists the roles."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from controller.mesos.adapter import MemoryFrameworkIdStore, MesosAdapter
from controller.mesos.backend import LaunchRequest, Subscribed
from tests.mesos.test_adapter import Harness, poll, template, update_of, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def harness(local_mesos: Callable[..., LocalMesos]) -> Iterator[Harness]:
    h = Harness(local_mesos(agents=1, heartbeat_interval=0.3))
    yield h
    for a in h.adapters:
        a.stop()


def get(lm: LocalMesos, path: str) -> Any:
    with urllib.request.urlopen(f"{lm.master_url}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def task_roles(lm: LocalMesos) -> dict[str, str]:
    state = get(lm, "/master/state")
    return {t["id"]: t["role"] for fw in state["frameworks"]
            for t in fw["tasks"] + fw["completed_tasks"]}


def framework_roles(lm: LocalMesos, framework_id: str) -> list[str]:
    return next(list(f["roles"]) for f in get(lm, "/master/frameworks")["frameworks"]
                if f["id"] == framework_id)


def run(adapter: MesosAdapter, task_id: str, role: str | None) -> None:
    adapter.launch([LaunchRequest(task_id, template("true"), role=role)])
    wait_for(adapter, update_of(task_id, "TASK_FINISHED"))


def test_roles_set_while_subscribed_update_the_framework(harness: Harness) -> None:
    lm = harness.mesos
    adapter = harness.adapter(MemoryFrameworkIdStore(), role="batch")
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    fid = sub.framework_id
    assert framework_roles(lm, fid) == ["batch"]
    run(adapter, "job.default.before.1.0.0", None)  # single-role, as always

    adapter.set_roles(["team-a", "team-b"])
    poll(lambda: framework_roles(lm, fid) == ["batch", "team-a", "team-b"])
    info = lm.master.frameworks[fid].info
    assert "MULTI_ROLE" in {c["type"] for c in info["capabilities"]} and "role" not in info
    run(adapter, "job.team-a.a.1.0.0", "team-a")
    run(adapter, "job.other.o.1.0.0", None)
    run(adapter, "job.team-b.b.1.0.0", "team-b")
    roles = task_roles(lm)
    assert roles["job.team-a.a.1.0.0"] == "team-a"
    assert roles["job.team-b.b.1.0.0"] == "team-b"
    assert roles["job.other.o.1.0.0"] == "batch"  # no role of its own: the configured one
    assert roles["job.default.before.1.0.0"] == "batch"
    task = lm.master.all_tasks[(fid, "job.team-a.a.1.0.0")]
    assert {r["allocation_info"]["role"] for r in task.info["resources"]} == {"team-a"}

    # The driver keeps the roles for its own re-subscriptions: a new stream carries them.
    lm.master.stream_closed(lm.master.frameworks[fid].stream)  # type: ignore[arg-type]
    poll(lambda: lm.master.frameworks[fid].connected)
    assert framework_roles(lm, fid) == ["batch", "team-a", "team-b"]

    adapter.set_roles([])  # the policy names no role any more: single-role again
    poll(lambda: "role" in lm.master.frameworks[fid].info)
    assert framework_roles(lm, fid) == ["batch"]
    run(adapter, "job.team-a.after.1.0.0", None)
    assert task_roles(lm)["job.team-a.after.1.0.0"] == "batch"


def test_roles_known_before_subscribing_are_subscribed_with(harness: Harness) -> None:
    lm = harness.mesos
    adapter = MesosAdapter(_config(lm), MemoryFrameworkIdStore())
    harness.adapters.append(adapter)
    adapter.set_roles(["team-a"])  # as the policy cache does, before the adapter starts
    adapter.start()
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    # Subscribed with them, or updated to them at once (set_roles goes through the worker's
    # inbox, which the first subscription may overtake).
    deadline = time.monotonic() + 10
    while framework_roles(lm, sub.framework_id) != ["*", "team-a"]:
        assert time.monotonic() < deadline, framework_roles(lm, sub.framework_id)
        time.sleep(0.02)
    run(adapter, "job.team-a.first.1.0.0", "team-a")
    assert task_roles(lm)["job.team-a.first.1.0.0"] == "team-a"
    # A role the framework does not hold is never launched under another.
    adapter.launch([LaunchRequest("job.team-z.z.1.0.0", template("true"), role="team-z")])
    run(adapter, "job.other.o.1.0.0", None)
    assert adapter.pending_count == 1 and "job.team-z.z.1.0.0" not in task_roles(lm)
    adapter.set_roles(["team-a", "team-z"])
    wait_for(adapter, update_of("job.team-z.z.1.0.0", "TASK_FINISHED"))
    assert task_roles(lm)["job.team-z.z.1.0.0"] == "team-z"


def _config(lm: LocalMesos) -> Any:
    from controller.mesos.config import MesosConfig

    return MesosConfig(master=lm.master_url, refuse_seconds=5.0, tick_seconds=0.05)
