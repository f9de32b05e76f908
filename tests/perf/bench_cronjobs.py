"""Benchmark (run by hand): N CronJobs all due in the same minute, through the whole of Docket.

    .venv/bin/python tests/perf/bench_cronjobs.py [--cronjobs 1000] [--agents 100] [--keep]
        [--slots 1] [--timeline]
        [--profile]   # also samples the controller with py-spy over each slot: only the
                      # thread holding the interpreter lock (--gil), i.e. where its core goes

Real wall clock, as in production: a real etcd (temporary data dir), the embedded Mesos with
simulated agents in its own process (`docket local-mesos --simulate`) and the controller in its
own process (`docket run`). The benchmark writes N CronJobs (`* * * * *`, Allow, a simulated
task of --duration seconds via DOCKET_SIM_DURATION) into etcd, one Put each, early in a minute;
waits until every one has a status (the controller has seen it, so it owes the next slot); then
measures the first slot at least --settle seconds later (`slot`), until every CronJob has
recorded its Job's success. A watch on the whole key prefix, in a process of its own (so that
nothing else waits for its interpreter lock), timestamps every etcd event. Printed as JSON:
  lateness_p50/p99/max      per CronJob: when its slot's Job became visible in etcd, minus the
                            scheduled time. "Visible" is the time the watch delivered the Job
                            key's create_revision (the Job is created in one transaction with
                            the CronJob's status, so that revision IS the creation). etcd keeps
                            no time for a revision, so its time must be observed; the watcher
                            is idle and in its own process, and its delivery delay is measured
                            (watch_delivery_ms_p50: put -> event, idle) and is ~1 ms. The
                            controller's own histogram (docket_cronjob_schedule_lateness_seconds,
                            `controller.lateness_metric_mean_s`) stamps the planner's `now`,
                            before the commit queues, so it reads low; it is shown beside it.
  target_met                lateness_p99 <= 2 s (issue 10)
  jobs_succeeded_seconds    scheduled time -> the last Job's Succeeded status seen
  settled_seconds           scheduled time -> every CronJob's status shows its Job done
  stages_p50_p99            per Job: created -> first execution record (launch intent) ->
                            Succeeded status, as seen by the watch
  etcd_writes_per_slot      what the controller wrote for the slot (slot - 1 s until quiet):
                            keys written (etcd's own put count) and deleted, gRPC requests by
                            method (etcd's /metrics), and puts by key class (from the watch)
  cpu_seconds               CPU time (user + system) of each process over the same window
  ceiling.etcd_puts_per_second     raw sequential puts of ~400-byte values, same client
  ceiling.slot_commit_seconds      etcd alone: the N slot transactions (Job if absent + the
                                   CronJob's status, compare-and-swap), group-committed from
                                   this process: the floor of max lateness
  ceiling.plan_ms_per_cronjob      the pure planner (`plan_cronjob`) alone, per CronJob
  controller                deltas of the controller's own metrics over the window: reconciles
                            and mean reconcile time per kind, etcd transactions and batches
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controller.store import EtcdServer, Expect, Put, Store
from controller.store.etcd_server import free_port
from tests.perf.bench_jobs import cpu_seconds, etcd_put_rate, etcd_requests, percentile, scrape
from tests.perf.bench_localmesos import RemoteMesos

NAMESPACE = "bench"
PHASE = re.compile(rb'"phase":"(\w+)"')


def cronjob_doc(name: str, duration: float) -> bytes:
    return json.dumps({
        "apiVersion": "docket.dev/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Allow",
                 "jobTemplate": {"spec": {"template": {
                     "command": "true", "resources": {"cpus": 0.1, "mem": 16},
                     "env": {"DOCKET_SIM_DURATION": str(duration)}}}}},
    }).encode()


# --- the watcher, in a process of its own ---------------------------------------------------
class _Watched:
    """What the watcher keeps of every event under the prefix (all wall-clock times)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()
        self.revision_seen: dict[int, float] = {}
        self.job_created: dict[str, tuple[float, int]] = {}  # name -> (seen, create_revision)
        self.intent: dict[str, float] = {}  # Job name -> first execution record seen
        self.job_done: dict[str, tuple[float, str]] = {}  # name -> (seen, final phase)
        self.cron_status: dict[str, dict[str, Any]] = {}  # CronJob -> its latest status
        self.writes: list[tuple[float, str, bool]] = []  # (seen, key class, is a put)
        self.probes: dict[bytes, float] = {}

    def on_response(self, resp: Any) -> None:
        seen = time.time()
        if resp is None or isinstance(resp, BaseException):
            return
        with self.lock:
            for ev in resp.events:
                self._event(seen, ev)

    def _event(self, seen: float, ev: Any) -> None:
        from pyetcd.events import DeleteEvent

        key = ev.key.decode()
        if key.startswith("/docket-bench-probe/"):
            self.probes.setdefault(ev.key, seen)
            return
        put = not isinstance(ev, DeleteEvent)
        parts = key[len(self.prefix):].split("/")
        kind = "/".join(parts[:2]) if parts[0] in ("status", "executions") else parts[0]
        self.writes.append((seen, kind, put))
        if not put:
            return
        revision = int(ev.mod_revision)
        self.revision_seen.setdefault(revision, seen)
        value = bytes(ev.value)
        if kind == "jobs" and len(parts) == 3:
            created = int(ev.create_revision)
            self.job_created.setdefault(parts[2], (self.revision_seen.get(created, seen),
                                                   created))
        elif kind == "executions/jobs" and len(parts) >= 5:
            self.intent.setdefault(parts[3], seen)
        elif kind == "status/jobs" and len(parts) == 4:
            m = PHASE.search(value)
            if m and m.group(1) in (b"Succeeded", b"Failed"):
                self.job_done.setdefault(parts[3], (seen, m.group(1).decode()))
        elif kind == "status/cronjobs" and len(parts) == 4:
            self.cron_status[parts[3]] = json.loads(value)

    def summary(self, slot: float | None) -> dict[str, int]:
        with self.lock:
            out = {"cron_status": len(self.cron_status)}
            if slot is None:
                return out
            suffix = f"-{int(slot // 60)}"
            iso = datetime.fromtimestamp(slot, UTC)
            settled = 0
            for name, st in self.cron_status.items():
                last = st.get("lastScheduleTime")
                if (last and datetime.fromisoformat(last) == iso
                        and name + suffix not in st.get("active", ())):
                    settled += 1
            out.update(created=sum(n.endswith(suffix) for n in self.job_created),
                       done=sum(n.endswith(suffix) for n in self.job_done), settled=settled)
            return out


