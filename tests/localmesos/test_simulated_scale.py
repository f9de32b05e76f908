"""Simulated mode at scale: 1,000 hollow agents carry 10,000 short tasks to completion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from tests.localmesos.scheduler import RawScheduler, task_info

pytestmark = pytest.mark.integration

Start = Callable[..., LocalMesos]


def run_tasks(lm: LocalMesos, total: int, *, duration: float = 0.05,
              timeout: float = 120) -> dict[str, Any]:
    """Launch `total` simulated tasks as fast as offers allow; ack every update; return
    figures. Shared with tests/perf/bench_localmesos.py."""
    s = RawScheduler(lm.master_url, capabilities=("PARTITION_AWARE",))
    s.subscribe()
    s.start_ackers()
    env = {"DOCKET_SIM_DURATION": str(duration)}
    next_id = 0
    # Sets of task ids, not counts of updates: an update whose acknowledgement is still
    # queued may be resent, and a resent TASK_FINISHED is not another finished task.
    finished: set[str] = set()
    failed: set[str] = set()
    started = time.monotonic()
    launched_at = None
    deadline = started + timeout
    try:
        while len(finished) + len(failed) < total:
            assert time.monotonic() < deadline, \
                f"only {len(finished)}/{total} finished in time"
            event = s.next_event(timeout=max(0.1, deadline - time.monotonic()))
            if event["type"] == "OFFERS":
                for offer in event["offers"]["offers"]:
                    cpus = next((r["scalar"]["value"] for r in offer["resources"]
                                 if r["name"] == "cpus"), 0.0)
                    batch = []
                    while next_id < total and cpus >= 0.1 - 1e-9:
                        batch.append(task_info(offer, f"sim-{next_id}", "sim", env=env))
                        next_id += 1
                        cpus -= 0.1
                    if batch:
                        code, text = s.launch(offer, *batch, filters={"refuse_seconds": 0})
                        assert code == 202, text
                    else:
                        s.call({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]],
                                                               "filters": {"refuse_seconds": 0}}})
                if next_id == total and launched_at is None:
                    launched_at = time.monotonic()
            elif event["type"] == "UPDATE":
                st = event["update"]["status"]
                s.ack_later(st)
                if st["state"] == "TASK_FINISHED":
                    finished.add(st["task_id"]["value"])
                elif st["state"] not in ("TASK_STARTING", "TASK_RUNNING"):
                    failed.add(st["task_id"]["value"])
        elapsed = time.monotonic() - started
        s.stop_ackers()  # every acknowledgement sent: the master holds no update for a retry
        return {"tasks": total, "finished": len(finished), "failed": len(failed),
                "seconds": round(elapsed, 3),
                "launch_seconds": round((launched_at or time.monotonic()) - started, 3),
                "tasks_per_second": round(total / elapsed, 1)}
    finally:
        s.close()


def test_five_hundred_agents_fifteen_hundred_tasks(local_mesos: Start) -> None:
    # Scale here is for correctness (every task finished, every resource released, every
    # update acknowledged); throughput at 10,000 tasks is tests/perf/bench_localmesos.py's.
    lm = local_mesos(simulate=True, agents=500, cpus=4, mem=4096, allocation_interval=0.2)
    figures = run_tasks(lm, 1_500, timeout=240)
    assert figures["finished"] == 1_500 and figures["failed"] == 0
    with lm.master.lock:
        assert len(lm.master.all_tasks) == 1_500
        assert all(a.used.empty for a in lm.master.agents.values()), "resources all released"
        assert not any(t.pending for t in lm.master.all_tasks.values()), "updates all acked"
