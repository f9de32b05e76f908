"""Marathon placement constraints, evaluated against one agent.

A constraint reads one field of the agent (`hostname` or the name of an agent attribute) and
decides, given where the tasks of the same group already are, whether one more task may go
there. "Already are" means both the tasks the caller reports as running and the ones placed
earlier in the same matching pass, so a batch of launches obeys UNIQUE or MAX_PER as a whole.

Semantics (Marathon's, re-implemented here):
- UNIQUE: no two tasks of the group on the same field value.
- CLUSTER v: only where the field equals v; without a value, where the group already runs
  (any value for the first task).
- GROUP_BY [n]: spread evenly; an agent is acceptable when its value holds no more tasks than
  the least loaded value (with n given, values not seen yet count as empty until n are seen).
- LIKE re / UNLIKE re: the field fully matches / does not fully match the regular expression.
- MAX_PER n: at most n tasks of the group per field value.
- IS v: the field equals v exactly.
An agent lacking the field fails every operator except UNLIKE (nothing there to resemble).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from controller.api.template import Constraint, ConstraintOperator

HOSTNAME = "hostname"


def field_value(constraint_field: str, hostname: str, attributes: Mapping[str, str]) -> str | None:
    """The value a constraint sees on an agent, or None when the agent does not have it."""
    if constraint_field == HOSTNAME:
        return hostname
    return attributes.get(constraint_field)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def satisfies(
    constraint: Constraint,
    value: str | None,
    placed_values: Iterable[str | None],
) -> bool:
    """Whether one more task of a group may run where `constraint.field` is `value`.

    `placed_values` are the values of the same field where the group's tasks already are (one
    entry per task; None where that agent lacked the field).
    """
    op = constraint.operator
    if op is ConstraintOperator.UNLIKE:
        return value is None or _regex(constraint.value or "").fullmatch(value) is None
    if value is None:
        return False
    if op is ConstraintOperator.LIKE:
        return _regex(constraint.value or "").fullmatch(value) is not None
    if op is ConstraintOperator.IS:
        return value == constraint.value
    counts = Counter(v for v in placed_values if v is not None)
    if op is ConstraintOperator.UNIQUE:
        return counts[value] == 0
    if op is ConstraintOperator.MAX_PER:
        return counts[value] < int(constraint.value or "1")
    if op is ConstraintOperator.CLUSTER:
        if constraint.value is not None:
            return value == constraint.value
        return not counts or value in counts
    if op is ConstraintOperator.GROUP_BY:
        # A value not seen yet holds no task, so it is always among the least loaded; with n
        # groups declared, fewer than n seen means some empty group still exists.
        groups = int(constraint.value) if constraint.value else None
        if not counts or (groups is not None and len(counts) < groups):
            least = 0
        else:
            least = min(counts.values())
        return counts[value] <= least
    raise AssertionError(f"unhandled operator {op}")  # pragma: no cover


def all_satisfied(
    constraints: Sequence[Constraint],
    hostname: str,
    attributes: Mapping[str, str],
    placed: Sequence[tuple[str, Mapping[str, str]]],
) -> bool:
    """Whether every constraint allows one more task on this agent; `placed` holds the
    (hostname, attributes) of the agents where the group's tasks already are."""
    for constraint in constraints:
        value = field_value(constraint.field, hostname, attributes)
        placed_values = [field_value(constraint.field, h, a) for h, a in placed]
        if not satisfies(constraint, value, placed_values):
            return False
    return True
