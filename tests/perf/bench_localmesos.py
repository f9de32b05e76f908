"""Benchmark (run by hand): the embedded Mesos' raw throughput with simulated agents.

    .venv/bin/python tests/perf/bench_localmesos.py [--agents 1000] [--tasks 10000]

The embedded Mesos runs in its own process (`docket local-mesos --simulate`, as a real master
would); a raw v1 HTTP scheduler (no controller, no etcd) accepts every offer with as many LAUNCH
operations as fit and acknowledges every update. Printed as JSON:
  launch_tasks_per_second    tasks accepted per second while offers last (the launch ceiling)
  tasks_per_second           tasks carried from launch to TASK_FINISHED per second, with all
                             STARTING/RUNNING/FINISHED updates acknowledged (bounded by this
                             Python client too, which shares the machine)
  master_cpu_seconds         CPU time the master process spent (user + system) over the run
  tasks_per_master_cpu_second  lifecycles per CPU second of the master: its ceiling with a
                             core of its own, whatever the client costs
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controller.store.etcd_server import free_port
from tests.localmesos.test_simulated_scale import run_tasks


class RemoteMesos:
    """`docket local-mesos` in a subprocess, with the one attribute run_tasks needs."""

    def __init__(self, agents: int) -> None:
        port = free_port()
        self.master_url = f"http://127.0.0.1:{port}"
        docket = str(Path(sys.executable).parent / "docket")
        self.proc = subprocess.Popen(
            [docket, "local-mesos", "--simulate", "--port", str(port), "--agents", str(agents),
             "--allocation-interval", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # the banner: the master is up

    def cpu_seconds(self) -> float:
        """User + system CPU time of the master process so far (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=0.05,
                        help="Simulated run time of each task, seconds.")
    args = parser.parse_args()
    lm = RemoteMesos(args.agents)
    try:
        cpu_before = lm.cpu_seconds()
        figures = run_tasks(lm, args.tasks, duration=args.duration,  # type: ignore[arg-type]
                            timeout=1800)
        master_cpu = lm.cpu_seconds() - cpu_before
    finally:
        lm.stop()
    launch_seconds = figures["launch_seconds"] or 1e-9
    print(json.dumps({
        "benchmark": "localmesos",
        "agents": args.agents,
        **figures,
        "launch_tasks_per_second": round(args.tasks / launch_seconds, 1),
        "master_cpu_seconds": round(master_cpu, 2),
        "tasks_per_master_cpu_second": round(args.tasks / max(master_cpu, 1e-9), 1),
    }, indent=2))


if __name__ == "__main__":
    main()
