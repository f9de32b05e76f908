"""The REVIVE/SUPPRESS state machine on its own: times injected, no master, no sleeps.

Each table is a script of worker ticks as the adapter drives them: an optional event first
(`subscribed`, `launched`), then `decide(now, pending)`, then `sent` when the master took the
call. The expected column is what `decide` answered at that tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.mesos.revive import Call, ReviveSuppress


@dataclass(frozen=True)
class Tick:
    now: float
    pending: int
    expect: Call | None
    event: str | None = None  # "subscribed" or "launched", before the tick
    accepted: bool = True  # whether the master took the call asked for


def run(ticks: list[Tick], revive_interval: float = 1.0, suppress_after: float = 2.0
        ) -> ReviveSuppress:
    machine = ReviveSuppress(revive_interval, suppress_after)
    for i, t in enumerate(ticks):
        if t.event == "subscribed":
            machine.subscribed()
        elif t.event == "launched":
            machine.launched()
        else:
            assert t.event is None, t.event
        call = machine.decide(t.now, t.pending)
        assert call == t.expect, f"tick {i} at {t.now}: {call} != {t.expect}"
        if call is not None and t.accepted:
            machine.sent(call, t.now)
    return machine


SCRIPTS: dict[str, list[Tick]] = {
    # A subscription with work pending revives at once; launches within the next second are
    # folded into one more REVIVE when the second is up, and nothing more after that.
    "revives_coalesce_to_one_a_second": [
        Tick(0.0, 1, "REVIVE", "subscribed"),
        Tick(0.2, 2, None, "launched"),
        Tick(0.5, 3, None, "launched"),
        Tick(0.9, 3, None),
        Tick(1.0, 3, "REVIVE"),
        Tick(1.5, 3, None),
        Tick(5.0, 3, None),  # no new launch: offers keep coming, no REVIVE
        Tick(5.25, 4, "REVIVE", "launched"),  # last one long ago: at once
        Tick(5.5, 5, None, "launched"),
        Tick(6.0, 5, None),
        Tick(6.25, 5, "REVIVE"),
    ],
    # Idle means: every tick since the first that saw nothing pending.
    "suppress_after_two_idle_seconds": [
        Tick(0.0, 1, "REVIVE", "subscribed"),
        Tick(5.0, 0, None),  # idle from here, however long ago the last launch was
        Tick(6.9, 0, None),
        Tick(7.0, 0, "SUPPRESS"),
        Tick(7.5, 0, None),  # once is enough
        Tick(60.0, 0, None),
    ],
    "pending_restarts_the_idle_timer": [
        Tick(0.0, 0, None, "subscribed"),
        Tick(1.5, 1, "REVIVE", "launched"),
        Tick(2.5, 0, None),
        Tick(4.4, 0, None),
        Tick(4.5, 0, "SUPPRESS"),
    ],
    "suppressed_with_work_revives_at_once": [
        Tick(0.0, 0, None, "subscribed"),
        Tick(2.0, 0, "SUPPRESS"),
        Tick(3.0, 1, "REVIVE", "launched"),
        Tick(3.5, 0, None),
        Tick(5.5, 0, "SUPPRESS"),
        Tick(5.75, 1, "REVIVE"),  # suppressed and pending: REVIVE even without a launch
    ],
    "a_wish_is_dropped_when_nothing_is_pending": [
        Tick(0.0, 0, None, "subscribed"),
        Tick(0.5, 0, None, "launched"),  # offers took it before the tick
        Tick(1.0, 1, None),  # no wish left, not suppressed: offers are coming
    ],
    "a_refused_revive_is_asked_again": [
        Tick(0.0, 1, "REVIVE", "subscribed", accepted=False),
        Tick(0.5, 1, "REVIVE"),  # the refused one does not count against the interval
        Tick(0.7, 1, None, "launched"),
        Tick(1.5, 1, "REVIVE", accepted=False),
        Tick(1.75, 1, "REVIVE"),
    ],
    "a_refused_suppress_is_asked_again": [
        Tick(0.0, 0, None, "subscribed"),
        Tick(2.0, 0, "SUPPRESS", accepted=False),
        Tick(2.5, 0, "SUPPRESS", accepted=False),
        Tick(3.0, 0, "SUPPRESS"),
        Tick(3.5, 0, None),
    ],
    # A new subscription: the interval starts over and a REVIVE is wished at once.
    "resubscription_revives_at_once": [
        Tick(0.0, 1, "REVIVE", "subscribed"),
        Tick(0.1, 2, None, "launched"),
        Tick(0.3, 2, "REVIVE", "subscribed"),
        Tick(0.4, 2, None),
    ],
    # The master's suppression state is not known after a subscription: with nothing
    # pending for long already, SUPPRESS again at the first tick (the idle timer is kept).
    "resubscription_suppresses_again": [
        Tick(0.0, 0, None, "subscribed"),
        Tick(2.0, 0, "SUPPRESS"),
        Tick(9.0, 0, "SUPPRESS", "subscribed"),
        Tick(9.5, 0, None),
    ],
    "resubscription_while_suppressed_with_work": [
        Tick(0.0, 0, None, "subscribed"),
        Tick(2.0, 0, "SUPPRESS"),
        Tick(9.0, 1, "REVIVE", "subscribed"),
    ],
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_script(name: str) -> None:
    run(SCRIPTS[name])


def test_suppressed_revives_whatever_the_interval() -> None:
    # With a long interval, a REVIVE 0.75 s after the previous one: suppressed, no offer comes
    # at all, so the interval does not hold it back.
    run([
        Tick(0.0, 1, "REVIVE", "subscribed"),
        Tick(0.25, 0, None),
        Tick(0.5, 0, "SUPPRESS"),
        Tick(0.75, 1, "REVIVE", "launched"),
        Tick(1.0, 1, None, "launched"),  # not suppressed: the interval holds again
        Tick(10.5, 1, None),
        Tick(10.75, 1, "REVIVE"),
    ], revive_interval=10.0, suppress_after=0.25)


def test_suppressed_follows_the_calls_sent() -> None:
    machine = ReviveSuppress(1.0, 2.0)
    assert not machine.suppressed
    machine.subscribed()
    assert machine.decide(0.0, 0) is None and machine.decide(2.0, 0) == "SUPPRESS"
    assert not machine.suppressed  # asked, not yet sent
    machine.sent("SUPPRESS", 2.0)
    assert machine.suppressed
    machine.subscribed()
    assert not machine.suppressed
    machine.sent("SUPPRESS", 3.0)
    assert machine.decide(3.0, 1) == "REVIVE"
    machine.sent("REVIVE", 3.0)
    assert not machine.suppressed


STEP = st.tuples(
    st.floats(0.0, 3.0, allow_nan=False),  # time since the previous tick
    st.integers(0, 2),  # pending
    st.sampled_from([None, None, "launched", "subscribed"]),
    st.booleans(),  # accepted
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=60))
def test_properties(steps: list[tuple[float, int, str | None, bool]]) -> None:
    """Over any script: REVIVE only with work pending, SUPPRESS only without; two REVIVEs
    sent are an interval apart unless offers were suppressed or a subscription came between;
    SUPPRESS only after `suppress_after` of ticks that all saw nothing pending; work pending
    while suppressed always asks for a REVIVE."""
    interval, after = 1.0, 2.0
    machine = ReviveSuppress(interval, after)
    now = 0.0
    last_revive: float | None = None
    idle_since: float | None = None
    for dt, pending, event, accepted in steps:
        now += dt
        if event == "subscribed":
            machine.subscribed()
            last_revive = None
        elif event == "launched":
            machine.launched()
        was_suppressed = machine.suppressed
        call = machine.decide(now, pending)
        idle_since = None if pending else (now if idle_since is None else idle_since)
        if pending and was_suppressed:
            assert call == "REVIVE"
        if call == "REVIVE":
            assert pending
            if not was_suppressed and last_revive is not None:
                assert now - last_revive >= interval
        elif call == "SUPPRESS":
            assert not pending and not was_suppressed
            assert idle_since is not None and now - idle_since >= after
        if call is not None and accepted:
            machine.sent(call, now)
            if call == "REVIVE":
                last_revive = now
