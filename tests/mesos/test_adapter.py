"""The pymesos adapter against the embedded Mesos (localmesos, real agents running processes):
subscription, FrameworkID reuse, launches with explicit acknowledgements, kills,
suppress/revive, reconciliation after a restart, and reconnection after heartbeat loss."""

from __future__ import annotations

import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pymesos.process
import pytest
from prometheus_client import REGISTRY

from controller.api.template import TaskTemplate
from controller.localmesos import LocalMesos
from controller.mesos.adapter import MemoryFrameworkIdStore, MesosAdapter, MesosConfig
from controller.mesos.backend import (
    LaunchRequest,
    MesosBackend,
    MesosEvent,
    Subscribed,
    TaskLaunched,
    TaskUpdate,
)

pytestmark = pytest.mark.integration

TIMEOUT = 15.0


class Harness:
    """Starts adapters on one master and collects their events."""

    def __init__(self, mesos: LocalMesos) -> None:
        self.mesos = mesos
        self.adapters: list[MesosAdapter] = []

    def adapter(self, store: MemoryFrameworkIdStore,
                known: Callable[[], list[tuple[str, str | None]]] = list,
                **config: Any) -> MesosAdapter:
        cfg = MesosConfig(master=self.mesos.master_url, refuse_seconds=5.0,
                          tick_seconds=0.05, **config)
        a = MesosAdapter(cfg, store, known)
        self.adapters.append(a)
        a.start()
        return a


@pytest.fixture
def harness(local_mesos: Callable[..., LocalMesos]) -> Iterator[Harness]:
    h = Harness(local_mesos(agents=2, heartbeat_interval=0.3))
    yield h
    for a in h.adapters:
        a.stop()


