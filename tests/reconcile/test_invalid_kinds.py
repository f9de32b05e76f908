"""An invalid Queue or Service gets an Invalid status naming the field, as a Job does.

Regression (issue 14, chaos scenario 6): the Queue and Service planners formatted the problems
of an InvalidObject with `p.field`, which `Problem` does not have (it is `path`), so planning
any invalid Queue or Service raised AttributeError on every retry and its status never said
what was wrong. Found by tests/chaos/scenarios/fuzz_specs.py."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.api import InvalidObject, Problem, QueueStatus, ServiceStatus
from controller.reconcile import WriteStatus
from controller.reconcile.queue import QueueInput, SourceView, plan_queue
from controller.reconcile.service import ServiceInput, plan_service

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PROBLEMS = [Problem("spec.batchSize", "must be greater than or equal to 1"),
            Problem("", "not UTF-8 text")]


def _written(actions: object) -> object:
    statuses = [a.status for a in actions if isinstance(a, WriteStatus)]  # type: ignore[attr-defined]
    assert len(statuses) == 1, actions
    return statuses[0]


def test_an_invalid_queue_gets_an_invalid_status_naming_the_field() -> None:
    bad = InvalidObject("Queue", "default", "q", PROBLEMS, b"{}")
    plan = plan_queue(QueueInput("default", "q", bad, 7, 7, None, [],
                                 SourceView("etcd", polled_at=NOW), NOW))
    status = _written(plan.actions)
    assert isinstance(status, QueueStatus)
    assert status.phase == "Invalid"
    invalid = next(c for c in status.conditions if c.type == "Invalid")
    assert invalid.message == "spec.batchSize: must be greater than or equal to 1; " \
                              "not UTF-8 text"


def test_an_invalid_service_gets_an_invalid_status_naming_the_field() -> None:
    bad = InvalidObject("Service", "default", "web", PROBLEMS, b"{}")
    plan = plan_service(ServiceInput("default", "web", bad, 5, 5, None, [], NOW))
    status = _written(plan.actions)
    assert isinstance(status, ServiceStatus)
    assert status.phase == "Invalid"
    invalid = next(c for c in status.conditions if c.type == "Invalid")
    assert invalid.message.startswith("spec.batchSize: must be greater than or equal to 1")
