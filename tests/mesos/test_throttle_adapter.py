"""The throttle gate at offer time, end to end through the real adapter on the embedded Mesos
with simulated agents: the master's own view of live tasks never exceeds a throttle's limit,
held work starts promptly once room appears, unthrottled work beside it is never held, and the
test fake (tests/mesos/fake.py) holds work back the same way.

The source is what the controller gives the adapter, in small: a record per launch written
before `launch` (the intent) and ended once the task's terminal update was seen and
acknowledged, so usage counts the waiting launches too, as the recorded executions do."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import pytest

from controller.api.template import TaskTemplate
from controller.localmesos import LocalMesos
from controller.mesos.adapter import MemoryFrameworkIdStore, MesosAdapter, MesosConfig
from controller.mesos.backend import TERMINAL_STATES, LaunchRequest, TaskLaunched, TaskUpdate
from tests.mesos.fake import FakeMesos

THROTTLE = "mail"


class Records:
    """A `ThrottleSource` over intents/records kept as the controller keeps them."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self._limits = dict(limits)
        self._lock = threading.Lock()
        self.live: dict[str, tuple[str, ...]] = {}  # task id -> throttles, until recorded ended
        self.ended_at: dict[str, float] = {}
        self.held_log: list[dict[str, tuple[str, ...]]] = []

    def intend(self, requests: list[LaunchRequest]) -> None:
        with self._lock:
            for r in requests:
                self.live[r.task_id] = r.throttles

    def ended(self, task_id: str) -> None:
        with self._lock:
            self.live.pop(task_id, None)
            self.ended_at[task_id] = time.monotonic()

    def limits(self) -> Mapping[str, int]:
        return dict(self._limits)

    def usage(self) -> Mapping[str, int]:
        with self._lock:
            counts = dict.fromkeys(self._limits, 0)
            for throttles in self.live.values():
                for t in throttles:
                    if t in counts:
                        counts[t] += 1
            return counts

    def held(self, waiting: Mapping[str, tuple[str, ...]]) -> None:
        with self._lock:
            self.held_log.append(dict(waiting))


def sim(duration: float) -> TaskTemplate:
    return TaskTemplate.model_validate({
        "command": "true", "resources": {"cpus": 0.1, "mem": 16},
        "env": {"DOCKET_SIM_DURATION": str(duration), "DOCKET_SIM_EXIT_CODE": "0"}})


def request(name: str, i: int, duration: float, throttled: bool = True) -> LaunchRequest:
    return LaunchRequest(f"Job.t.{name}.1.{i}.0", sim(duration),
                         throttles=(THROTTLE,) if throttled else ())


class Run:
    """An adapter on a simulated localmesos, its events recorded by a thread of its own (as
    the controller's pump does), and a sampler of the master's live tasks."""

    def __init__(self, lm: LocalMesos, source: Records, **config: float) -> None:
        self.lm = lm
        self.source = source
        cfg = MesosConfig(master=lm.master_url, tick_seconds=0.05, **config)  # type: ignore[arg-type]
        self.adapter = MesosAdapter(cfg, MemoryFrameworkIdStore())
        self.adapter.set_throttle_source(source)
        self.launched_at: dict[str, float] = {}
        self.finished: set[str] = set()
        self.max_live_throttled = 0  # the master's live tasks of throttled objects, at most
        self.samples = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._pump, daemon=True),
                         threading.Thread(target=self._sample, daemon=True)]

    def start(self) -> None:
        self.adapter.start()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self.adapter.stop()

    def launch(self, requests: list[LaunchRequest]) -> None:
        self.source.intend(requests)  # intent before launch
        self.adapter.launch(requests)

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.adapter.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(event, TaskLaunched):
                self.launched_at.setdefault(event.task_id, time.monotonic())
            elif isinstance(event, TaskUpdate):
                if event.terminal:
                    assert event.state == "TASK_FINISHED", event
                    self.source.ended(event.task_id)  # recorded...
                    self.finished.add(event.task_id)
                self.adapter.acknowledge(event)  # ...then acknowledged

    def _sample(self) -> None:
        while not self._stop.is_set():
            live = sum(1 for task in self.lm.tasks()
                       if task.state not in TERMINAL_STATES
                       and task.task_id.split(".")[2].startswith("mail"))
            self.max_live_throttled = max(self.max_live_throttled, live)
            self.samples += 1
            time.sleep(0.002)


