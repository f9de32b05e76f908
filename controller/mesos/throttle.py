"""The offer-time throttle gate (issue 16): which waiting launches may go to the matcher now.

Owns the decision only, pure: given the launches waiting in this process (in arrival order,
each with its object and the throttles it counts against), each throttle's limit and how many
live tasks already count against it, it answers which launches may be offered to the matcher
this round and, per throttle, which it holds back. No I/O, no clock, no threads, so the rules
are tested as tables and properties (tests/mesos/test_throttle*.py); `Launches` and the test
fake apply it at every offer round.

Why at offer time and not when planning: many objects become ready at once, each planned
alone; only the place that decides launches sees them all, and a limit judged anywhere else
is exceeded by every plan made from the same count.

The rules:

- A launch with no throttle, or only throttles the limits do not name (a throttle removed
  from the policy), is never held.
- Room of a throttle = limit - live (never below 0). A launch is admitted only when every
  throttle it names has room, and then takes one unit of each: everything admitted in one
  round counts at once, whether or not the matcher then finds an offer for it (it may not:
  it stays pending, and the next round judges it again).
- Order: fair between objects, oldest first. An object's k-th waiting launch ranks as its
  running tasks (those this process launched and has not seen end) + k; lower ranks first,
  the oldest first among equal ranks. So one object with a thousand waiting tasks keeps no
  other's first task waiting — neither within a round nor, once it has tasks running, from
  round to round (room for one at a time goes to the object running fewest). The running
  counts are this process's: after a restart they start from nothing, which only makes the
  order plain oldest-first for a while; the limit itself never depends on them.
- A launch held back is listed under each of its throttles that had no room when its turn
  came; a younger launch may still be admitted past it when its own throttles have room.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """One launch waiting for an offer: its task id, the object it belongs to (the unit of
    fairness) and the throttles it counts against."""

    task_id: str
    owner: str
    throttles: tuple[str, ...]


@dataclass(frozen=True)
class Gate:
    admitted: tuple[str, ...]
    """Task ids that may be offered to the matcher this round, in arrival order."""
    held: dict[str, tuple[str, ...]]
    """Every throttle the limits name -> the task ids it holds back (fair order; often
    empty)."""

    @property
    def held_ids(self) -> frozenset[str]:
        return frozenset(t for ids in self.held.values() for t in ids)


def live_counts(usage: Mapping[str, int], waiting: Iterable[Waiting],
                launched: Mapping[str, int] | None = None) -> dict[str, int]:
    """Live tasks per throttle, launches still waiting here not counted: `usage` counts the
    recorded executions, the intents of the waiting launches included, so those are taken
    off. `launched` (tasks this process launched and has not seen end) is a floor: a count
    read from a cache that lags the writes must not let more through than are known to run."""
    counts = dict(usage)
    for w in waiting:
        for t in set(w.throttles):
            if t in counts:
                counts[t] -= 1
    for t, n in (launched or {}).items():
        counts[t] = max(counts.get(t, 0), n)
    return {t: max(0, n) for t, n in counts.items()}


def fair_order(waiting: Sequence[Waiting],
               running: Mapping[str, int] | None = None) -> list[Waiting]:
    """Fair between owners, oldest first (module docstring): the k-th waiting launch of an
    owner ranks as its running tasks + k."""
    rank: dict[str, int] = dict(running or {})
    keyed = []
    for index, w in enumerate(waiting):
        r = rank.get(w.owner, 0)
        rank[w.owner] = r + 1
        keyed.append((r, index, w))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [w for _, _, w in keyed]


def gate(waiting: Sequence[Waiting], limits: Mapping[str, int],
         live: Mapping[str, int], running: Mapping[str, int] | None = None) -> Gate:
    """Which of `waiting` (in arrival order) may be offered now; `running`: tasks each owner
    has running (the fair order's); see the module docstring."""
    room = {t: max(0, limit - live.get(t, 0)) for t, limit in limits.items()}
    held: dict[str, list[str]] = {t: [] for t in limits}
    admitted: set[str] = set()
    for w in fair_order(waiting, running):
        names = [t for t in dict.fromkeys(w.throttles) if t in room]
        full = [t for t in names if room[t] <= 0]
        if full:
            for t in full:
                held[t].append(w.task_id)
            continue
        for t in names:
            room[t] -= 1
        admitted.add(w.task_id)
    return Gate(admitted=tuple(w.task_id for w in waiting if w.task_id in admitted),
                held={t: tuple(ids) for t, ids in held.items()})
