"""Marathon constraint semantics, one table row per behaviour."""

from __future__ import annotations

import pytest

from controller.api.template import Constraint
from controller.mesos.constraints import all_satisfied, satisfies


def c(*parts: str) -> Constraint:
    return Constraint.model_validate(list(parts))


@pytest.mark.parametrize(
    ("constraint", "value", "placed", "ok"),
    [
        (c("hostname", "UNIQUE"), "a", [], True),
        (c("hostname", "UNIQUE"), "a", ["b"], True),
        (c("hostname", "UNIQUE"), "a", ["b", "a"], False),
        (c("rack", "UNIQUE"), None, [], False),
        (c("rack", "CLUSTER", "r1"), "r1", ["r1"], True),
        (c("rack", "CLUSTER", "r1"), "r2", [], False),
        (c("rack", "CLUSTER", "r1"), None, [], False),
        (c("rack", "MAX_PER", "2"), "r1", ["r1"], True),
        (c("rack", "MAX_PER", "2"), "r1", ["r1", "r1"], False),
        (c("rack", "MAX_PER", "2"), "r2", ["r1", "r1"], True),
        (c("rack", "LIKE", "r[1-3]"), "r2", [], True),
        (c("rack", "LIKE", "r[1-3]"), "r22", [], False),  # full match, not search
        (c("rack", "LIKE", "r[1-3]"), None, [], False),
        (c("rack", "UNLIKE", "r[1-3]"), "r4", [], True),
        (c("rack", "UNLIKE", "r[1-3]"), "r1", [], False),
        (c("rack", "UNLIKE", "r[1-3]"), None, [], True),
        (c("rack", "IS", "r1"), "r1", [], True),
        (c("rack", "IS", "r1"), "r10", [], False),
        # GROUP_BY without a count: the value must not be more loaded than the least one.
        (c("zone", "GROUP_BY"), "a", [], True),
        (c("zone", "GROUP_BY"), "a", ["a"], True),  # only 'a' seen: it is the least loaded
        (c("zone", "GROUP_BY"), "a", ["a", "b", "a"], False),
        (c("zone", "GROUP_BY"), "b", ["a", "b", "a"], True),
        (c("zone", "GROUP_BY"), "c", ["a", "b"], True),  # unseen value: empty
        # GROUP_BY 3: until three values are seen, an already used one is refused.
        (c("zone", "GROUP_BY", "3"), "a", ["a"], False),
        (c("zone", "GROUP_BY", "3"), "b", ["a"], True),
        (c("zone", "GROUP_BY", "3"), "a", ["a", "b", "c"], True),
        (c("zone", "GROUP_BY", "3"), "a", ["a", "b", "c", "a"], False),
        (c("zone", "GROUP_BY", "3"), None, [], False),
    ],
)
def test_operator_semantics(
    constraint: Constraint, value: str | None, placed: list[str], ok: bool
) -> None:
    assert satisfies(constraint, value, placed) is ok


def test_all_satisfied_reads_hostname_and_attributes() -> None:
    constraints = [c("hostname", "UNIQUE"), c("rack", "LIKE", "r[12]")]
    placed = [("h1", {"rack": "r1"})]
    assert all_satisfied(constraints, "h2", {"rack": "r2"}, placed)
    assert not all_satisfied(constraints, "h1", {"rack": "r1"}, placed)  # UNIQUE
    assert not all_satisfied(constraints, "h3", {"rack": "r3"}, placed)  # LIKE
    assert not all_satisfied(constraints, "h3", {}, placed)  # attribute missing
