"""An etcd Queue's dead letters stay under the controller's prefix, in the Queue's namespace
(issue 15, least privilege): a `deadLetter.key` elsewhere makes the Queue Invalid naming the
field, and the executor's writes never leave that area even if such a key reached them —
otherwise whoever writes specs could have the controller, which may write its whole prefix,
overwrite its own keys, a status, or another namespace's dead letters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.api import decode_object
from controller.queue_ops import etcd_ops
from controller.queuekind import _own_dead_letter
from controller.reconcile.actions import DeadItem, DeadLetterItems
from controller.records import OwnerRecords
from controller.registry import PlanRequest
from controller.store import Keys, Put

KEYS = Keys("/docket")
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _queue(dead_key: str, source: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return decode_object({"apiVersion": "docket.dev/v1", "kind": "Queue",
                          "metadata": {"name": "mail", "namespace": "team-a"},
                          "spec": {"source": source or {"type": "etcd"},
                                   "deadLetter": {"key": dead_key},
                                   "template": {"command": "true"}}})


def _request() -> PlanRequest:
    return PlanRequest("Queue", "team-a", "mail", None, OwnerRecords(None, 0, {}), NOW,
                       keys=KEYS)


@pytest.mark.parametrize("key", [
    "/docket/controller/",                   # the leader key, the framework id
    "/docket/status/jobs/team-a/",           # forged statuses
    "/docket/queue-dead/team-b/mail/",       # another namespace's dead letters
    "/docket/queue-dead/team-a/../../controller/",
    "/elsewhere/",                           # outside the prefix: not the controller's
])
def test_a_dead_letter_key_outside_the_namespace_area_makes_the_queue_invalid(key: str) -> None:
    out = _own_dead_letter(_request(), _queue(key))
    assert out.kind == "Queue" and out.problems[0].path == "spec.deadLetter.key"  # type: ignore[union-attr]
    assert "/docket/queue-dead/team-a/" in out.problems[0].message  # type: ignore[union-attr]


def test_a_dead_letter_key_in_the_namespace_area_and_redis_lists_are_kept() -> None:
    queue = _queue("/docket/queue-dead/team-a/mail-poison/")
    assert _own_dead_letter(_request(), queue) is queue
    redis = _queue("mail:poison", {"type": "redis", "url": "redis://r:6379/0", "key": "mail"})
    assert _own_dead_letter(_request(), redis) is redis


def test_the_executor_never_writes_a_dead_letter_outside_the_namespace_area() -> None:
    action = DeadLetterItems("team-a", "mail", (DeadItem("m1", b"x", 5),), "BackoffLimitExceeded",
                             "queue.team-a.mail.1.0.3", NOW, "/docket/controller/")
    (unit,) = etcd_ops(KEYS, action)
    puts = [op.key for op, _ in unit if isinstance(op, Put)]
    assert puts == ["/docket/queue-dead/team-a/mail/m1"]
