"""The offer-time throttle gate (controller/mesos/throttle.py): tables of who is admitted and
who is held, then properties over arrival orders and task ends: matching live tasks never
exceed a limit, and no waiting launch starves while its throttle has room."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.mesos.throttle import Waiting, fair_order, gate, live_counts


def w(task_id: str, owner: str, *throttles: str) -> Waiting:
    return Waiting(task_id, owner, throttles)


# (waiting, limits, live) -> (admitted, held)
TABLE = [
    pytest.param([w("a1", "A", "t"), w("a2", "A", "t")], {"t": 5}, {},
                 ("a1", "a2"), {"t": ()}, id="room-for-all"),
    pytest.param([w("a1", "A", "t"), w("a2", "A", "t"), w("a3", "A", "t")], {"t": 2}, {},
                 ("a1", "a2"), {"t": ("a3",)}, id="oldest-first"),
    pytest.param([w("a1", "A", "t")], {"t": 2}, {"t": 2},
                 (), {"t": ("a1",)}, id="full"),
    pytest.param([w("a1", "A", "t")], {"t": 2}, {"t": 7},
                 (), {"t": ("a1",)}, id="over-full-after-a-limit-lowered"),
    pytest.param([w("a1", "A", "t")], {"t": 0}, {},
                 (), {"t": ("a1",)}, id="limit-zero-holds-everything"),
    pytest.param([w("a1", "A"), w("a2", "A", "t")], {"t": 0}, {},
                 ("a1",), {"t": ("a2",)}, id="no-throttle-never-held"),
    pytest.param([w("a1", "A", "gone"), w("a2", "A", "t")], {"t": 1}, {"gone": 9},
                 ("a1", "a2"), {"t": ()}, id="unknown-throttle-ignored"),
    pytest.param([w("a1", "A", "t"), w("a2", "A", "t"), w("a3", "A", "t"),
                  w("b1", "B", "t"), w("c1", "C", "t"), w("b2", "B", "t")], {"t": 3}, {},
                 ("a1", "b1", "c1"), {"t": ("a2", "b2", "a3")}, id="fair-between-objects"),
    pytest.param([w("a1", "A", "t"), w("a2", "A", "t"), w("b1", "B", "t")], {"t": 2}, {},
                 ("a1", "b1"), {"t": ("a2",)}, id="second-of-one-after-first-of-other"),
    pytest.param([w("a1", "A", "t", "u"), w("b1", "B", "t"), w("c1", "C", "u")],
                 {"t": 1, "u": 1}, {"u": 1},
                 ("b1",), {"t": (), "u": ("a1", "c1")}, id="all-throttles-need-room"),
    pytest.param([w("a1", "A", "t", "u"), w("b1", "B", "t"), w("c1", "C", "u")],
                 {"t": 1, "u": 1}, {},
                 ("a1",), {"t": ("b1",), "u": ("c1",)}, id="one-launch-takes-room-of-each"),
    pytest.param([w("a1", "A", "t", "t")], {"t": 1}, {},
                 ("a1",), {"t": ()}, id="a-throttle-named-twice-counts-once"),
    pytest.param([w("a1", "A", "s"), w("a2", "A", "t"), w("a3", "A", "s")],
                 {"s": 1, "t": 1}, {},
                 ("a1", "a2"), {"s": ("a3",), "t": ()}, id="younger-passes-held-of-other"),
]


@pytest.mark.parametrize(("waiting", "limits", "live", "admitted", "held"), TABLE)
def test_gate_table(waiting: list[Waiting], limits: dict[str, int], live: dict[str, int],
                    admitted: tuple[str, ...], held: dict[str, tuple[str, ...]]) -> None:
    judged = gate(waiting, limits, live)
    assert judged.admitted == admitted
    assert judged.held == held


def test_admitted_keep_arrival_order() -> None:
    # Fairness picks who; the matcher still sees them oldest first.
    waiting = [w("a1", "A", "t"), w("a2", "A", "t"), w("b1", "B", "t")]
    assert gate(waiting, {"t": 3}, {}).admitted == ("a1", "a2", "b1")


def test_fair_order_round_robin_by_oldest() -> None:
    waiting = [w("b1", "B"), w("a1", "A"), w("b2", "B"), w("b3", "B"), w("a2", "A"),
               w("c1", "C")]
    assert [x.task_id for x in fair_order(waiting)] == ["b1", "a1", "c1", "b2", "a2", "b3"]


LIVE_TABLE = [
    pytest.param({"t": 5}, [w("a1", "A", "t"), w("a2", "A", "t")], None, {"t": 3},
                 id="waiting-intents-taken-off"),
    pytest.param({"t": 1}, [w("a1", "A", "t"), w("a2", "A", "t")], None, {"t": 0},
                 id="never-below-zero"),
    pytest.param({"t": 2}, [w("a1", "A", "t")], {"t": 4}, {"t": 4},
                 id="launched-here-is-a-floor"),
    pytest.param({}, [w("a1", "A", "t")], {"t": 2}, {"t": 2}, id="floor-without-usage"),
    pytest.param({"t": 3}, [w("a1", "A", "t", "t")], None, {"t": 2},
                 id="named-twice-counted-once"),
]


@pytest.mark.parametrize(("usage", "waiting", "launched", "expected"), LIVE_TABLE)
def test_live_counts(usage: dict[str, int], waiting: list[Waiting],
                     launched: dict[str, int] | None, expected: dict[str, int]) -> None:
    assert live_counts(usage, waiting, launched) == expected


# --- properties ------------------------------------------------------------------------------
THROTTLES = ("s", "t")
arrivals = st.lists(
    st.tuples(st.sampled_from("ABC"),
              st.lists(st.sampled_from(THROTTLES), max_size=2, unique=True)),
    min_size=1, max_size=25)
limits_st = st.fixed_dictionaries({t: st.integers(0, 4) for t in THROTTLES})


class World:
    """Launches waiting in arrival order, tasks live per throttle, and the source's view:
    usage counts the waiting launches' intents too, as the recorded executions do."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.waiting: list[Waiting] = []
        self.live: dict[str, tuple[str, ...]] = {}  # task id -> throttles
        self.seq = 0

    def arrive(self, owner: str, throttles: list[str]) -> None:
        self.seq += 1
        self.waiting.append(Waiting(f"{owner}{self.seq}", owner, tuple(throttles)))

    def usage(self) -> dict[str, int]:
        counts = dict.fromkeys(THROTTLES, 0)
        for throttles in [*self.live.values(), *(x.throttles for x in self.waiting)]:
            for t in throttles:
                counts[t] += 1
        return counts

    def live_of(self, throttle: str) -> int:
        return sum(throttle in ts for ts in self.live.values())

    def round(self, placeable: int) -> tuple[list[str], dict[str, tuple[str, ...]]]:
        """One offer round: the gate, then a matcher that has room for `placeable` of the
        admitted (oldest first); placed ones go live at once."""
        judged = gate(self.waiting, self.limits, live_counts(self.usage(), self.waiting))
        placed = list(judged.admitted[:placeable])
        by_id = {x.task_id: x for x in self.waiting}
        for task_id in placed:
            self.live[task_id] = by_id[task_id].throttles
        self.waiting = [x for x in self.waiting if x.task_id not in placed]
        return placed, judged.held