def wait_for(adapter: MesosAdapter, pred: Callable[[MesosEvent], bool],
             seen: list[MesosEvent] | None = None, timeout: float = TIMEOUT,
             ack: bool = True) -> MesosEvent:
    """The first event matching `pred`; every update on the way is acknowledged."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching event within {timeout}s; saw {seen}")
        try:
            event = adapter.events.get(timeout=left)
        except queue.Empty:
            continue
        if seen is not None:
            seen.append(event)
        if ack and isinstance(event, TaskUpdate):
            adapter.acknowledge(event)
        if pred(event):
            return event


def poll(cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def update_of(task_id: str, *states: str) -> Callable[[MesosEvent], bool]:
    return lambda e: isinstance(e, TaskUpdate) and e.task_id == task_id and e.state in states


def template(command: str, **extra: Any) -> TaskTemplate:
    return TaskTemplate.model_validate({"command": command,
                                        "resources": {"cpus": 0.1, "mem": 16}, **extra})


def test_is_a_mesos_backend(harness: Harness) -> None:
    assert isinstance(harness.adapter(MemoryFrameworkIdStore()), MesosBackend)


def test_subscribe_launch_finish_with_explicit_acks(harness: Harness) -> None:
    store = MemoryFrameworkIdStore()
    adapter = harness.adapter(store, role="batch", principal="ops")
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed) and store.framework_id == sub.framework_id
    assert adapter.connected
    fw = harness.mesos.master.frameworks[sub.framework_id]
    info = fw.info
    assert info["name"] == "docket" and info["checkpoint"] is True
    assert info["failover_timeout"] == 7 * 24 * 3600 and info["role"] == "batch"
    assert info["principal"] == "ops"
    caps = {c["type"] for c in info["capabilities"]}
    assert {"PARTITION_AWARE", "TASK_KILLING_STATE"} <= caps
    assert "GPU_RESOURCES" not in caps  # only when configured: see the GPU test
    poll(lambda: bool(fw.suppressed))  # nothing pending: offers suppressed

    task_id = "job.default.hello.7.0.0"
    adapter.launch([LaunchRequest(task_id, template("echo hello; exit 3"))])
    assert adapter.pending_count in (0, 1)
    seen: list[MesosEvent] = []
    launched = wait_for(adapter, lambda e: isinstance(e, TaskLaunched), seen)
    assert isinstance(launched, TaskLaunched) and launched.task_id == task_id
    final = wait_for(adapter, update_of(task_id, "TASK_FAILED", "TASK_FINISHED"), seen)
    assert isinstance(final, TaskUpdate)
    assert final.state == "TASK_FAILED" and final.exit_code == 3
    assert final.agent_id == launched.agent_id and final.hostname == launched.hostname
    states = [e.state for e in seen if isinstance(e, TaskUpdate)]
    assert "TASK_RUNNING" in states
    assert adapter.pending_count == 0
    # Every update was acknowledged explicitly: the master holds none for a retry.
    task = harness.mesos.master.all_tasks[(sub.framework_id, task_id)]
    poll(lambda: not task.pending)
    poll(lambda: task_id not in fw.tasks)  # a terminal task completes once acknowledged
    poll(lambda: bool(fw.suppressed))  # suppressed again once nothing is pending


def test_unacknowledged_update_is_resent(harness: Harness) -> None:
    adapter = harness.adapter(MemoryFrameworkIdStore())
    wait_for(adapter, lambda e: isinstance(e, Subscribed))
    task_id = "job.default.noack.7.0.0"
    adapter.launch([LaunchRequest(task_id, template("sleep 30"))])
    first = wait_for(adapter, update_of(task_id, "TASK_RUNNING", "TASK_STARTING"), ack=False)
    # Not acknowledged: Mesos resends the same update (same uuid) after its retry interval.
    again = wait_for(adapter, lambda e: isinstance(e, TaskUpdate) and e.uuid == first.uuid  # type: ignore[union-attr]
                     , ack=True)
    assert again == first
    adapter.kill(task_id)
    wait_for(adapter, update_of(task_id, "TASK_KILLED"))


def test_restart_reuses_framework_id_and_reconciles(harness: Harness) -> None:
    store = MemoryFrameworkIdStore()
    first = harness.adapter(store)
    sub = wait_for(first, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    task_id = "job.default.long.9.0.0"
    first.launch([LaunchRequest(task_id, template("sleep 30"))])
    running = wait_for(first, update_of(task_id, "TASK_RUNNING"))
    assert isinstance(running, TaskUpdate)
    first.stop()
    assert not first.connected
    # stop() fails over, never tears down: the framework and its task are still there.
    assert sub.framework_id in harness.mesos.frameworks()
    assert harness.mesos.master.all_tasks[(sub.framework_id, task_id)].state == "TASK_RUNNING"

    known = [(task_id, running.agent_id)]
    second = harness.adapter(store, known=lambda: known)
    sub2 = wait_for(second, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub2, Subscribed) and sub2.framework_id == sub.framework_id
    assert harness.mesos.frameworks() == [sub.framework_id]
    seen: list[MesosEvent] = []
    wait_for(second, update_of(task_id, "TASK_RUNNING"), seen)  # explicit
    wait_for(second, update_of(task_id, "TASK_RUNNING"), seen)  # implicit
    reasons = {e.reason for e in seen if isinstance(e, TaskUpdate)}
    assert "REASON_RECONCILIATION" in reasons

    second.kill(task_id, running.agent_id, grace_seconds=0.5)
    killed = wait_for(second, update_of(task_id, "TASK_KILLED"))
    assert isinstance(killed, TaskUpdate) and killed.terminal


def test_cancel_drops_a_pending_launch(harness: Harness) -> None:
    started = time.monotonic()  # before any offer: every decline comes later
    adapter = harness.adapter(MemoryFrameworkIdStore())
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    declined = REGISTRY.get_sample_value("docket_mesos_offers_declined_total") or 0.0
    big = TaskTemplate.model_validate({"command": "true", "resources": {"cpus": 64}})
    adapter.launch([LaunchRequest("job.default.big.1.0.0", big)])
    # Offers come (revived) and nothing fits: both agents' offers are declined with the
    # configured refuse_seconds (5 s here), not the master's short default.
    fw = harness.mesos.master.frameworks[sub.framework_id]
    poll(lambda: (REGISTRY.get_sample_value("docket_mesos_offers_declined_total") or 0)
         >= declined + 2)
    poll(lambda: len(fw.filters) == 2)
    expiries = [until for filters in fw.filters.values() for _, until in filters]
    # Each filter lasts until its decline + refuse_seconds; counted from before the first
    # offer, so it holds however long the test took to get here.
    assert min(expiries) >= started + 5.0
    assert adapter.pending_count == 1
    assert adapter.cancel("job.default.big.1.0.0")
    assert not adapter.cancel("job.default.big.1.0.0")
    assert adapter.pending_count == 0


def declined() -> float:
    return REGISTRY.get_sample_value("docket_mesos_offers_declined_total") or 0.0


def test_unique_constraint_across_agents(harness: Harness) -> None:
    # What is left of an agent after a launch comes back soon (not after the default 5 s),
    # so that the adapter is seen to turn it down for the third task.
    adapter = harness.adapter(MemoryFrameworkIdStore(), accept_refuse_seconds=0.1)
    wait_for(adapter, lambda e: isinstance(e, Subscribed))
    t = template("sleep 30", constraints=[["hostname", "UNIQUE"]])
    ids = [f"svc.default.web.3.{i}.0" for i in range(3)]
    adapter.launch([LaunchRequest(i, t) for i in ids])
    hosts = set()
    for _ in range(2):
        launched = wait_for(adapter, lambda e: isinstance(e, TaskLaunched))
        assert isinstance(launched, TaskLaunched)
        hosts.add(launched.hostname)
    assert len(hosts) == 2
    # Offers of both agents were looked at with the third task pending, and declined.
    before = declined()
    poll(lambda: declined() >= before + 2)
    assert adapter.pending_count == 1  # no third host
    for i in ids[:2]:
        adapter.kill(i)
    killed: set[str] = set()
    for _ in ids[:2]:
        event = wait_for(adapter, lambda e: isinstance(e, TaskUpdate)
                         and e.state == "TASK_KILLED" and e.task_id not in killed)
        killed.add(event.task_id)  # type: ignore[union-attr]
    assert killed == set(ids[:2])
    # A host is free again once its task is gone: the third one goes there.
    wait_for(adapter, lambda e: isinstance(e, TaskLaunched) and e.task_id == ids[2])
    adapter.kill(ids[2])
    wait_for(adapter, update_of(ids[2], "TASK_KILLED"))


def test_heartbeat_loss_reconnects_with_same_framework(harness: Harness) -> None:
    store = MemoryFrameworkIdStore()
    adapter = harness.adapter(store)
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    before = REGISTRY.get_sample_value("docket_mesos_reconnects_total",
                                       {"reason": "heartbeat"}) or 0.0
    harness.mesos.half_open_streams()
    seen: list[MesosEvent] = []
    again = wait_for(adapter, lambda e: isinstance(e, Subscribed), seen)
    assert isinstance(again, Subscribed) and again.framework_id == sub.framework_id
    assert any(type(e).__name__ == "Disconnected" for e in seen)
    after = REGISTRY.get_sample_value("docket_mesos_reconnects_total", {"reason": "heartbeat"})
    assert after == before + 1
    # Still usable after the reconnection.
    task_id = "job.default.after.5.0.0"
    adapter.launch([LaunchRequest(task_id, template("true"))])
    wait_for(adapter, update_of(task_id, "TASK_FINISHED"))


def test_a_half_open_stream_is_given_up_within_two_heartbeat_intervals(
        harness: Harness) -> None:
    assert MesosConfig(master="m:5050").heartbeat_misses == 2.0  # the default
    heartbeat = 0.3  # the harness' master
    adapter = harness.adapter(MemoryFrameworkIdStore())
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    # The stream stays connected and carries nothing more from here on.
    harness.mesos.half_open_streams()
    silent_since = time.monotonic()
    seen: list[MesosEvent] = []
    wait_for(adapter, lambda e: type(e).__name__ == "Disconnected", seen)
    given_up = time.monotonic() - silent_since
    # Two intervals after the last event at the latest (the last event came before the
    # silence began), plus a little for the threads to be scheduled; and not before a
    # heartbeat was really missed.
    assert heartbeat < given_up <= 2 * heartbeat + 0.1, given_up
    again = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(again, Subscribed) and again.framework_id == sub.framework_id



def test_an_adapter_that_may_not_act_neither_subscribes_again_nor_launches(
        harness: Harness) -> None:
    """A leader frozen past its lease and thawed finds its stream silent and would subscribe
    again with the shared FrameworkID, taking the framework from the new leader, then accept
    offers for launches it still holds (chaos suite, leader_kill). While `may_act` says no,
    the adapter gives the stream up but neither subscribes nor calls the master."""
    allowed = threading.Event()
    allowed.set()
    cfg = MesosConfig(master=harness.mesos.master_url, refuse_seconds=5.0, tick_seconds=0.05)
    adapter = MesosAdapter(cfg, MemoryFrameworkIdStore(), may_act=allowed.is_set)
    harness.adapters.append(adapter)
    adapter.start()
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    allowed.clear()  # deposed
    harness.mesos.half_open_streams()
    wait_for(adapter, lambda e: type(e).__name__ == "Disconnected")
    task_id = "job.default.deposed.7.0.0"
    adapter.launch([LaunchRequest(task_id, template("true"))])

    def stream() -> object:
        with harness.mesos.master.lock:
            fw = harness.mesos.master.frameworks.get(sub.framework_id)
            return fw.stream if fw is not None and fw.connected else None

    silent = stream()  # the master still holds the silenced stream: it never wrote to it
    # Five heartbeats (0.3 s) of being told no: never subscribed again, nothing launched.
    watched_until = time.monotonic() + 1.5
    while time.monotonic() < watched_until:
        assert stream() in (silent, None), "subscribed again while it may not act"
        assert task_id not in {t for _, _, t, _ in harness.mesos.launches()}
        time.sleep(0.05)
    allowed.set()  # leading again: it subscribes and launches what it held
    again = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(again, Subscribed) and again.framework_id == sub.framework_id
    wait_for(adapter, update_of(task_id, "TASK_FINISHED"))


def test_a_deposed_adapter_does_not_take_the_framework_back(harness: Harness) -> None:
    """The new leader subscribes with the shared FrameworkID and the master closes the old
    leader's stream: pymesos would subscribe again at once by itself, taking the framework
    back. Not while the old one may not act."""
    allowed = threading.Event()
    allowed.set()
    cfg = MesosConfig(master=harness.mesos.master_url, refuse_seconds=5.0, tick_seconds=0.05)
    old = MesosAdapter(cfg, MemoryFrameworkIdStore(), may_act=allowed.is_set)
    harness.adapters.append(old)
    old.start()
    sub = wait_for(old, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    allowed.clear()  # deposed
    new = harness.adapter(MemoryFrameworkIdStore(sub.framework_id))
    wait_for(new, lambda e: isinstance(e, Subscribed))
    with harness.mesos.master.lock:
        theirs = harness.mesos.master.frameworks[sub.framework_id].stream
    watched_until = time.monotonic() + 1.5  # five heartbeats
    while time.monotonic() < watched_until:
        with harness.mesos.master.lock:
            fw = harness.mesos.master.frameworks[sub.framework_id]
            assert fw.connected and fw.stream is theirs, "the deposed adapter took it back"
        time.sleep(0.05)

def test_a_list_of_masters_is_tried_in_turn(harness: Harness) -> None:
    with socket.socket() as s:  # a port nothing listens on: a master that is down
        s.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{s.getsockname()[1]}"
    cfg = MesosConfig(master=f"{down},{harness.mesos.master_url}", tick_seconds=0.05)
    assert cfg.master.split(",")[0] == down  # the adapter takes the forms config.py makes
    adapter = MesosAdapter(cfg, MemoryFrameworkIdStore())
    harness.adapters.append(adapter)
    started = time.monotonic()
    adapter.start()
    wait_for(adapter, lambda e: isinstance(e, Subscribed))
    # pymesos alone would sleep 1.5 to 2.5 s before its next try.
    assert time.monotonic() - started < 1.5


def test_master_failover_resubscribes_and_adopts_tasks(harness: Harness) -> None:
    store = MemoryFrameworkIdStore()
    adapter = harness.adapter(store)
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    task_id = "job.default.keep.4.0.0"
    adapter.launch([LaunchRequest(task_id, template("sleep 30"))])
    wait_for(adapter, update_of(task_id, "TASK_RUNNING"))
    harness.mesos.restart_master(forget_frameworks=True)
    again = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(again, Subscribed) and again.framework_id == sub.framework_id
    # Implicit reconciliation after the failover reports the task still running.
    wait_for(adapter, update_of(task_id, "TASK_RUNNING"))
    adapter.kill(task_id)
    wait_for(adapter, update_of(task_id, "TASK_KILLED"))


def test_removed_framework_registers_anew(local_mesos: Callable[..., LocalMesos]) -> None:
    h = Harness(local_mesos(failover_timeout_cap=0.2))
    try:
        store = MemoryFrameworkIdStore()
        first = h.adapter(store)
        sub = wait_for(first, lambda e: isinstance(e, Subscribed))
        assert isinstance(sub, Subscribed)
        first.stop()
        poll(lambda: sub.framework_id in h.mesos.master.removed_frameworks)
        second = h.adapter(store)
        fresh = wait_for(second, lambda e: isinstance(e, Subscribed))
        assert isinstance(fresh, Subscribed) and fresh.framework_id != sub.framework_id
        poll(lambda: store.framework_id == fresh.framework_id)
    finally:
        for a in h.adapters:
            a.stop()


def test_launch_of_an_invalid_task_id_is_reported_not_sent() -> None:
    adapter = MesosAdapter(MesosConfig(master="127.0.0.1:1"), MemoryFrameworkIdStore())
    adapter.launch([LaunchRequest("bad/id", template("true"))])
    assert adapter.pending_count == 0
    event = adapter.events.get_nowait()
    assert isinstance(event, TaskUpdate)
    assert (event.task_id, event.state, event.source) == ("bad/id", "TASK_ERROR",
                                                          "SOURCE_FRAMEWORK")
    assert "rejected by Mesos" in (event.message or "")


def test_kill_asked_just_before_stop_is_still_sent(harness: Harness) -> None:
    adapter = harness.adapter(MemoryFrameworkIdStore())
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    task_id = "job.default.last.2.0.0"
    adapter.launch([LaunchRequest(task_id, template("sleep 30"))])
    wait_for(adapter, update_of(task_id, "TASK_RUNNING"))
    adapter.kill(task_id, grace_seconds=0)
    adapter.stop()
    task = harness.mesos.master.all_tasks[(sub.framework_id, task_id)]
    poll(lambda: task.state in ("TASK_KILLING", "TASK_KILLED"))


def test_multi_role_framework_launches_with_allocation_info(harness: Harness) -> None:
    adapter = harness.adapter(MemoryFrameworkIdStore(), roles=("batch", "web"))
    sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    info = harness.mesos.master.frameworks[sub.framework_id].info
    assert info["roles"] == ["batch", "web"] and "role" not in info
    assert "MULTI_ROLE" in {c["type"] for c in info["capabilities"]}
    task_id = "job.default.multi.8.0.0"
    adapter.launch([LaunchRequest(task_id, template("true"))])
    wait_for(adapter, update_of(task_id, "TASK_FINISHED"))
    task = harness.mesos.master.all_tasks[(sub.framework_id, task_id)]
    roles = {r["allocation_info"]["role"] for r in task.info["resources"]}
    assert len(roles) == 1 and roles <= {"batch", "web"}


class FlakyStore(MemoryFrameworkIdStore):
    """Fails its first reads, as etcd does while unreachable."""

    def __init__(self, framework_id: str | None, failures: int) -> None:
        super().__init__(framework_id)
        self.failures = failures

    def get(self) -> str | None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("etcd unavailable")
        return super().get()


def test_framework_id_read_is_retried_before_subscribing(harness: Harness) -> None:
    first = harness.adapter(MemoryFrameworkIdStore())
    sub = wait_for(first, lambda e: isinstance(e, Subscribed))
    assert isinstance(sub, Subscribed)
    first.stop()
    store = FlakyStore(sub.framework_id, failures=2)
    second = harness.adapter(store, reconnect_delay_seconds=0.05)
    again = wait_for(second, lambda e: isinstance(e, Subscribed))
    assert isinstance(again, Subscribed) and again.framework_id == sub.framework_id
    assert store.failures == 0


def test_pymesos_cannot_interrupt_the_main_thread() -> None:
    assert signal.getsignal(signal.SIGINT) is not pymesos.process._handle_sigint
    assert pymesos.process.thread.__name__ == "_NoInterrupt"


class _Refusing(BaseHTTPRequestHandler):
    def _fail(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _fail

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_dead_driver_thread_is_replaced() -> None:
    """A master answering SUBSCRIBE with an error kills pymesos' thread; the adapter starts
    another (with a delay) and the process carries on."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = REGISTRY.get_sample_value("docket_mesos_reconnects_total",
                                       {"reason": "driver_died"}) or 0.0
    adapter = MesosAdapter(MesosConfig(master=f"127.0.0.1:{server.server_address[1]}",
                                       tick_seconds=0.05, reconnect_delay_seconds=0.1),
                           MemoryFrameworkIdStore())
    adapter.start()
    try:
        poll(lambda: (REGISTRY.get_sample_value("docket_mesos_reconnects_total",
                                                {"reason": "driver_died"}) or 0) >= before + 2)
        assert not adapter.connected
    finally:
        adapter.stop()
        server.shutdown()
        server.server_close()