def watch_keys(conn: Any, endpoint: str, prefix: str) -> None:
    """In a process of its own: watch everything under `prefix` and answer the benchmark's
    questions over `conn` ("summary", slot), ("probe", n), ("dump",)."""
    from pyetcd.client import Endpoint, MultiEndpointEtcd3Client

    host, port = endpoint.rsplit(":", 1)
    client = MultiEndpointEtcd3Client(endpoints=[Endpoint(host, int(port), secure=False)],
                                      timeout=10)
    watched = _Watched(prefix)
    client.add_watch_prefix_callback(prefix, watched.on_response)
    client.add_watch_prefix_callback("/docket-bench-probe/", watched.on_response)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg[0] == "summary":
            conn.send(watched.summary(msg[1]))
        elif msg[0] == "probe":  # watch delivery delay when idle: put -> event
            delays = []
            for i in range(msg[1]):
                key = f"/docket-bench-probe/{i}".encode()
                start = time.time()
                client.put(key, b"x")
                while key not in watched.probes and time.time() - start < 5:
                    time.sleep(0.0002)
                delays.append(watched.probes.get(key, start + 5) - start)
            client.delete_prefix("/docket-bench-probe/")
            conn.send(delays)
        elif msg[0] == "dump":
            with watched.lock:
                conn.send({"job_created": watched.job_created, "intent": watched.intent,
                           "job_done": watched.job_done, "writes": watched.writes})
        elif msg[0] == "stop":
            client.close()
            return