steps = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.sampled_from("ABC"),
                  st.lists(st.sampled_from(THROTTLES), max_size=2, unique=True)),
        st.tuples(st.just("end"), st.integers(0, 50)),
        st.tuples(st.just("round"), st.integers(0, 6)),
    ),
    max_size=60)


@settings(max_examples=200, deadline=None)
@given(limits=limits_st, steps=steps)
def test_live_never_exceeds_a_limit(limits: dict[str, int],
                                    steps: list[tuple[object, ...]]) -> None:
    world = World(limits)
    for step in steps:
        if step[0] == "arrive":
            world.arrive(str(step[1]), list(step[2]))  # type: ignore[call-overload]
        elif step[0] == "end" and world.live:
            ids = sorted(world.live)
            del world.live[ids[int(step[1]) % len(ids)]]  # type: ignore[call-overload]
        elif step[0] == "round":
            world.round(int(step[1]))  # type: ignore[call-overload]
        for t in THROTTLES:
            assert world.live_of(t) <= limits[t]


@settings(max_examples=200, deadline=None)
@given(limits=limits_st, arrived=arrivals, data=st.data())
def test_a_round_with_room_admits_the_fairest_waiting(
        limits: dict[str, int], arrived: list[tuple[str, list[str]]], data: st.DataObject
) -> None:
    world = World(limits)
    for owner, throttles in arrived:
        world.arrive(owner, throttles)
    # Some tasks already run (at most the limit), the rest wait.
    for t in THROTTLES:
        for i in range(data.draw(st.integers(0, limits[t]))):
            world.live[f"old-{t}{i}"] = (t,)
    before = {t: limits[t] - world.live_of(t) for t in THROTTLES}
    order = fair_order(world.waiting)
    judged = gate(world.waiting, limits, live_counts(world.usage(), world.waiting))
    admitted = set(judged.admitted)
    for t in THROTTLES:
        naming = [x for x in order if t in x.throttles]
        taken = [x for x in naming if x.task_id in admitted]
        # Never more than the room; when something naming it is held, either the room is
        # used up or that launch waits for another of its throttles (one that is full).
        assert len(taken) <= before[t]
        for x in naming:
            if x.task_id in admitted:
                continue
            # Full at its turn: used up by admitted launches fairer than it.
            ahead = order[:order.index(x)]
            full = [u for u in x.throttles
                    if sum(u in y.throttles for y in ahead if y.task_id in admitted)
                    >= before[u]]
            assert full, f"{x} held though each of its throttles had room"
            assert [u for u in THROTTLES if x.task_id in judged.held[u]] == \
                [u for u in THROTTLES if u in full]
        # The fairest launch naming only this throttle goes first when there is room.
        alone = [x for x in naming if x.throttles == (t,)]
        if before[t] > 0 and alone and not any(len(x.throttles) > 1 for x in naming):
            assert alone[0].task_id in admitted
    # Fairness: a launch held while a later one (in fair order) of the same throttles was
    # admitted never happens.
    position = {x.task_id: i for i, x in enumerate(order)}
    for x in order:
        if x.task_id in admitted:
            continue
        for y in order:
            if (y.task_id in admitted and position[y.task_id] > position[x.task_id]
                    and set(x.throttles) <= set(y.throttles)):
                raise AssertionError(f"{y} admitted past {x}")