def test_constraints_count_tasks_adopted_after_restart(harness: Harness) -> None:
    store = MemoryFrameworkIdStore()
    first = harness.adapter(store)
    wait_for(first, lambda e: isinstance(e, Subscribed))
    t = template("sleep 30", constraints=[["hostname", "UNIQUE"]])
    ids = [f"svc.default.api.6.{i}.0" for i in range(3)]
    first.launch([LaunchRequest(ids[0], t)])
    launched = wait_for(first, lambda e: isinstance(e, TaskLaunched))
    assert isinstance(launched, TaskLaunched)
    wait_for(first, update_of(ids[0], "TASK_RUNNING"))
    first.stop()

    second = harness.adapter(store, known=lambda: [(ids[0], launched.agent_id)],
                             accept_refuse_seconds=0.1)  # see test_unique_constraint_...
    wait_for(second, lambda e: isinstance(e, Subscribed))
    answer = wait_for(second, update_of(ids[0], "TASK_RUNNING"))
    assert isinstance(answer, TaskUpdate) and answer.hostname == launched.hostname
    second.launch([LaunchRequest(i, t) for i in ids[1:]])
    placed = wait_for(second, lambda e: isinstance(e, TaskLaunched))
    assert isinstance(placed, TaskLaunched) and placed.hostname != launched.hostname
    # An offer was looked at with the last task pending, and declined.
    before = declined()
    poll(lambda: declined() >= before + 1)
    assert second.pending_count == 1  # the adopted task still holds its host
    for i in ids[:2]:
        second.kill(i)
    second.cancel(ids[2])


