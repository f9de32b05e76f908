"""Benchmark (run by hand): one Service of N instances through the whole of Docket.

    .venv/bin/python tests/perf/bench_services.py [--instances 1000] [--agents 100]
        [--min-health 0.9] [--keep]

A real etcd (temporary data dir), the embedded Mesos with simulated agents in its own process
(`docket local-mesos --simulate`) and the controller in its own process (`docket run`), as in
production. The Service's instances are simulated tasks that run until killed. Printed as JSON:
  to_running_seconds      Service put -> status Running with N healthy instances
  rollout_seconds         new template put -> status Running again, every instance of the
                          new version, with upgradeStrategy minimumHealthCapacity --min-health
                          and maximumOverCapacity --max-over
  rollout_min_healthy     the fewest healthy instances the status showed during the rollout
                          (sampled every 0.1 s; the floor is ceil(N x min-health))
  launches_per_second     N / to_running_seconds, and 2N / (to_running + rollout) overall
  reference.mesos_launch_tasks_per_second   a raw scheduler launching N simulated tasks on
                          the same kind of master, measured in this same run
  cpu_seconds             per process over each phase
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controller.store import EtcdServer, Store
from controller.store.etcd_server import free_port
from tests.localmesos.test_simulated_scale import run_tasks
from tests.perf.bench_jobs import cpu_seconds
from tests.perf.bench_localmesos import RemoteMesos

NAMESPACE = "bench"


def service_doc(instances: int, release: str, min_health: float, max_over: float) -> bytes:
    return json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "Service",
        "metadata": {"name": "svc", "namespace": NAMESPACE},
        "spec": {"instances": instances,
                 "upgradeStrategy": {"minimumHealthCapacity": min_health,
                                     "maximumOverCapacity": max_over},
                 "template": {"command": "true", "resources": {"cpus": 0.1, "mem": 16},
                              "killGracePeriodSeconds": 0,
                              "env": {"DOCKET_SIM_DURATION": "86400", "RELEASE": release}}},
    }).encode()


def wait_phase(store: Store, args: argparse.Namespace, version: str | None,
               samples: list[int]) -> Any:
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        found = store.get_status("services", NAMESPACE, "svc")
        status = found.status if found is not None else None
        if status is not None:
            samples.append(status.healthy)
            if (status.phase == "Running" and status.healthy == args.instances
                    and status.updated == args.instances
                    and (version is None or status.version != version)):
                return status
        time.sleep(0.1)
    raise SystemExit(f"not Running in {args.timeout}s: {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--min-health", type=float, default=0.9)
    parser.add_argument("--max-over", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    out: dict[str, Any] = {"benchmark": "services", "instances": args.instances,
                           "agents": args.agents, "min_health": args.min_health,
                           "max_over": args.max_over}
    reference = RemoteMesos(args.agents)
    try:
        raw = run_tasks(reference, args.instances, duration=0.05,  # type: ignore[arg-type]
                        timeout=600)
    finally:
        reference.stop()
    out["reference"] = {"mesos_launch_tasks_per_second":
                        round(raw["tasks"] / (raw["launch_seconds"] or 1e-9), 1)}
    tmp = Path(tempfile.mkdtemp(prefix="docket-bench-services-"))
    etcd = EtcdServer(data_dir=tmp / "etcd")
    etcd.start()
    controller: subprocess.Popen[bytes] | None = None
    lm = None
    try:
        store = Store(etcd.endpoint, prefix="/docket")
        lm = RemoteMesos(args.agents)
        env = {**os.environ, "DOCKET_ETCD_ENDPOINTS": etcd.endpoint,
               "DOCKET_MESOS_MASTER": lm.master_url,
               "DOCKET_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
               "DOCKET_LOG_LEVEL": args.log_level, "DOCKET_LOG_FORMAT": "json",
               "DOCKET_DECLINE_REFUSE_SECONDS": "1"}
        log = (tmp / "controller.log").open("wb")
        controller = subprocess.Popen([sys.executable, "-m", "controller.cli.main", "run"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while store.get_framework_id() is None:
            if time.monotonic() > deadline or controller.poll() is not None:
                raise SystemExit("controller did not start; see " + str(tmp / "controller.log"))
            time.sleep(0.1)
        pids = {"controller": controller.pid, "localmesos": lm.proc.pid, "etcd": etcd.pid or 0}
        key = store.keys.object("services", NAMESPACE, "svc")

        cpu = {p: cpu_seconds(pid) for p, pid in pids.items()}
        start = time.monotonic()
        store.put_raw(key, service_doc(args.instances, "1", args.min_health, args.max_over))
        first = wait_phase(store, args, None, [])
        to_running = time.monotonic() - start
        out["to_running_seconds"] = round(to_running, 2)
        out["cpu_seconds_to_running"] = {p: round(cpu_seconds(pid) - cpu[p], 2)
                                         for p, pid in pids.items()}

        cpu = {p: cpu_seconds(pid) for p, pid in pids.items()}
        samples: list[int] = []
        start = time.monotonic()
        store.put_raw(key, service_doc(args.instances, "2", args.min_health, args.max_over))
        wait_phase(store, args, first.version, samples)
        rollout = time.monotonic() - start
        out["rollout_seconds"] = round(rollout, 2)
        out["rollout_min_healthy"] = min(samples) if samples else None
        out["rollout_floor"] = math.ceil(args.instances * args.min_health)
        out["cpu_seconds_rollout"] = {p: round(cpu_seconds(pid) - cpu[p], 2)
                                      for p, pid in pids.items()}
        out["launches_per_second"] = {
            "to_running": round(args.instances / to_running, 1),
            "overall": round(2 * args.instances / (to_running + rollout), 1)}
        print(json.dumps(out, indent=2))
    finally:
        if controller is not None:
            controller.terminate()
            controller.wait(30)
        if lm is not None:
            lm.stop()
        etcd.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