class Watcher:
    def __init__(self, endpoint: str, prefix: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=watch_keys, args=(child, endpoint, prefix), daemon=True)
        self.proc.start()
        if self.conn.recv() != "ready":
            raise SystemExit("the watcher did not start")

    def ask(self, *msg: Any) -> Any:
        self.conn.send(msg)
        return self.conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


# --- ceilings ----------------------------------------------------------------------------------
def slot_commit_seconds(store: Store, n: int, duration: float) -> float:
    """etcd alone: N slot transactions as the controller makes them (a ~Job document created
    only if absent, plus the CronJob's status, compare-and-swap), group-committed."""
    job = cronjob_doc("x" * 5, duration) + b" " * 150  # about the size of a created Job
    status = b'{"phase":"Active","conditions":[],"lastScheduleTime":"2026-01-01T00:00:00Z",' \
             b'"nextScheduleTime":"2026-01-01T00:01:00Z","active":["c00000-29000000"],' \
             b'"missed":{},"observedRevision":12345,"uid":12345}'
    root = "/bench-slot/"
    for i in range(n):
        store.client.raw.put(f"{root}status/{i}", status)
    revisions = {meta.key.decode(): int(meta.mod_revision)
                 for _, meta in store.client.raw.get_prefix(root + "status/")}
    txns = []
    for i in range(n):
        skey = f"{root}status/{i}"
        jkey = f"{root}jobs/{i}"
        txns.append(([Put(jkey, job), Put(skey, status)],
                     [Expect(jkey, 0), Expect(skey, revisions[skey])]))
    start = time.perf_counter()
    results = store.commit_many(txns)
    elapsed = time.perf_counter() - start
    if any(not isinstance(r, int) for r in results):
        raise SystemExit(f"slot ceiling: a transaction failed: {results[:3]}")
    store.client.raw.delete_prefix(root)
    return elapsed


def plan_ms_per_cronjob(n: int, duration: float) -> float:
    """The pure planner's time for one CronJob whose slot is due (no I/O, no owned Jobs)."""
    from controller.api import CronJob, CronJobStatus, decode_object
    from controller.reconcile.cronjob import CronJobInput, plan_cronjob

    slot = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    status = CronJobStatus(phase="Active", uid=1, observed_revision=1,
                           scheduled_through=slot - timedelta(seconds=30),
                           next_schedule_time=slot)
    objs = []
    for i in range(n):
        obj = decode_object(cronjob_doc(f"c{i:05d}", duration), plural="cronjobs",
                            namespace=NAMESPACE, name=f"c{i:05d}")
        assert isinstance(obj, CronJob)
        objs.append(obj)
    now = slot + timedelta(milliseconds=5)
    start = time.perf_counter()
    for i, obj in enumerate(objs):
        plan = plan_cronjob(CronJobInput(NAMESPACE, f"c{i:05d}", obj, 1, 1, status, [], now))
        assert plan.actions
    return 1000 * (time.perf_counter() - start) / n


# --- the controller's own figures --------------------------------------------------------------
def controller_counters(port: int) -> dict[str, float]:
    values = scrape(port)
    out: dict[str, float] = {}
    for kind in ("Job", "CronJob"):
        for part in ("count", "sum"):
            out[f"reconcile_{kind}_{part}"] = values.get(
                f'docket_reconcile_duration_seconds_{part}{{kind="{kind}"}}', 0.0)
    for part in ("count", "sum"):
        out[f"lateness_{part}"] = values.get(
            f"docket_cronjob_schedule_lateness_seconds_{part}", 0.0)
        out[f"txn_{part}"] = values.get(
            f'docket_etcd_request_duration_seconds_{part}{{operation="txn"}}', 0.0)
        out[f"batch_{part}"] = values.get(f"docket_etcd_commit_batch_size_{part}", 0.0)
    out["etcd_get"] = values.get('docket_etcd_request_duration_seconds_count{operation="get"}',
                                 0.0)
    out["etcd_list"] = values.get(
        'docket_etcd_request_duration_seconds_count{operation="list"}', 0.0)
    return out


