"""Status conditions, pure: the one rule every kind's planner writes them by.

A planner says which conditions it wants this pass, each as (status, reason, message), and
`update_conditions` turns the recorded ones into the new list: `lastTransitionTime` moves only
when a condition's status changes (a new reason or message alone keeps it), a recorded
condition not wanted this pass is carried over unchanged if its type is in `keep` and dropped
otherwise, and the list comes out in the kind's fixed order of types, so an unchanged status
compares equal and is not written again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from controller.api import Condition, StatusBase

Wanted = tuple[str, str, str]
"""A condition as a planner wants it: (status "True"/"False"/"Unknown", reason, message)."""


def update_conditions(
    recorded: Sequence[Condition],
    wanted: Mapping[str, Wanted],
    *,
    order: Sequence[str],
    keep: Iterable[str],
    now: datetime,
) -> list[Condition]:
    """`recorded` updated to `wanted` (by condition type), in `order` of types; types outside
    `order` are neither written nor kept."""
    kept = frozenset(keep)
    previous = {c.type: c for c in recorded}
    out: list[Condition] = []
    for type_ in order:
        old = previous.get(type_)
        if type_ in wanted:
            status, reason, message = wanted[type_]
            since = old.last_transition_time if old is not None and old.status == status else now
            out.append(Condition(type=type_, status=status, reason=reason, message=message,
                                 last_transition_time=since))
        elif old is not None and type_ in kept:
            out.append(old)
    return out


def has_condition(status: StatusBase | None, type_: str) -> bool:
    """Whether `status` records a condition of `type_`, whatever its status."""
    return status is not None and status.condition(type_) is not None
