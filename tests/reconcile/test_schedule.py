"""Schedule math: parsing as CronJobSpec does, the DST rule at both transitions of
Europe/Paris and America/New_York, and counting missed slots without visiting them.

The oracle below is independent of the module: it walks every UTC minute of a window and asks
croniter whether the local wall time matches, then applies the DST rule as stated."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.api import CronJobSpec
from controller.reconcile.schedule import Schedule, ScheduleError, slot_id, slot_instant


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def slots(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Slots in (start, end], by next_slot."""
    out = []
    t = schedule.next_slot(start)
    while t is not None and t <= end:
        out.append(t)
        t = schedule.next_slot(t)
    return out


# -- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "zone", "field", "fragment"), [
    ("0 0 * *", "UTC", "spec.schedule", "5 fields"),
    ("0 0 * * * *", "UTC", "spec.schedule", "5 fields"),
    ("61 * * * *", "UTC", "spec.schedule", "invalid"),
    ("0 0 L * *", "UTC", "spec.schedule", "not supported"),
    ("0 0 1W * *", "UTC", "spec.schedule", "not supported"),
    ("0 0 * * 5#2", "UTC", "spec.schedule", "not supported"),
    ("0 0 30 2 *", "UTC", "spec.schedule", "never matches"),
    ("0 0 31 4,6,9,11 *", "UTC", "spec.schedule", "never matches"),
    ("@fortnightly", "UTC", "spec.schedule", "unknown schedule macro"),
    ("0 0 * * *", "Mars/Olympus", "spec.timeZone", "unknown time zone"),
])
def test_refused_expressions_name_their_field(expression: str, zone: str, field: str,
                                              fragment: str) -> None:
    with pytest.raises(ScheduleError) as exc:
        Schedule.parse(expression, zone)
    assert exc.value.field == field
    assert fragment in str(exc.value)


@pytest.mark.parametrize(("macro", "expansion"), [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
])
def test_macros_are_their_expansion(macro: str, expansion: str) -> None:
    a, b = Schedule.parse(macro), Schedule.parse(expansion)
    start = utc(2026, 1, 1)
    assert slots(a, start, start + timedelta(days=40)) == slots(b, start,
                                                               start + timedelta(days=40))


