"""Benchmark (run by hand): Queues drained through the whole of Docket.

    .venv/bin/python tests/perf/bench_queue.py [--small 10000] [--large 100000]
        [--agents 100] [--reference-jobs 2000] [--source etcd|redis] [--keep]

A real etcd (temporary data dir), a real Redis when --source redis (a temporary redis-server),
the embedded Mesos with simulated agents in its own process (`docket local-mesos --simulate`)
and the controller in its own process (`docket run`), as in production. Two runs:
  small   --small messages, batchSize 1 (one task per message)
  large   --large messages, batchSize 100
Each: the messages are produced first (etcd: items written 100 per transaction; Redis: RPUSH),
then the Queue is written; the clock runs from that put until the Queue's status counts every
message succeeded (polled every 0.1 s). Printed as JSON, per run:
  messages_per_second, tasks_per_second   messages (batches) / seconds
  seconds                                 Queue put -> every message succeeded
  cpu_seconds                             per process over the run
and `reference.jobs_tasks_per_second`: tests/perf/bench_jobs.py run in this same invocation
(--reference-jobs Jobs, same agents and task duration), the ceiling a task-per-message queue
is held to: `ratio_to_jobs` = small.tasks_per_second / that (target: >= 0.8, issue 11).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controller.store import EtcdServer, Expect, Put, Store
from controller.store.etcd_server import free_port
from tests.perf.bench_jobs import cpu_seconds
from tests.perf.bench_localmesos import RemoteMesos

NAMESPACE = "bench"


def produce_etcd(store: Store, queue: str, count: int) -> None:
    for start in range(0, count, 100):
        ops = []
        expect = []
        for n in range(start, min(count, start + 100)):
            key = store.keys.queue_item(NAMESPACE, queue, f"m{n:08d}")
            ops.append(Put(key, f"message {n}".encode()))
            expect.append(Expect(key, 0))
        store.commit(ops, expect)


def queue_doc(name: str, source: dict[str, Any], batch: int, concurrent: int,
              duration: float) -> bytes:
    return json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "Queue",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"source": source, "batchSize": batch, "maxConcurrent": concurrent,
                 "pollIntervalSeconds": 0.5,
                 "template": {"command": "true", "resources": {"cpus": 0.1, "mem": 16},
                              "env": {"DOCKET_SIM_DURATION": str(duration)}}},
    }).encode()


def drain(store: Store, name: str, count: int, batch: int, source: dict[str, Any],
          args: argparse.Namespace, redis_url: str | None, pids: dict[str, int]) -> dict[str, Any]:
    if source["type"] == "etcd":
        produce_etcd(store, name, count)
    else:
        from controller.queues.redis_source import RedisQueue

        assert redis_url is not None
        q = RedisQueue(redis_url, source["key"])
        for start in range(0, count, 5000):
            q.push(f"message {n}" for n in range(start, min(count, start + 5000)))
        q.close()
    cpu_before = {p: cpu_seconds(pid) for p, pid in pids.items()}
    started = time.monotonic()
    store.put_raw(store.keys.object("queues", NAMESPACE, name),
                  queue_doc(name, source, batch, args.concurrent, args.duration))
    deadline = started + args.timeout
    status: Any = None
    while time.monotonic() < deadline:
        found = store.get_status("queues", NAMESPACE, name)
        status = found.status if found is not None else None
        if status is not None and status.succeeded >= count:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"{name}: not drained in {args.timeout}s: {status}")
    seconds = time.monotonic() - started
    tasks = -(-count // batch)
    return {"messages": count, "batch_size": batch, "seconds": round(seconds, 2),
            "messages_per_second": round(count / seconds, 1),
            "tasks_per_second": round(tasks / seconds, 1),
            "failed_attempts": status.failed_attempts,
            "cpu_seconds": {p: round(cpu_seconds(pid) - cpu_before[p], 2)
                            for p, pid in pids.items()}}


def reference_jobs(args: argparse.Namespace) -> float:
    """bench_jobs' tasks/s, measured now on this machine."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("bench_jobs.py")),
         "--jobs", str(args.reference_jobs), "--agents", str(args.agents),
         "--duration", str(args.duration)],
        capture_output=True, text=True, timeout=args.timeout)
    if out.returncode != 0:
        raise SystemExit(f"bench_jobs failed: {out.stderr[-2000:]}")
    return float(json.loads(out.stdout)["tasks_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=500,
                        help="the Queues' maxConcurrent")
    parser.add_argument("--duration", type=float, default=0.05)
    parser.add_argument("--source", choices=("etcd", "redis"), default="etcd")
    parser.add_argument("--reference-jobs", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    out: dict[str, Any] = {"benchmark": "queue", "source": args.source, "agents": args.agents,
                           "max_concurrent": args.concurrent}
    out["reference"] = {"jobs_tasks_per_second": reference_jobs(args)}
    tmp = Path(tempfile.mkdtemp(prefix="docket-bench-queue-"))
    etcd = EtcdServer(data_dir=tmp / "etcd")
    etcd.start()
    redis_server = None
    controller: subprocess.Popen[bytes] | None = None
    lm = None
    try:
        redis_url = None
        if args.source == "redis":
            from controller.queues.redis_server import RedisServer

            redis_server = RedisServer(data_dir=tmp / "redis")
            redis_server.start()
            redis_url = redis_server.url
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
        pids = {"controller": controller.pid, "localmesos": lm.proc.pid,
                "etcd": etcd.pid or 0}
        for label, count, batch in (("small", args.small, 1), ("large", args.large, 100)):
            source: dict[str, Any] = {"type": "etcd"}
            if args.source == "redis":
                source = {"type": "redis", "url": redis_url, "key": f"bench-{label}"}
            out[label] = drain(store, f"q-{label}", count, batch, source, args, redis_url,
                               pids)
        out["ratio_to_jobs"] = round(out["small"]["tasks_per_second"]
                                     / out["reference"]["jobs_tasks_per_second"], 2)
        print(json.dumps(out, indent=2))
    finally:
        if controller is not None:
            controller.terminate()
            controller.wait(30)
        if lm is not None:
            lm.stop()
        if redis_server is not None:
            redis_server.stop()
        etcd.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
