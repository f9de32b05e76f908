"""Benchmark (run by hand): N one-off Jobs through the whole of Docket.

    .venv/bin/python tests/perf/bench_jobs.py [--jobs 10000] [--agents 100] [--throttle N]

A real etcd (temporary data dir), the embedded Mesos with simulated agents in its own process
(`docket local-mesos --simulate`) and the controller in its own process (`docket run`), as in
production. The benchmark writes N Job specs into etcd as users do (one put each, from a few
threads) and watches their status keys. Printed as JSON:
  tasks_per_second            N / (last Succeeded status seen - first spec put)
  latency_running_p50/p99     spec put -> TASK_RUNNING (the record's started_at, Mesos' time)
  stages_p50_p99              where that latency goes: spec put -> intent written (submitted_at)
                              -> TASK_RUNNING -> TASK_FINISHED -> status completionTime ->
                              Succeeded status seen by the benchmark's watch
  etcd_writes_per_task        keys the controller wrote (etcd's own put count, less the specs),
                              per task; several may travel in one request (group commit)
  ceiling.etcd_puts_per_second        raw sequential puts of ~400-byte values, same client
  ceiling.mesos_tasks_per_second      tasks carried launch -> FINISHED by a raw scheduler
                                      (tests/perf/bench_localmesos.py's measurement)
  ratio_to_ceiling            tasks_per_second / min(both ceilings)
  etcd_requests_per_task      gRPC requests etcd handled by method, per task (the specs are
                              Put requests, as etcdctl makes them; the controller's are Txn)
  cpu_ms_per_task             CPU time (user + system) each process spent over the Jobs run,
                              per task: where the machine's two cores go

With `--throttle N` a policy (`<prefix>/policy`) puts every Job under one throttle of N live
tasks (issue 16), so the offer rounds run the throttle gate over the whole backlog: compare
cpu_ms_per_task.controller and the rate with a run without it (the rate is then bounded by
N / task duration, so give N well above what the run reaches to see the check's cost alone,
or a small N to see it hold). Printed beside the rest:
  peak_running                the most tasks live at once, from the execution records'
                              TASK_RUNNING and end times (Mesos' clock): at most N when throttled
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controller.store import EtcdServer, Store
from controller.store.etcd_server import free_port
from tests.localmesos.test_simulated_scale import run_tasks
from tests.perf.bench_localmesos import RemoteMesos


def job_doc(name: str, duration: float) -> bytes:
    return json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"template": {"command": "true", "resources": {"cpus": 0.1, "mem": 16},
                              "env": {"DOCKET_SIM_DURATION": str(duration)}}},
    }).encode()


def throttle_policy(limit: int) -> bytes:
    """A policy with one throttle over every Job (the shape of controller/api/policy.py)."""
    return json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "Policy",
        "spec": {"throttles": [{"name": "all", "match": {"kinds": ["Job"]},
                                "maxRunning": limit}]},
    }).encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_specs(conn: Any, endpoint: str, prefix: str, names: list[str], duration: float,
                writers: int) -> None:
    """In a process of its own: once told to go, put one Job spec per name (one Put request
    each, as etcdctl makes it) from `writers` threads; send back when each was put, as
    ({name: time.time()}, {name: time.monotonic()}) (the monotonic clock is system-wide)."""
    from pyetcd.client import Endpoint, MultiEndpointEtcd3Client

    host, port = endpoint.rsplit(":", 1)
    client = MultiEndpointEtcd3Client(endpoints=[Endpoint(host, int(port), secure=False)],
                                      timeout=10)
    docs = {name: job_doc(name, duration) for name in names}
    wall: dict[str, float] = {}
    mono: dict[str, float] = {}

    def writer(part: list[str]) -> None:
        for name in part:
            wall[name] = time.time()
            mono[name] = time.monotonic()
            client.put(prefix + name, docs[name])

    conn.send("ready")
    conn.recv()
    threads = [threading.Thread(target=writer, args=(names[i::writers],))
               for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.send((wall, mono))
    client.close()


def etcd_put_rate(store: Store, count: int = 2000) -> float:
    value = b"x" * 400
    start = time.perf_counter()
    for i in range(count):
        store.client.raw.put(f"/bench-raw/{i}", value)
    return count / (time.perf_counter() - start)


def scrape(port: int) -> dict[str, float]:
    """The controller's /metrics as {series: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


