"""UPDATE_FRAMEWORK as Mesos 1.11's master answers it (master.cpp updateFramework,
validation.cpp): 200 OK, roles added are offered with their allocation_info, offers of roles
removed are rescinded, `/frameworks` shows the new roles; and the refusals, worded as Mesos
words them."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from tests.localmesos.scheduler import RawScheduler

pytestmark = pytest.mark.integration


@pytest.fixture
def schedulers() -> Iterator[list[RawScheduler]]:
    made: list[RawScheduler] = []
    yield made
    for s in made:
        s.close()


def frameworks(lm: LocalMesos) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{lm.master_url}/master/frameworks", timeout=5) as resp:
        body = json.loads(resp.read())
    assert set(body) == {"frameworks", "completed_frameworks", "unregistered_frameworks"}
    return list(body["frameworks"])


def update(s: RawScheduler, **info: Any) -> tuple[int, str]:
    new = {**s.info, **info}
    return s.call({"type": "UPDATE_FRAMEWORK",
                   "update_framework": {"framework_info": new, "suppressed_roles": []}})


def test_update_framework_to_multi_role(local_mesos: Callable[..., LocalMesos],
                                        schedulers: list[RawScheduler]) -> None:
    lm = local_mesos(simulate=True)
    s = RawScheduler(lm.master_url)
    schedulers.append(s)
    assert s.subscribe()["type"] == "SUBSCRIBED"
    first = s.wait_offers()[0]
    assert "allocation_info" not in first  # not MULTI_ROLE yet
    assert frameworks(lm)[0]["roles"] == ["*"]

    status, body = update(s, roles=["*", "team-a"],
                          capabilities=[{"type": "MULTI_ROLE"}])
    assert (status, body) == (200, "")
    assert frameworks(lm)[0]["roles"] == ["*", "team-a"]
    # The outstanding offer (role *) is kept: * is still a role of the framework.
    s.call({"type": "DECLINE", "decline": {"offer_ids": [first["id"]],
                                           "filters": {"refuse_seconds": 60}}})
    offer = s.wait_offers()[0]
    assert offer["allocation_info"] == {"role": "team-a"}
    assert {r["allocation_info"]["role"] for r in offer["resources"]} == {"team-a"}

    # Removing a role rescinds its offers.
    status, _ = update(s, roles=["*"], capabilities=[{"type": "MULTI_ROLE"}])
    assert status == 200
    rescind = s.wait_for(lambda e: e["type"] == "RESCIND")
    assert rescind["rescind"]["offer_id"] == offer["id"]
    assert frameworks(lm)[0]["roles"] == ["*"]


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"roles": ["a"]}, 400, "Supplied FrameworkInfo is not valid: 'FrameworkInfo.roles' must "
     "not be set when the framework is not MULTI_ROLE capable"),
    ({"roles": ["a", "a"], "capabilities": [{"type": "MULTI_ROLE"}]}, 400,
     "Supplied FrameworkInfo is not valid: 'FrameworkInfo.roles' contains duplicate items: "
     "{ a }"),
    ({"user": "someone-else"}, 400, "FrameworkInfo update is not valid: Updating "
     "'FrameworkInfo.user' is unsupported; attempted to update from 'tester' to "
     "'someone-else'"),
    ({"principal": "p"}, 400, "FrameworkInfo update is not valid: Changing framework's "
     "principal is not allowed."),
    ({"id": {"value": "other"}}, 400, "Failed to validate scheduler::Call: 'framework_id' "
     "differs from 'update_framework.framework_info.id'"),
])
def test_update_framework_refusals(local_mesos: Callable[..., LocalMesos],
                                   schedulers: list[RawScheduler], change: dict[str, Any],
                                   status: int, message: str) -> None:
    lm = local_mesos(simulate=True)
    s = RawScheduler(lm.master_url)
    schedulers.append(s)
    assert s.subscribe()["type"] == "SUBSCRIBED"
    assert update(s, **change) == (status, message)
    assert frameworks(lm)[0]["roles"] == ["*"]
