"""The four runners against a real etcd and the embedded Mesos (simulated agents), driven by
the in-process controller: sync (success, failure, timeout), promise, async with handlers,
and the subscription across an etcd restart with no event lost or repeated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.api import Job, JobPhase
from controller.client import (
    Client,
    Event,
    ExecutionEvent,
    JobFailed,
    Selector,
    StatusEvent,
    Subscription,
)
from controller.localmesos import LocalMesos
from controller.store import EtcdServer, Store
from tests.e2e.harness import Docket, sim

pytestmark = pytest.mark.integration

WAIT = 20.0


def job(name: str, completions: int = 1, **template: Any) -> Job:
    return Job.model_validate({
        "apiVersion": "docket.dev/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"completions": completions, "parallelism": 1, "backoffLimit": 0,
                 "template": sim(**template)}})


@pytest.fixture
def docket(store: Store, local_mesos: Callable[..., LocalMesos]) -> Iterator[Client]:
    d = Docket(store, local_mesos(simulate=True)).start()
    try:
        with Client(store=store) as client:
            yield client
    finally:
        d.stop()


def ident(e: Event) -> tuple[Any, ...]:
    return (type(e).__name__, e.namespace, e.name,
            e.task_id if isinstance(e, ExecutionEvent) else "", e.revision)


def test_sync_run_returns_status_and_executions(docket: Client) -> None:
    result = docket.run(job("hello", completions=2, duration=0.05), timeout=WAIT)
    assert result.succeeded and result.status.succeeded == 2
    assert [(r.index, r.state, r.exit_code) for r in result.executions] == [
        (0, "TASK_FINISHED", 0), (1, "TASK_FINISHED", 0)]


def test_sync_run_raises_on_failure(docket: Client) -> None:
    with pytest.raises(JobFailed, match=r"job default/bad failed.*exit codes \[3\]") as info:
        docket.run(job("bad", duration=0.05, exit_code=3), timeout=WAIT)
    assert info.value.status.phase == JobPhase.FAILED
    assert [r.exit_code for r in info.value.executions] == [3]


def test_sync_run_times_out_naming_the_job(docket: Client) -> None:
    with pytest.raises(TimeoutError, match=r"job default/slow did not end within 0.5s "
                                           r"\(phase (Pending|Running)"):
        docket.run(job("slow", duration=30), timeout=0.5)
    docket.delete(Job, "default", "slow")


def test_promise_runner_resolves_each_future(docket: Client) -> None:
    futures = [docket.submit(job(f"many-{i}", duration=0.05, exit_code=i % 2))
               for i in range(4)]
    outcomes = []
    for f in futures:
        exc = f.exception(WAIT)
        outcomes.append("failed" if isinstance(exc, JobFailed) else f.result().status.phase)
    assert outcomes == ["Succeeded", "failed", "Succeeded", "failed"]


def test_async_runner_with_handlers(docket: Client) -> None:
    phases: list[str] = []
    states: list[str] = []

    async def main() -> bool:
        def on_execution(event: Event) -> None:
            assert isinstance(event, ExecutionEvent) and event.record is not None
            states.append(event.record.state)

        async def on_phase(event: Event) -> None:
            assert isinstance(event, StatusEvent) and event.phase is not None
            if phases[-1:] != [event.phase]:
                phases.append(event.phase)

        mine = Selector(kinds=["Job"], name="events")
        docket.on(lambda e: isinstance(e, ExecutionEvent), on_execution, selector=mine)
        docket.on(lambda e: isinstance(e, StatusEvent), on_phase, selector=mine)
        ticks = 0

        async def tick() -> None:  # the loop stays free while the Job runs
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        result = await docket.run_async(job("events", completions=2, duration=0.1),
                                        timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while phases[-1:] != ["Succeeded"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        ticker.cancel()
        return result.succeeded and ticks > 10

    assert asyncio.run(main())
    assert phases[0] in ("Pending", "Running") and phases[-1] == "Succeeded"
    assert states.count("TASK_FINISHED") == 2


def collect(sub: Subscription, until: Callable[[list[Event]], bool]) -> list[Event]:
    deadline = time.monotonic() + WAIT
    out: list[Event] = []
    while not until(out):
        assert time.monotonic() < deadline, f"timed out; got {[ident(e) for e in out]}"
        event = sub.get(timeout=0.1)
        if event is not None:
            out.append(event)
    return out


def ended(name: str) -> Callable[[list[Event]], bool]:
    return lambda events: any(isinstance(e, StatusEvent) and e.name == name
                              and e.phase == "Succeeded" for e in events)


def test_subscription_across_an_etcd_restart(private_etcd: EtcdServer, etcd_prefix: str,
                                             local_mesos: Callable[..., LocalMesos]) -> None:
    store = Store(private_etcd.endpoint, prefix=etcd_prefix, retry_seconds=10)
    d = Docket(store, local_mesos(simulate=True)).start()
    try:
        # A client of its own, as a user's program would be: its own etcd connections.
        with Client(private_etcd.endpoint, prefix=etcd_prefix, retry_seconds=10) as client:
            sub = client.subscribe(Selector(kinds=["Job"]))
            start = sub.next_revision
            client.apply(job("across", completions=4, duration=0.3))
            before = collect(sub, lambda ev: any(isinstance(e, ExecutionEvent) for e in ev))
            private_etcd.restart()
            after = collect(sub, ended("across"))
            restarts = sub.restarts
            sub.close()
            events = before + after
            # Nothing repeated, in revision order.
            assert len({ident(e) for e in events}) == len(events)
            assert [e.revision for e in events] == sorted(e.revision for e in events)
            assert restarts >= 1
            # Nothing lost: a subscription from the same start, without a restart, replays
            # exactly the same events.
            with client.subscribe(Selector(kinds=["Job"]), from_revision=start) as replay:
                again = collect(replay, lambda ev: bool(ev) and
                                ev[-1].revision >= events[-1].revision)
            assert [ident(e) for e in again] == [ident(e) for e in events]
            # And every record ends as etcd holds it.
            last = {e.task_id: e.record for e in events
                    if isinstance(e, ExecutionEvent)}
            assert {r.task_id: r for r in client.executions("job", "default", "across")} == last
            assert len(last) == 4
    finally:
        d.stop()  # slow (~10 s): the controller's own watches time out after the restart
        store.close()