TIMELINE = {"queue": 'docket_workqueue_depth{name="Job"}',
            "pending_launches": "docket_mesos_pending_launches",
            "updates_pending": "docket_mesos_updates_pending",
            "acks_pending": "docket_mesos_acknowledgements_pending",
            "staging": 'docket_tasks_active{state="staging"}',
            "starting": 'docket_tasks_active{state="starting"}',
            "running": 'docket_tasks_active{state="running"}',
            "finished": 'docket_tasks_finished_total{reason="TASK_FINISHED"}'}


def sample_timeline(port: int, stop: threading.Event, rows: list[dict[str, float]]) -> None:
    """Every half second, where the Jobs are (--timeline): which stage holds the backlog."""
    start = time.monotonic()
    while not stop.wait(0.5):
        try:
            values = scrape(port)
        except OSError:
            continue
        rows.append({"t": round(time.monotonic() - start, 1),
                     **{k: values.get(v, -1.0) for k, v in TIMELINE.items()}})


def controller_figures(port: int) -> dict[str, float]:
    """Means of the controller's own histograms, to see where time goes."""
    values = scrape(port)
    out: dict[str, float] = {}
    for metric, label in (("docket_reconcile_duration_seconds", 'kind="Job"'),
                          ("docket_workqueue_queue_duration_seconds", 'name="Job"'),
                          ("docket_etcd_request_duration_seconds", 'operation="txn"')):
        count = values.get(f"{metric}_count{{{label}}}", 0.0)
        total = values.get(f"{metric}_sum{{{label}}}", 0.0)
        short = metric.removeprefix("docket_").removesuffix("_seconds")
        out[f"{short}_count"] = count
        out[f"{short}_mean_ms"] = round(1000 * total / count, 2) if count else 0.0
    for operation in ("get", "list"):
        out[f"etcd_{operation}_count"] = values.get(
            f'docket_etcd_request_duration_seconds_count{{operation="{operation}"}}', 0.0)
    batches = values.get("docket_etcd_commit_batch_size_count", 0.0)
    out["etcd_commit_batch_mean"] = round(
        values.get("docket_etcd_commit_batch_size_sum", 0.0) / batches, 2) if batches else 0.0
    return out


