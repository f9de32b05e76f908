"""Deterministic task ids: `<kind>.<namespace>.<name>.<uid>.<index>.<attempt>`.

The id alone says which object, which incarnation of it (uid = create_revision of its spec key),
which slot and which attempt a task is, so after a restart every task Mesos reports can be
matched to its record, and a task of a deleted object recognised as an orphan. Ids are never
reused: a new attempt gets a new number.

Why Mesos always accepts them (its validateID: non-empty, not "." or "..", at most 255
characters, no '/', '\\' or control characters): namespace and name are DNS-1123 labels (at most
63 of [a-z0-9-]), the kind is a lowercase known kind name, and the three numbers are
non-negative 64-bit integers (at most 20 digits each), so an id has at most
11 + 63 + 63 + 3*20 + 5 = 202 characters from [a-z0-9.-]. `task_id` checks its inputs and
raises rather than build anything else.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from controller.api import KINDS
from controller.reconcile.actions import ObjectKey

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,19})$")
_KIND_BY_SINGULAR = {k.singular: k.name for k in KINDS}
_MAX_NUMBER = 2**64 - 1
MESOS_ID_MAX_LENGTH = 255


@dataclass(frozen=True)
class TaskIdParts:
    owner: ObjectKey
    uid: int
    index: int
    attempt: int


def is_dns_label(value: str) -> bool:
    return _LABEL.match(value) is not None


def task_id(owner: ObjectKey, uid: int, index: int, attempt: int) -> str:
    """The id of attempt `attempt` of slot `index` of incarnation `uid` of `owner`."""
    singular = owner.kind.lower()
    if singular not in _KIND_BY_SINGULAR:
        raise ValueError(f"unknown kind {owner.kind!r}")
    for what, label in (("namespace", owner.namespace), ("name", owner.name)):
        if not _LABEL.match(label):
            raise ValueError(f"{what} {label!r} is not a DNS-1123 label")
    for what, number in (("uid", uid), ("index", index), ("attempt", attempt)):
        if not 0 <= number <= _MAX_NUMBER:
            raise ValueError(f"{what} {number} is not a non-negative 64-bit integer")
    return f"{singular}.{owner.namespace}.{owner.name}.{uid}.{index}.{attempt}"


@functools.lru_cache(maxsize=1 << 16)
def parse_task_id(value: str) -> TaskIdParts | None:
    """The parts of an id built by `task_id`, or None for any other (foreign) id. Cached: a
    planner reads every record's id on every pass (a Queue with hundreds of tasks running),
    and the parts of an id never change."""
    parts = value.split(".")
    if len(parts) != 6:
        return None
    singular, namespace, name, *numbers = parts
    kind = _KIND_BY_SINGULAR.get(singular)
    if kind is None or not _LABEL.match(namespace) or not _LABEL.match(name):
        return None
    if not all(_NUMBER.match(n) for n in numbers):
        return None
    uid, index, attempt = (int(n) for n in numbers)
    if max(uid, index, attempt) > _MAX_NUMBER:
        return None
    return TaskIdParts(ObjectKey(kind, namespace, name), uid, index, attempt)


def is_valid_mesos_id(value: str) -> bool:
    """Mesos' own rule for task ids (src/common/validation.cpp validateID), restated."""
    if not value or value in (".", ".."):
        return False
    if len(value) > MESOS_ID_MAX_LENGTH:
        return False
    return not any(c in "/\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in value)
