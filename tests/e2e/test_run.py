"""`run_controller`, the process entry point of `docket run` and `docket up`: readiness
reflects etcd, Mesos and the cache; metrics are served; a stop is a clean return 0 that leaves
the framework registered (failover, not teardown)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from controller.config import load_settings
from controller.localmesos import LocalMesos
from controller.manager import run_controller
from controller.store import EtcdServer, Store
from tests.e2e.harness import Docket, sim, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_run_controller_serves_readiness_and_metrics_and_stops_cleanly(
        local_mesos: Callable[..., LocalMesos], etcd_server: EtcdServer, etcd_prefix: str,
        store: Store) -> None:
    lm = local_mesos(simulate=True)
    settings = load_settings({"etcd_endpoints": etcd_server.endpoint,
                              "key_prefix": etcd_prefix, "mesos_master": lm.master_url,
                              "metrics_address": "127.0.0.1:0", "resync_seconds": "1",
                              "log_format": "json"}, env={})
    stop = threading.Event()
    port: list[int] = []
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_controller(
        settings, stop, on_ready=lambda _jobs, p: port.append(p))), daemon=True)
    thread.start()
    wait_for(lambda: port, 10)
    base = f"http://127.0.0.1:{port[0]}"
    code, body = wait_for(lambda: (r := _get(base + "/readyz"))[0] == 200 and r, 15,
                          lambda: str(_get(base + "/readyz")))
    for check in ("etcd", "leader", "mesos", "caches"):
        assert f"[+]{check} ok" in body, body
    Docket(store, lm).put_job("hello", {"template": sim(duration=0.1)})
    wait_for(lambda: (s := store.get_status("jobs", "default", "hello")) is not None
             and s.status.phase == "Succeeded", 15)
    code, metrics = _get(base + "/metrics")
    assert code == 200
    assert 'docket_tasks_finished_total{reason="succeeded"}' in metrics
    assert "docket_reconcile_total" in metrics
    stop.set()
    thread.join(15)
    assert result == [0]
    assert lm.frameworks() == [store.get_framework_id()], "framework must survive a stop"


def test_a_second_controller_stands_by_until_the_leader_stops(
        local_mesos: Callable[..., LocalMesos], etcd_server: EtcdServer, etcd_prefix: str,
        store: Store) -> None:
    lm = local_mesos(simulate=True)
    settings = load_settings({"etcd_endpoints": etcd_server.endpoint,
                              "key_prefix": etcd_prefix, "mesos_master": lm.master_url,
                              "metrics_address": "127.0.0.1:0", "resync_seconds": "1",
                              "log_format": "json"}, env={})
    stops = [threading.Event(), threading.Event()]
    ready: list[int] = []
    threads = [threading.Thread(target=run_controller, args=(settings, stop), daemon=True,
                                kwargs={"on_ready": lambda _j, _p, i=i: ready.append(i),
                                        "lease_ttl": 3})
               for i, stop in enumerate(stops)]
    try:
        threads[0].start()
        wait_for(lambda: ready == [0], 15)
        threads[1].start()
        user = Docket(store, lm)
        user.put_job("one", {"template": sim(duration=0.1)})
        assert user.wait_phase("one", "Succeeded").succeeded == 1
        assert ready == [0], "the standby must not act while the leader holds the lease"
        stops[0].set()
        threads[0].join(15)
        wait_for(lambda: ready == [0, 1], 15, lambda: f"ready: {ready}")
        user.put_job("two", {"template": sim(duration=0.1)})
        assert user.wait_phase("two", "Succeeded").succeeded == 1
        # One framework throughout: the successor re-subscribed with the persisted id.
        assert lm.frameworks() == [store.get_framework_id()]
    finally:
        for stop in stops:
            stop.set()
        for t in threads:
            if t.is_alive():
                t.join(15)


def test_docket_run_rejects_a_bad_setting_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli.main import main

    assert main(["run", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "workers" in err and "--workers" in err