EXPRESSIONS = [
    "* * * * *", "*/15 * * * *", "5/10 * * * *", "0 9-17 * * MON-FRI", "0 0 1,15 * *",
    "0 0 * jan-mar sun", "0 0 ? * ?", "30 2 * * 7", "0 0 29 2 *", "0 0 30 2 1", "0 0 30 2 *",
    "0 0 L * *", "0 0 1W * *", "0 0 * * 5#2", "0 0 * * 5L", "60 * * * *", "* * * *",
    "@hourly", "@reboot", "0 0 31 apr *", "1-5/2 */3 1-31 * *",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_planner_accepts_exactly_what_docket_validate_accepts(expression: str) -> None:
    template = {"spec": {"template": {"command": "x"}}}
    try:
        CronJobSpec.model_validate({"schedule": expression, "jobTemplate": template})
        api_ok = True
    except ValidationError:
        api_ok = False
    try:
        Schedule.parse(expression)
        planner_ok = True
    except ScheduleError:
        planner_ok = False
    assert api_ok == planner_ok


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    s = Schedule.parse("0 0 13 * 5")  # the 13th, and every Friday
    days = [t.day for t in slots(s, utc(2026, 2, 1), utc(2026, 3, 1))]
    assert days == [6, 13, 20, 27]  # Fridays of February 2026, the 13th being one


def test_slot_ids_are_minutes_since_the_epoch() -> None:
    t = utc(2026, 3, 29, 1, 0)
    assert slot_id(t) == int(t.timestamp()) // 60
    assert slot_instant(slot_id(t)) == t
    assert slot_id(utc(1970, 1, 1, 0, 1)) == 1


# -- the DST rule ----------------------------------------------------------------------------

# (zone, expression, window (start, end], the slots in UTC). Paris: 2026-03-29 02:00 CET ->
# 03:00 CEST at 01:00Z, 2026-10-25 03:00 CEST -> 02:00 CET at 01:00Z. New York: 2026-03-08
# 02:00 EST -> 03:00 EDT at 07:00Z, 2026-11-01 02:00 EDT -> 01:00 EST at 06:00Z.
DST_TABLE = [
    # Spring forward: 02:00 does not exist, it runs at 03:00 CEST, with 03:00 itself, once.
    ("Europe/Paris", "0 * * * *", utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 2, 30),
     [utc(2026, 3, 28, 23), utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]),
    # Fall back: 02:00 runs at its first occurrence (CEST) only.
    ("Europe/Paris", "0 * * * *", utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 3, 30),
     [utc(2026, 10, 24, 23), utc(2026, 10, 25, 0), utc(2026, 10, 25, 2),
      utc(2026, 10, 25, 3)]),
    ("Europe/Paris", "30 2 * * *", utc(2026, 3, 27, 12), utc(2026, 3, 30, 12),
     [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]),
    ("Europe/Paris", "30 2 * * *", utc(2026, 10, 23, 12), utc(2026, 10, 26, 12),
     [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
    ("Europe/Paris", "*/15 * * * *", utc(2026, 3, 29, 0, 20), utc(2026, 3, 29, 1, 35),
     [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1, 0),
      utc(2026, 3, 29, 1, 15), utc(2026, 3, 29, 1, 30)]),
    ("Europe/Paris", "*/15 * * * *", utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 2, 20),
     [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 0, 30),
      utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 2, 15)]),
    ("America/New_York", "0 * * * *", utc(2026, 3, 8, 4, 30), utc(2026, 3, 8, 8, 30),
     [utc(2026, 3, 8, 5), utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)]),
    ("America/New_York", "0 * * * *", utc(2026, 11, 1, 3, 30), utc(2026, 11, 1, 8, 30),
     [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), utc(2026, 11, 1, 8)]),
    ("America/New_York", "30 2 * * *", utc(2026, 3, 6, 12), utc(2026, 3, 9, 12),
     [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]),
    # New York repeats 01:00-02:00, so 02:30 is unambiguous there; 01:30 runs once.
    ("America/New_York", "30 2 * * *", utc(2026, 10, 30, 12), utc(2026, 11, 2, 12),
     [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)]),
    ("America/New_York", "30 1 * * *", utc(2026, 10, 31, 12), utc(2026, 11, 1, 12),
     [utc(2026, 11, 1, 5, 30)]),
    ("America/New_York", "*/15 * * * *", utc(2026, 3, 8, 6, 20), utc(2026, 3, 8, 7, 20),
     [utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 6, 45), utc(2026, 3, 8, 7, 0),
      utc(2026, 3, 8, 7, 15)]),
    ("America/New_York", "*/15 * * * *", utc(2026, 11, 1, 5, 20), utc(2026, 11, 1, 7, 20),
     [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 7, 0),
      utc(2026, 11, 1, 7, 15)]),
]


@pytest.mark.parametrize(("zone", "expression", "start", "end", "expected"), DST_TABLE)
def test_dst_transitions(zone: str, expression: str, start: datetime, end: datetime,
                         expected: list[datetime]) -> None:
    s = Schedule.parse(expression, zone)
    assert slots(s, start, end) == expected
    assert s.count(start, end) == len(expected)
    assert oracle(zone, expression, start, end) == expected
    # prev_slot walks the same slots back, from any instant in between.
    for a, b in itertools.pairwise(expected):
        for t in (b - timedelta(seconds=1), a + (b - a) / 2, a):
            assert s.prev_slot(t) == a
        assert s.next_slot(a) == b
    assert s.most_recent_slot(start, end) == (expected[-1], len(expected))


