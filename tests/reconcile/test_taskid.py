"""Task ids: round trip, foreign ids, and Mesos' validateID holds for every id we can build."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.reconcile import ObjectKey, TaskIdParts, is_valid_mesos_id, parse_task_id, task_id

labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
numbers = st.integers(min_value=0, max_value=2**64 - 1)
kinds = st.sampled_from(["Job", "CronJob", "Queue", "Service"])


def test_format() -> None:
    assert task_id(ObjectKey("Job", "default", "hello"), 1234, 0, 0) == "job.default.hello.1234.0.0"


@given(kinds, labels, labels, numbers, numbers, numbers)
def test_every_built_id_is_a_valid_mesos_id_and_round_trips(
    kind: str, ns: str, name: str, uid: int, index: int, attempt: int
) -> None:
    owner = ObjectKey(kind, ns, name)
    tid = task_id(owner, uid, index, attempt)
    assert is_valid_mesos_id(tid)
    assert len(tid) <= 202
    assert parse_task_id(tid) == TaskIdParts(owner, uid, index, attempt)


@given(st.text(max_size=300))
def test_parse_never_raises_and_accepts_only_canonical_ids(value: str) -> None:
    parts = parse_task_id(value)
    if parts is not None:
        assert task_id(parts.owner, parts.uid, parts.index, parts.attempt) == value


@pytest.mark.parametrize(
    "value",
    ["", "hello", "job.default.hello.1.0", "job.default.hello.1.0.0.0", "pod.default.x.1.0.0",
     "job.Default.hello.1.0.0", "job.default.hello.01.0.0", "job.default.hello.-1.0.0",
     "job.default.-x.1.0.0", f"job.default.hello.{2**64}.0.0"],
)
def test_foreign_ids_parse_to_none(value: str) -> None:
    assert parse_task_id(value) is None


@pytest.mark.parametrize(
    ("owner", "numbers"),
    [(ObjectKey("Pod", "default", "x"), (1, 0, 0)),
     (ObjectKey("Job", "default", "x" * 64), (1, 0, 0)),
     (ObjectKey("Job", "a/b", "x"), (1, 0, 0)),
     (ObjectKey("Job", "default", "x"), (-1, 0, 0)),
     (ObjectKey("Job", "default", "x"), (1, 2**64, 0))],
)
def test_bad_inputs_are_refused(owner: ObjectKey, numbers: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        task_id(owner, *numbers)


@pytest.mark.parametrize(
    ("value", "valid"),
    [("", False), (".", False), ("..", False), ("a" * 255, True), ("a" * 256, False),
     ("a/b", False), ("a\\b", False), ("a\nb", False), ("a\x7fb", False), ("a.b-c", True)],
)
def test_mesos_rule(value: str, valid: bool) -> None:
    assert is_valid_mesos_id(value) is valid
