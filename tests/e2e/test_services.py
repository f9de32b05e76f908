"""Services end to end (docs/architecture.md §9): real etcd and the embedded Mesos, whose real
agents run the instances (`python3 -m http.server`) and their HTTP health checks, as Mesos'
command executor does. What ran, and how healthy it was, is read from the embedded Mesos
itself (its tasks and their status updates), not only from Docket's status."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.api import ServiceStatus
from controller.localmesos import LocalMesos
from controller.store import Store
from tests.e2e.harness import Docket, sim, template, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

_LIVE = {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"}


def put_service(store: Store, name: str, spec: dict[str, Any]) -> None:
    doc = {"apiVersion": "docket.dev/v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec}
    store.put_raw(store.keys.object("services", "default", name), json.dumps(doc).encode())


def service_status(store: Store, name: str) -> ServiceStatus | None:
    found = store.get_status("services", "default", name)
    if found is None:
        return None
    assert isinstance(found.status, ServiceStatus)
    return found.status


def wait_running(store: Store, name: str, healthy: int, timeout: float = 60,
                 version: str | None = None) -> ServiceStatus:
    def check() -> ServiceStatus | None:
        st = service_status(store, name)
        ok = (st is not None and st.phase == "Running" and st.healthy == healthy
              and (version is None or st.version != version))
        return st if ok else None
    found: ServiceStatus = wait_for(check, timeout,
                                    lambda: f"service {name}: {service_status(store, name)}")
    return found


def healthy_in_mesos(lm: LocalMesos, name: str) -> int:
    """Instances the master reports TASK_RUNNING whose latest health update said healthy."""
    count = 0
    for task in lm.tasks():
        if not task.task_id.startswith(f"service.default.{name}.") or task.state != \
                "TASK_RUNNING":
            continue
        health = [s.get("healthy") for s in task.statuses if "healthy" in s]
        if health and health[-1] is True:
            count += 1
    return count


def http_service(command_suffix: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "instances": 3,
        "template": template(
            "exec python3 -m http.server $PORT0 --bind 127.0.0.1" + command_suffix,
            ports=[{"name": "http"}], killGracePeriodSeconds=1, env={"RELEASE": "1"}),
        "healthCheck": {"type": "HTTP", "portName": "http", "path": "/",
                        "gracePeriodSeconds": 20, "intervalSeconds": 0.5,
                        "timeoutSeconds": 2, "maxConsecutiveFailures": 3,
                        "delaySeconds": 0},
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.34},
        "backoffSeconds": 0.5, "backoffFactor": 2,
        **extra}


def test_http_service_is_health_checked_replaced_rolled_out_and_deleted(
        store: Store, local_mesos: Callable[..., LocalMesos], tmp_path: Path) -> None:
    lm = local_mesos(work_dir=tmp_path / "mesos")
    failures_before = REGISTRY.get_sample_value(
        "docket_service_health_check_failures_total") or 0
    d = Docket(store, lm, resync_seconds=300).start()
    try:
        spec = http_service()
        put_service(store, "web", spec)
        status = wait_running(store, "web", 3)
        assert len(status.endpoints) == 3 and status.condition("Available") is not None
        for endpoint in status.endpoints:
            port = endpoint.ports["http"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                assert resp.status == 200
        assert healthy_in_mesos(lm, "web") == 3

        # An instance's process killed by hand is replaced in its slot.
        victim = next(t for t in lm.tasks() if t.task_id.endswith(".1.0"))
        assert victim.executor_pid is not None
        os.kill(victim.executor_pid, signal.SIGKILL)
        wait_for(lambda: any(t.task_id.endswith(".1.1") and t.state == "TASK_RUNNING"
                             for t in lm.tasks()), 60, lambda: f"{service_status(store, 'web')}")
        status = wait_running(store, "web", 3)
        old_version = status.version

        # A new environment rolls out; healthy instances never drop below 3, and never more
        # than 4 run, as the master sees them.
        spec["template"]["env"] = {"RELEASE": "2"}
        put_service(store, "web", spec)
        samples: list[tuple[int, int]] = []

        def rolled_out() -> bool:
            live = sum(1 for t in lm.tasks() if t.task_id.startswith("service.default.web.")
                       and t.state in _LIVE)
            samples.append((healthy_in_mesos(lm, "web"), live))
            st = service_status(store, "web")
            return (st is not None and st.version != old_version and st.phase == "Running"
                    and st.updated == 3 and st.healthy == 3)
        wait_for(rolled_out, 90, lambda: f"{service_status(store, 'web')}", interval=0.02)
        assert min(h for h, _ in samples) >= 3, samples
        assert max(n for _, n in samples) <= 4, samples

        # A health path that answers 404: the new instances are killed by their health
        # checks and relaunched with a growing delay; the old ones stay (the floor).
        spec["healthCheck"]["path"] = "/missing"
        spec["healthCheck"]["gracePeriodSeconds"] = 0
        put_service(store, "web", spec)

        def backing_off() -> ServiceStatus | None:
            st = service_status(store, "web")
            return st if st is not None and st.consecutive_failures >= 3 else None
        st = wait_for(backing_off, 90, lambda: f"{service_status(store, 'web')}")
        assert st.backoff_delay_seconds >= 2.0
        assert st.healthy >= 3 and st.phase == "Deploying"
        killed_by_check = [t for t in lm.tasks() if t.state == "TASK_KILLED"
                           and any(s.get("healthy") is False for s in t.statuses)]
        assert killed_by_check
        # The controller's metrics saw them too.
        assert (REGISTRY.get_sample_value("docket_service_health_check_failures_total")
                or 0) >= failures_before + 3
        assert (REGISTRY.get_sample_value("docket_service_restarts_total",
                                          {"reason": "unhealthy"}) or 0) >= 1

        # Deleting the Service kills every instance.
        store.delete_object("services", "default", "web")
        wait_for(lambda: not any(t.state in _LIVE for t in lm.tasks()), 60,
                 lambda: f"{[(t.task_id, t.state) for t in lm.tasks()]}")
        wait_for(lambda: service_status(store, "web") is None, 30)
    finally:
        d.stop()


def test_instances_of_a_removed_agent_are_replaced(
        store: Store, local_mesos: Callable[..., LocalMesos]) -> None:
    lm = local_mesos(simulate=True, agents=2, cpus=1.0)
    d = Docket(store, lm, resync_seconds=300).start()
    try:
        put_service(store, "sim", {"instances": 4, "template": sim(3600)})
        status = wait_running(store, "sim", 4)
        by_id = {t.task_id: t for t in lm.tasks()}
        agent_id = by_id[status.endpoints[0].task_id].agent_id
        doomed = {t.task_id for t in lm.tasks() if t.agent_id == agent_id}
        lm.remove_agent(agent_id)

        def replaced() -> bool:
            st = service_status(store, "sim")
            return (st is not None and st.healthy == 4
                    and not {e.task_id for e in st.endpoints} & doomed)
        wait_for(replaced, 60, lambda: f"{service_status(store, 'sim')}")
    finally:
        d.stop()


def test_sigkill_during_a_rollout_resumes_it_without_a_duplicate_instance(
        store: Store, local_mesos: Callable[..., LocalMesos], etcd_server: Any,
        etcd_prefix: str, tmp_path: Path) -> None:
    import random
    from collections import Counter

    from controller.localmesos.agents import task_env
    from tests.e2e.harness import Process, controller_env

    lm = local_mesos(simulate=True, agents=2)
    env = controller_env(etcd_server.endpoint, etcd_prefix, lm,
                         DOCKET_LEADER_LEASE_SECONDS="2")
    log = tmp_path / "controller.log"
    proc = Process(env, log)
    proc.start()
    spec: dict[str, Any] = {
        "instances": 6,
        "template": template("true", env={"DOCKET_SIM_DURATION": "3600", "RELEASE": "1"}),
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5}}
    try:
        put_service(store, "api", spec)
        first = wait_running(store, "api", 6)
        spec["template"] = template("true", env={"DOCKET_SIM_DURATION": "3600",
                                                 "RELEASE": "2"})
        put_service(store, "api", spec)
        rng = random.Random(20261129)

        def new_launched() -> int:
            return sum(1 for t in lm.tasks()
                       if task_env(t.info).get("DOCKET_SERVICE_VERSION") not in
                       (None, first.version))
        for kill in range(2):
            target = min(6, new_launched() + rng.randint(1, 2))
            wait_for(lambda target=target: new_launched() >= target, 60,
                     lambda kill=kill: f"no progress before kill {kill}: "
                                       + log.read_text()[-2000:])
            proc.kill()
            proc.start()
        final = wait_running(store, "api", 6, timeout=90, version=first.version)
        per_slot = Counter(
            (t.task_id.split(".")[4], task_env(t.info).get("DOCKET_SERVICE_VERSION"))
            for t in lm.tasks())
        assert all(n == 1 for n in per_slot.values()), per_slot
        live = [t for t in lm.tasks() if t.state == "TASK_RUNNING"]
        assert len(live) == 6
        assert {task_env(t.info).get("DOCKET_SERVICE_VERSION") for t in live} == \
            {final.version}
    finally:
        proc.cleanup()