@settings(max_examples=200, deadline=None)
@given(limits=st.fixed_dictionaries({t: st.integers(1, 4) for t in THROTTLES}),
       arrived=arrivals, ends=st.lists(st.integers(0, 50), max_size=60))
def test_no_waiting_launch_starves(limits: dict[str, int],
                                   arrived: list[tuple[str, list[str]]],
                                   ends: list[int]) -> None:
    """A task ends before each round (which one is the data's choice) and the matcher places
    everything admitted: every round where the oldest waiting launch's throttles have room
    starts it, each object's oldest waiting launch goes before another's younger ones, and
    all have started within two rounds per launch (each round starts one or ends one)."""
    world = World(limits)
    for owner, throttles in arrived:
        world.arrive(owner, throttles)
    ends_iter = iter(ends)
    for _ in range(2 * len(arrived) + 1):
        if world.live:
            ids = sorted(world.live)
            del world.live[ids[next(ends_iter, 0) % len(ids)]]
        room = {t: limits[t] - world.live_of(t) for t in THROTTLES}
        oldest = world.waiting[0]
        firsts = {x.owner: x for x in reversed(world.waiting)}  # each object's oldest
        placed, _held = world.round(placeable=100)
        if all(room[t] > 0 for t in oldest.throttles):
            assert oldest.task_id in placed
        for x in world.waiting:  # still waiting after the round
            if firsts[x.owner] is not x:
                continue
            # An object's oldest waits only when this round's starts used up the room of
            # one of its throttles.
            assert any(room[t] <= sum(t in world.live[p] for p in placed)
                       for t in x.throttles)
        if not world.waiting:
            break
    assert not world.waiting, "a launch still waits after a task ended before every round"


def test_room_for_one_goes_to_the_object_running_fewest_not_the_oldest_backlog() -> None:
    """Across rounds: an object whose backlog came first and already runs tasks does not keep
    a later object's first task waiting (without `running`, plain oldest-first would)."""
    waiting = [Waiting("a-4", "a", ("mail",)), Waiting("a-5", "a", ("mail",)),
               Waiting("b-0", "b", ("mail",))]
    assert gate(waiting, {"mail": 4}, {"mail": 3}).admitted == ("a-4",)
    assert gate(waiting, {"mail": 4}, {"mail": 3}, {"a": 3}).admitted == ("b-0",)
    assert [w.task_id for w in fair_order(waiting, {"a": 1})] == ["b-0", "a-4", "a-5"]