def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def run(local_mesos: Callable[..., LocalMesos]) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start(limit: int, **config: float) -> Run:
        r = Run(local_mesos(agents=2, simulate=True), Records({THROTTLE: limit}), **config)
        runs.append(r)
        r.start()
        return r

    yield start
    for r in runs:
        r.stop()


@pytest.mark.integration
def test_twenty_through_a_throttle_of_three_beside_unthrottled(run: Callable[..., Run]
                                                                ) -> None:
    r = run(3, revive_interval_seconds=0.2)
    # Two objects, the second's launches arriving after all of the first's: fair between
    # them, so the first round takes the first of each before the second of either.
    throttled = ([request("mail-a", i, 0.2) for i in range(12)]
                 + [request("mail-b", i, 0.2) for i in range(8)])
    free = [request("free", i, 0.2, throttled=False) for i in range(5)]
    r.launch(throttled)
    wait(lambda: len(r.launched_at) >= 3, 5, "the first round")
    r.launch(free)
    wait(lambda: all(f.task_id in r.launched_at for f in free), 2,
         "unthrottled launches while the throttle is full")
    wait(lambda: len(r.finished) == 25, 12, "every task to finish")
    # The master's own count of live throttled tasks, sampled every few ms: up to 3 (the
    # limit is used), never above.
    assert r.samples > 100
    assert r.max_live_throttled == 3
    first_round = sorted(r.launched_at, key=r.launched_at.__getitem__)[:3]
    assert {t.split(".")[2] for t in first_round} == {"mail-a", "mail-b"}
    # Each launched once, by the master's launch log.
    ids = [task_id for _, _, task_id, _ in r.lm.launches()]
    assert sorted(ids) == sorted(x.task_id for x in [*throttled, *free])
    held = {t for report in r.source.held_log for ids_ in report.values() for t in ids_}
    assert held and not held & {f.task_id for f in free}
    assert r.source.held_log[-1] == {THROTTLE: ()}  # nothing held once all went


@pytest.mark.integration
def test_held_work_starts_within_a_second_of_room(run: Callable[..., Run]) -> None:
    """Default offer settings (declines filtered for 60 s, a REVIVE at most every second):
    the room a recorded end makes is found and revived for, not waited out."""
    r = run(1)
    tasks = [request("mail-a", i, 0.3) for i in range(3)]
    r.launch(tasks)
    wait(lambda: len(r.finished) == 3, 8, "the three tasks, one at a time")
    assert r.max_live_throttled == 1
    for before, after in itertools.pairwise(tasks):
        gap = r.launched_at[after.task_id] - r.source.ended_at[before.task_id]
        assert 0 < gap < 1.3, gap


def test_fake_holds_like_the_adapter() -> None:
    source = Records({THROTTLE: 2})
    fake = FakeMesos()
    fake.set_throttle_source(source)
    fake.start()
    tasks = [request("mail-a", i, 0) for i in range(3)] + [request("free", 0, 0, False)]
    source.intend(tasks)
    fake.launch(tasks)
    assert fake.launched == [tasks[0].task_id, tasks[1].task_id, tasks[3].task_id]
    assert fake.held == {THROTTLE: (tasks[2].task_id,)}
    assert source.held_log[-1] == {THROTTLE: (tasks[2].task_id,)}
    fake.finish(tasks[0].task_id)
    _ = fake.events  # the end is not recorded yet: still no room
    assert tasks[2].task_id in fake.pending
    source.ended(tasks[0].task_id)
    _ = fake.events  # read by the controller's pump: held work tried again
    assert fake.launched[-1] == tasks[2].task_id and not fake.pending
    assert source.held_log[-1] == {THROTTLE: ()}