def test_reconciles_periodically_not_only_on_subscription(harness: Harness) -> None:
    # A lost update the master generated itself (no uuid, never resent) is found again.
    asked = threading.Event()
    calls: list[float] = []

    def known() -> list[tuple[str, str | None]]:
        calls.append(time.monotonic())
        if len(calls) >= 3:
            asked.set()
        return [("job.default.lost.9.0.0", None)]

    adapter = harness.adapter(MemoryFrameworkIdStore(), known=known,
                              reconcile_interval_seconds=0.5)
    wait_for(adapter, lambda e: isinstance(e, Subscribed))
    seen: list[MesosEvent] = []
    # Unknown to Mesos: each reconciliation answers for it, with no uuid.
    lost = update_of("job.default.lost.9.0.0", "TASK_GONE", "TASK_UNKNOWN", "TASK_LOST")
    first = wait_for(adapter, lost, seen)
    second = wait_for(adapter, lost, seen)
    assert isinstance(first, TaskUpdate) and isinstance(second, TaskUpdate)
    assert first.reason == second.reason == "REASON_RECONCILIATION"
    assert asked.wait(TIMEOUT), f"known tasks asked {len(calls)} times"
    assert calls[2] - calls[1] >= 0.4, calls


def test_gpu_tasks_run_when_the_framework_declares_gpu_resources(
        local_mesos: Callable[..., LocalMesos]) -> None:
    mesos = local_mesos(agents=1, gpus=1, heartbeat_interval=0.3)
    harness = Harness(mesos)
    try:
        adapter = harness.adapter(MemoryFrameworkIdStore(), gpu_resources=True)
        sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
        assert isinstance(sub, Subscribed)
        info = mesos.master.frameworks[sub.framework_id].info
        assert "GPU_RESOURCES" in {c["type"] for c in info["capabilities"]}
        task_id = "job.default.gpu.3.0.0"
        adapter.launch([LaunchRequest(task_id, template("true", resources={
            "cpus": 0.1, "mem": 16, "gpus": 1}))])
        wait_for(adapter, update_of(task_id, "TASK_FINISHED"))
    finally:
        for a in harness.adapters:
            a.stop()


def test_acks_are_pipelined_and_answered_in_order() -> None:
    """_AckConnection writes several POSTs at once and reads each answer in turn, whether it
    has a length, is chunked, or (202) has neither."""
    from controller.mesos.adapter import _AckConnection

    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(body)
            n = len(received)
            if n % 3 == 1:
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif n % 3 == 2:
                self.send_response(400)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"4\r\nbad \r\n4\r\nack!\r\n0\r\n\r\n")
            else:
                self.send_response(202)  # neither length nor chunks: nothing follows
                self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = _AckConnection(f"127.0.0.1:{server.server_address[1]}", 5)
    try:
        bodies = [b'{"n": %d}' % i for i in range(7)]
        answers = conn.post_all("/api/v1/scheduler", {"Content-Type": "application/json"},
                                bodies)
        assert received == bodies
        assert answers == [(202, b""), (400, b"bad ack!"), (202, b"")] * 2 + [(202, b"")]
        assert conn.post_all("/api/v1/scheduler", {}, [b"{}"]) == [(400, b"bad ack!")]
    finally:
        conn.close()
        server.shutdown()
        server.server_close()