def etcd_requests(endpoint: str) -> dict[str, float]:
    """etcd's own count of handled gRPC requests by method, and of keys written
    ("keys_written"), from its /metrics."""
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{"):
            labels, value = line[len("grpc_server_handled_total{"):].rsplit("} ", 1)
            fields = dict(part.split("=", 1) for part in labels.split(","))
            method = fields["grpc_method"].strip('"')
            out[method] = out.get(method, 0.0) + float(value)
        elif line.startswith("etcd_mvcc_put_total "):
            out["keys_written"] = float(line.split()[1])
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--duration", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=4,
                        help="controller workers (docket run's default)")
    parser.add_argument("--writers", type=int, default=4, help="threads putting specs")
    parser.add_argument("--ceiling-tasks", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--log-level", default="warning",
                        help="the controller's (its log is in the temporary dir: --keep)")
    parser.add_argument("--timeline", action="store_true",
                        help="print the controller's queues every half second to stderr")
    parser.add_argument("--throttle", type=int, default=None, metavar="N",
                        help="put every Job under one throttle of N live tasks (issue 16)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary dir (etcd data, controller log) afterwards")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="docket-bench-"))
    etcd = EtcdServer(data_dir=tmp / "etcd")
    etcd.start()
    out: dict[str, Any] = {"benchmark": "jobs", "jobs": args.jobs, "agents": args.agents,
                           "throttle": args.throttle}
    controller: subprocess.Popen[bytes] | None = None
    lm = None
    store: Store | None = None
    try:
        store = Store(etcd.endpoint, prefix="/docket")
        # Ceilings, measured on this machine in this run.
        etcd_rate = etcd_put_rate(store)
        ceiling_mesos = RemoteMesos(args.agents)
        try:
            raw = run_tasks(ceiling_mesos, args.ceiling_tasks,  # type: ignore[arg-type]
                            duration=args.duration, timeout=600)
        finally:
            ceiling_mesos.stop()
        mesos_rate = raw["tasks"] / raw["seconds"]
        out["ceiling"] = {"etcd_puts_per_second": round(etcd_rate, 1),
                          "mesos_tasks_per_second": round(mesos_rate, 1),
                          "mesos_launch_tasks_per_second":
                              round(raw["tasks"] / (raw["launch_seconds"] or 1e-9), 1)}

        if args.throttle is not None:
            # Before the controller starts: no plan is ever made without it.
            store.put_raw(f"{store.keys.prefix}/policy", throttle_policy(args.throttle))
        lm = RemoteMesos(args.agents)
        metrics_port = free_port()
        env = {**os.environ, "DOCKET_ETCD_ENDPOINTS": etcd.endpoint,
               "DOCKET_MESOS_MASTER": lm.master_url,
               "DOCKET_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
               "DOCKET_WORKERS": str(args.workers), "DOCKET_LOG_LEVEL": args.log_level,
               "DOCKET_LOG_FORMAT": "json", "DOCKET_DECLINE_REFUSE_SECONDS": "1"}
        log = (tmp / "controller.log").open("wb")
        controller = subprocess.Popen([sys.executable, "-m", "controller.cli.main", "run"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
        # Wait until the controller subscribed (its framework id is in etcd).
        deadline = time.monotonic() + 60
        while store.get_framework_id() is None:
            if time.monotonic() > deadline or controller.poll() is not None:
                raise SystemExit("controller did not start; see " + str(tmp / "controller.log"))
            time.sleep(0.1)

        succeeded: dict[str, float] = {}
        final_phase: dict[str, str] = {}
        done = threading.Event()
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        status_prefix = store.keys.status_prefix("jobs") + "bench/"
        watch_id = store.client.raw.add_watch_prefix_callback(status_prefix, events.put)

        def collect() -> None:
            while len(succeeded) < args.jobs:
                resp = events.get()
                if isinstance(resp, BaseException) or resp is None:
                    continue
                seen = time.monotonic()
                for ev in resp.events:
                    value = bytes(ev.value)
                    for phase in ("Succeeded", "Failed"):
                        if f'"phase":"{phase}"'.encode() in value:
                            name = ev.key.decode().rsplit("/", 1)[1]
                            succeeded.setdefault(name, seen)
                            final_phase.setdefault(name, phase)
            done.set()

        threading.Thread(target=collect, daemon=True).start()
        names = [f"j{i}" for i in range(args.jobs)]

        # The specs are written from a process of their own, as users' etcdctl would: in this
        # one they would wait for the interpreter lock behind the status watch.
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe()
        spec_writer = ctx.Process(target=write_specs, daemon=True, args=(
            child_end, etcd.endpoint, store.keys.kind_prefix("jobs") + "bench/", names,
            args.duration, args.writers))
        spec_writer.start()
        if parent_end.recv() != "ready":
            raise SystemExit("the spec writer did not start")
        pids = {"controller": controller.pid, "localmesos": lm.proc.pid,
                "etcd": etcd.pid or 0, "benchmark": os.getpid(),
                "spec_writer": spec_writer.pid or 0}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        etcd_before = etcd_requests(etcd.endpoint)
        timeline: list[dict[str, float]] = []
        stop_timeline = threading.Event()
        if args.timeline:
            threading.Thread(target=sample_timeline, daemon=True,
                             args=(metrics_port, stop_timeline, timeline)).start()
        first_put = time.monotonic()
        parent_end.send("go")
        put_wall, put_at = parent_end.recv()
        puts_done = time.monotonic()
        cpu_writer = cpu_seconds(pids.pop("spec_writer")) - cpu_before.pop("spec_writer")
        spec_writer.join(10)
        if not done.wait(args.timeout):
            raise SystemExit(f"only {len(succeeded)}/{args.jobs} finished in time")
        last = max(succeeded.values())
        stop_timeline.set()
        for row in timeline:
            print(json.dumps(row), file=sys.stderr)
        cpu_used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu_used["spec_writer"] = cpu_writer
        etcd_after = etcd_requests(etcd.endpoint)
        store.client.raw.cancel_watch(watch_id)

        latencies = []
        phases: dict[str, int] = {}
        for phase in final_phase.values():
            phases[phase] = phases.get(phase, 0) + 1
        stages: dict[str, list[float]] = {"put_to_intent": [], "intent_to_running": [],
                                          "running_to_finished": [],
                                          "finished_to_status_written": [],
                                          "status_written_to_seen": []}
        statuses = store.list_statuses("jobs")  # one paged read, not a get per Job

        spans: list[tuple[float, int]] = []
        for name in names:
            for e in store.list_executions("jobs", "bench", name):
                rec = e.record
                if rec.started_at is not None and rec.finished_at is not None:
                    spans += [(rec.started_at.timestamp(), 1), (rec.finished_at.timestamp(), -1)]
                if rec.started_at is not None:
                    latencies.append(rec.started_at.timestamp() - put_wall[name])
                status = statuses.get(("bench", name))
                completed = getattr(status.status, "completion_time", None) if status else None
                if (rec.started_at is None or rec.finished_at is None or completed is None
                        or rec.submitted_at is None or name not in succeeded):
                    continue
                seen_wall = put_wall[name] + (succeeded[name] - put_at[name])
                marks = [put_wall[name], rec.submitted_at.timestamp(),
                         rec.started_at.timestamp(), rec.finished_at.timestamp(),
                         completed.timestamp(), seen_wall]
                for stage, (a, b) in zip(stages, itertools.pairwise(marks),
                                         strict=True):
                    stages[stage].append(b - a)
        # Ends before starts at the same instant: a task ending as another starts is not two.
        live = peak = 0
        for _, step in sorted(spans):
            live += step
            peak = max(peak, live)
        elapsed = last - first_put
        rate = args.jobs / elapsed
        written = etcd_after.pop("keys_written") - etcd_before.pop("keys_written") - args.jobs
        out.update({
            "phases": phases,
            "seconds": round(elapsed, 3),
            "peak_running": peak,
            "put_seconds": round(puts_done - first_put, 3),
            "tasks_per_second": round(rate, 1),
            "latency_running_p50": round(percentile(latencies, 0.5), 4),
            "latency_running_p99": round(percentile(latencies, 0.99), 4),
            "stages_p50_p99": {stage: [round(percentile(v, 0.5), 3),
                                       round(percentile(v, 0.99), 3)]
                               for stage, v in stages.items()},
            "etcd_writes_per_task": round(written / args.jobs, 2),
            "ratio_to_ceiling": round(rate / min(etcd_rate, mesos_rate), 3),
            "etcd_requests_per_task": {
                method: round((count - etcd_before.get(method, 0.0)) / args.jobs, 2)
                for method, count in sorted(etcd_after.items())
                if count > etcd_before.get(method, 0.0)},
            "cpu_ms_per_task": {name: round(1000 * used / args.jobs, 2)
                                for name, used in cpu_used.items()},
            "controller": controller_figures(metrics_port),
        })
    finally:
        if controller is not None:
            controller.send_signal(signal.SIGTERM)
            try:
                controller.wait(30)
            except subprocess.TimeoutExpired:
                controller.kill()
        if lm is not None:
            lm.stop()
        if store is not None:
            store.close()
        etcd.stop()
        if args.keep or sys.exc_info()[0] is not None:  # a failed run keeps its logs
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