def controller_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    out: dict[str, float] = {}
    for kind in ("Job", "CronJob"):
        count = d[f"reconcile_{kind}_count"]
        out[f"reconciles_{kind}"] = count
        out[f"reconcile_{kind}_mean_ms"] = (round(1000 * d[f"reconcile_{kind}_sum"] / count, 2)
                                            if count else 0.0)
    out["lateness_metric_count"] = d["lateness_count"]
    out["lateness_metric_mean_s"] = (round(d["lateness_sum"] / d["lateness_count"], 3)
                                     if d["lateness_count"] else 0.0)
    out["etcd_txn_calls"] = d["txn_count"]
    out["etcd_txn_mean_ms"] = (round(1000 * d["txn_sum"] / d["txn_count"], 2)
                               if d["txn_count"] else 0.0)
    out["etcd_commit_batches"] = d["batch_count"]
    out["etcd_commit_batch_mean"] = (round(d["batch_sum"] / d["batch_count"], 2)
                                     if d["batch_count"] else 0.0)
    out["etcd_get_calls"] = d["etcd_get"]
    out["etcd_list_calls"] = d["etcd_list"]
    return out


def etcd_deletes(endpoint: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("etcd_mvcc_delete_total "):
                return float(line.split()[1])
    return 0.0


TIMELINE = {"cron_queue": 'docket_workqueue_depth{name="CronJob"}',
            "job_queue": 'docket_workqueue_depth{name="Job"}',
            "cron_reconciles": 'docket_reconcile_duration_seconds_count{kind="CronJob"}',
            "job_reconciles": 'docket_reconcile_duration_seconds_count{kind="Job"}',
            "jobs_created": "docket_cronjob_jobs_created_total"}


def sample_timeline(port: int, slot: float, stop: threading.Event) -> None:
    """Every quarter second until `stop`, the controller's queues and counters (--timeline,
    to stderr): what the controller was doing while the slot's Jobs were being created."""
    while not stop.wait(0.25):
        try:
            values = scrape(port)
        except OSError:
            continue
        print(json.dumps({"t": round(time.time() - slot, 2),
                          **{k: values.get(v, -1.0) for k, v in TIMELINE.items()}}),
              file=sys.stderr)


# --- the run -----------------------------------------------------------------------------------
def sleep_until(wall: float) -> None:
    while (left := wall - time.time()) > 0:
        time.sleep(min(left, 0.5))


def wait(check: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(interval)


def measure_slot(slot: float, n: int, watcher: Watcher, endpoint: str, metrics_port: int,
                 pids: dict[str, int], args: argparse.Namespace, profile: Path | None
                 ) -> dict[str, Any]:
    """Everything measured for one slot: from slot - 1 s until every CronJob has recorded its
    Job's success and etcd has been quiet for a second."""
    out: dict[str, Any] = {"slot": datetime.fromtimestamp(slot, UTC).isoformat(),
                           "slot_id": int(slot // 60)}
    sleep_until(slot - 1)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    etcd_before = etcd_requests(endpoint)
    deletes_before = etcd_deletes(endpoint)
    ctl_before = controller_counters(metrics_port)
    window_start = time.time()
    stop_timeline = threading.Event()
    if args.timeline:
        threading.Thread(target=sample_timeline, args=(metrics_port, slot, stop_timeline),
                         daemon=True).start()
    profiler = None
    if profile is not None:
        profiler = subprocess.Popen(
            [args.py_spy, "record", "--pid", str(pids["controller"]), "--rate", "200",
             "--nonblocking", "--gil", "--format", "raw", "--output", str(profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: watcher.ask("summary", slot)["settled"] >= n, args.timeout,
             "not every CronJob recorded its Job's success", interval=0.5)
        settled = time.time()
        # Quiet: nothing more written for a second (late status writes belong to the slot).
        last = etcd_requests(endpoint)["keys_written"]
        while True:
            time.sleep(1.0)
            now_written = etcd_requests(endpoint)["keys_written"]
            if now_written == last or time.time() - settled > 30:
                break
            last = now_written
        window_end = time.time()
    finally:
        stop_timeline.set()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            try:
                profiler.wait(60)
            except subprocess.TimeoutExpired:
                profiler.kill()
    cpu_used = {name: round(cpu_seconds(pid) - cpu_before[name], 2)
                for name, pid in pids.items()}
    etcd_after = etcd_requests(endpoint)
    deletes_after = etcd_deletes(endpoint)
    ctl_after = controller_counters(metrics_port)
    dump = watcher.ask("dump")

    suffix = f"-{int(slot // 60)}"
    created = {name: v for name, v in dump["job_created"].items() if name.endswith(suffix)}
    done = {name: v for name, v in dump["job_done"].items() if name.endswith(suffix)}
    lateness = [seen - slot for seen, _ in created.values()]
    revisions = {rev for _, rev in created.values()}
    stages: dict[str, list[float]] = {"created_to_intent": [], "intent_to_done": []}
    for name, (seen, _) in created.items():
        intent = dump["intent"].get(name)
        if intent is not None:
            stages["created_to_intent"].append(intent - seen)
            if name in done:
                stages["intent_to_done"].append(done[name][0] - intent)
    phases: dict[str, int] = {}
    for _, phase in done.values():
        phases[phase] = phases.get(phase, 0) + 1
    by_class: dict[str, int] = {}
    for seen, kind, put in dump["writes"]:
        if window_start <= seen <= window_end:
            label = kind + ("" if put else " (delete)")
            by_class[label] = by_class.get(label, 0) + 1
    p99 = percentile(lateness, 0.99)
    out.update({
        "jobs_created": len(created),
        "creation_revisions": len(revisions),
        "lateness_p50": round(percentile(lateness, 0.5), 3),
        "lateness_p99": round(p99, 3),
        "lateness_max": round(max(lateness), 3) if lateness else None,
        "lateness_min": round(min(lateness), 3) if lateness else None,
        "target_p99_seconds": 2.0,
        "target_met": bool(lateness) and len(created) == n and p99 <= 2.0,
        "phases": phases,
        "jobs_succeeded_seconds": round(max(s for s, _ in done.values()) - slot, 3)
        if done else None,
        "settled_seconds": round(settled - slot, 3),
        "stages_p50_p99": {stage: [round(percentile(v, 0.5), 3),
                                   round(percentile(v, 0.99), 3)]
                           for stage, v in stages.items()},
        "etcd_writes_per_slot": {
            "window_seconds": round(window_end - window_start, 1),
            "keys_written": etcd_after["keys_written"] - etcd_before["keys_written"],
            "keys_deleted": deletes_after - deletes_before,
            "requests_by_method": {
                method: count - etcd_before.get(method, 0.0)
                for method, count in sorted(etcd_after.items())
                if method != "keys_written" and count > etcd_before.get(method, 0.0)},
            "puts_by_key_class": dict(sorted(by_class.items())),
        },
        "cpu_seconds": cpu_used,
        "controller": controller_figures(ctl_before, ctl_after),
    })
    if profile is not None:
        out["profile"] = str(profile)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cronjobs", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--duration", type=float, default=0.5,
                        help="simulated run time of each Job's task, seconds")
    parser.add_argument("--workers", type=int, default=4,
                        help="controller workers (docket run's default)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="the measured slot is at least this long after every CronJob "
                             "has a status")
    parser.add_argument("--slots", type=int, default=1,
                        help="slots measured one after another; the first has no Jobs yet, "
                             "later ones have the earlier slots' Jobs (history) beside them")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--log-level", default="warning",
                        help="the controller's (its log is in the temporary dir: --keep)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the controller with py-spy (--gil) from slot - 1 s until "
                             "settled (collapsed stacks in the temporary dir, then kept)")
    parser.add_argument("--timeline", action="store_true",
                        help="print the controller's queues every quarter second to stderr")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary dir (etcd data, controller log) afterwards")
    args = parser.parse_args()
    n = args.cronjobs

    tmp = Path(tempfile.mkdtemp(prefix="docket-bench-cron-"))
    etcd = EtcdServer(data_dir=tmp / "etcd")
    etcd.start()
    out: dict[str, Any] = {"benchmark": "cronjobs", "cronjobs": n, "agents": args.agents,
                           "duration": args.duration, "workers": args.workers}
    controller: subprocess.Popen[bytes] | None = None
    lm: RemoteMesos | None = None
    store: Store | None = None
    watcher: Watcher | None = None
    try:
        store = Store(etcd.endpoint, prefix="/docket")
        out["ceiling"] = {
            "etcd_puts_per_second": round(etcd_put_rate(store), 1),
            "slot_commit_seconds": round(slot_commit_seconds(store, n, args.duration), 3),
            "plan_ms_per_cronjob": round(plan_ms_per_cronjob(min(n, 1000), args.duration), 3),
        }
        store.client.raw.delete_prefix("/bench-raw/")

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
        wait(lambda: store.get_framework_id() is not None  # type: ignore[union-attr]
             or controller.poll() is not None, 60, "the controller did not subscribe")
        if controller.poll() is not None:
            raise SystemExit("controller exited; see " + str(tmp / "controller.log"))

        watcher = Watcher(etcd.endpoint, "/docket/")
        probes = watcher.ask("probe", 50)
        out["watch_delivery_ms_p50"] = round(1000 * percentile(probes, 0.5), 2)
        out["watch_delivery_ms_p99"] = round(1000 * percentile(probes, 0.99), 2)

        # Register early in a minute, so that no slot falls while CronJobs are being written.
        if time.time() % 60 > 40:
            sleep_until((time.time() // 60 + 1) * 60 + 1)
        registering = time.time()
        prefix = store.keys.kind_prefix("cronjobs") + NAMESPACE + "/"
        for i in range(n):  # one Put each, as etcdctl makes them
            store.client.raw.put(f"{prefix}c{i:05d}", cronjob_doc(f"c{i:05d}", args.duration))
        written = time.time()
        wait(lambda: watcher.ask("summary", None)["cron_status"] >= n,  # type: ignore[union-attr]
             args.timeout, "not every CronJob got a status")
        registered = time.time()
        out["register_put_seconds"] = round(written - registering, 3)
        out["register_status_seconds"] = round(registered - registering, 3)

        first = (registered + args.settle) // 60 * 60 + 60
        pids = {"controller": controller.pid, "localmesos": lm.proc.pid, "etcd": etcd.pid or 0,
                "benchmark": os.getpid(), "watcher": watcher.proc.pid or 0}
        results = []
        for k in range(args.slots):
            profile = tmp / f"controller.pyspy.slot{k}.txt" if args.profile else None
            results.append(measure_slot(first + 60 * k, n, watcher, etcd.endpoint, metrics_port,
                                        pids, args, profile))
        out.update(results[0])
        if len(results) > 1:
            out["later_slots"] = results[1:]
            out["target_met"] = all(r["target_met"] for r in results)
    finally:
        if watcher is not None:
            watcher.stop()
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
        keep = args.keep or args.profile or sys.exc_info()[0] is not None
        if keep:  # a failed run keeps its logs
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