def oracle(zone: str, expression: str, start: datetime, end: datetime) -> list[datetime]:
    """Slots in (start, end] by the rule as stated, minute by minute."""
    tz = ZoneInfo(zone)
    # croniter walks naive wall-clock times: no zone, so no DST of its own.
    walls = set()
    it = croniter(expression, start.astimezone(tz).replace(tzinfo=None) - timedelta(hours=4))
    while (w := it.get_next(datetime)) <= end.astimezone(tz).replace(tzinfo=None) + timedelta(
            hours=4):
        walls.add(w)
    out = []
    m = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while m <= end:
        local = m.astimezone(tz)
        wall = local.replace(tzinfo=None, fold=0)
        before = (m - timedelta(minutes=1)).astimezone(tz).utcoffset()
        jump = local.utcoffset() - before  # type: ignore[operator]
        skipped = [wall - timedelta(minutes=k) for k in range(1, jump // timedelta(minutes=1) + 1)]
        if (local.fold == 0 and wall in walls) or any(w in walls for w in skipped):
            out.append(m)
        m += timedelta(minutes=1)
    return out


WINDOWS = [("Europe/Paris", utc(2026, 3, 28, 12)), ("Europe/Paris", utc(2026, 10, 24, 12)),
           ("America/New_York", utc(2026, 3, 7, 18)), ("America/New_York", utc(2026, 10, 31, 18)),
           ("Australia/Lord_Howe", utc(2026, 4, 4, 6)), ("UTC", utc(2028, 2, 28, 12))]
ORACLE_EXPRESSIONS = ["0 * * * *", "30 2 * * *", "*/15 * * * *", "*/7 1-3 * * *",
                      "0,30 2 * * 0", "59 1 * * *", "0 0 29 2 *", "15 2,3 * * *"]


@cache
def window_slots(zone: str, expression: str, start: datetime) -> tuple[datetime, ...]:
    return tuple(oracle(zone, expression, start, start + timedelta(days=2)))


@settings(max_examples=150, deadline=timedelta(seconds=5), derandomize=True)
@given(window=st.sampled_from(WINDOWS), expression=st.sampled_from(ORACLE_EXPRESSIONS),
       a=st.integers(0, 48 * 3600), b=st.integers(0, 48 * 3600))
def test_queries_agree_with_the_minute_by_minute_oracle(window: tuple[str, datetime],
                                                        expression: str, a: int,
                                                        b: int) -> None:
    zone, base = window
    s = Schedule.parse(expression, zone)
    truth = window_slots(zone, expression, base)
    lo, hi = sorted((base + timedelta(seconds=a), base + timedelta(seconds=b)))
    inside = [t for t in truth if lo < t <= hi]
    assert s.count(lo, hi) == len(inside)
    assert s.most_recent_slot(lo, hi) == ((inside[-1] if inside else None), len(inside))
    later = [t for t in truth if t > lo]
    if later:
        assert s.next_slot(lo) == later[0]
    earlier = [t for t in truth if t <= hi]
    if earlier:
        assert s.prev_slot(hi) == earlier[-1]


# -- outages: counted, not visited -----------------------------------------------------------

def test_a_year_of_outage_is_counted_exactly_without_visiting_its_slots(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Work is counted in calls of the schedule's own steps, not timed: a timing bound fails
    # on a busy machine, a count does not.
    calls = 0
    for name in ("_offset", "_day_ok", "_month_count", "_count_days", "_count_wall",
                 "_transition", "_next_wall", "_prev_wall"):
        original = getattr(Schedule, name)

        def counted(self: Schedule, *args: Any, _original: Any = original) -> Any:
            nonlocal calls
            calls += 1
            return _original(self, *args)

        monkeypatch.setattr(Schedule, name, counted)
    every_minute = Schedule.parse("* * * * *", "Europe/Paris")
    slot, missed = every_minute.most_recent_slot(utc(2025, 1, 1), utc(2026, 1, 1, 0, 0, 30))
    # A slot every UTC minute of 365 days, but for the autumn's repeated hour: its wall
    # times ran at their first occurrence, so its second pass holds no slot. (The spring
    # gap's wall times all run at 03:00, a minute that is a slot anyway.)
    assert missed == 365 * 1440 - 60
    assert slot == utc(2026, 1, 1, 0, 0)
    # Days and months are looked at (about 700 steps), never the 525,540 minutes.
    assert 0 < calls < 2_000, calls


def test_ten_years_of_an_hourly_schedule_in_new_york() -> None:
    hourly = Schedule.parse("0 * * * *", "America/New_York")
    start, end = utc(2016, 1, 1, 5), utc(2026, 1, 1, 5)  # local midnights
    count = hourly.count(start, end)
    # Every UTC hour, but for each autumn's repeated 01:00, which runs once.
    assert count == (end - start).days * 24 - 10


def test_a_schedule_that_rarely_fires_is_found_and_counted() -> None:
    leap = Schedule.parse("0 12 29 2 *", "Europe/Paris")
    assert leap.next_slot(utc(2097, 3, 1)) == utc(2104, 2, 29, 11)  # 2100 is not a leap year
    assert leap.prev_slot(utc(2104, 2, 28)) == utc(2096, 2, 29, 11)
    assert leap.count(utc(2000, 1, 1), utc(2100, 1, 1)) == 25


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Schedule.parse("* * * * *").next_slot(datetime(2026, 1, 1))
