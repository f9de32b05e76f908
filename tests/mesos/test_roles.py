"""Roles from the admission policy, offline: which roles the framework declares
(FrameworkInfo.role or, with others, MULTI_ROLE `roles`), UPDATE_FRAMEWORK's body, REVIVE per
role, and offer matching that puts a task only on resources allocated to its role."""

from __future__ import annotations

import queue
from typing import Any

from controller.api.template import TaskTemplate
from controller.mesos.backend import LaunchRequest, MesosEvent
from controller.mesos.calls import (
    default_role,
    framework_info,
    framework_roles,
    revive_body,
    update_framework_body,
)
from controller.mesos.config import MesosConfig
from controller.mesos.launches import Launches
from controller.mesos.offers import Offer, TaskRequest, match
from tests.mesos.offers_util import offer_json

CONFIG = MesosConfig(master="127.0.0.1:5050", user="u")


def caps(info: dict[str, Any]) -> set[str]:
    return {c["type"] for c in info["capabilities"]}


# --- FrameworkInfo ---------------------------------------------------------------------------
def test_no_policy_role_keeps_the_single_role_framework() -> None:
    assert framework_roles(CONFIG) == (("*",), False)
    info = framework_info(CONFIG, None)
    assert "roles" not in info and "role" not in info and "MULTI_ROLE" not in caps(info)
    batch = MesosConfig(master="m", role="batch", user="u")
    # A policy naming only the configured role changes nothing either.
    info = framework_info(batch, "fw-1", ["batch"])
    assert info["role"] == "batch" and "roles" not in info and "MULTI_ROLE" not in caps(info)
    assert default_role(batch, ["batch"]) is None


def test_policy_roles_make_a_multi_role_framework_configured_role_first() -> None:
    batch = MesosConfig(master="m", role="batch", user="u")
    info = framework_info(batch, "fw-1", ["team-b", "team-a", "batch"])
    assert info["roles"] == ["batch", "team-a", "team-b"] and "role" not in info
    assert "MULTI_ROLE" in caps(info) and info["id"] == {"value": "fw-1"}
    assert default_role(batch, ["team-a"]) == "batch"
    assert framework_info(CONFIG, None, ["team-a"])["roles"] == ["*", "team-a"]
    assert default_role(CONFIG, ["team-a"]) == "*"
    assert update_framework_body(info) == {
        "update_framework": {"framework_info": info, "suppressed_roles": []}}


def test_revive_names_the_pending_roles_the_framework_holds() -> None:
    assert revive_body(CONFIG, [], ["*"]) == {}  # single-role: REVIVE everything
    assert revive_body(CONFIG, ["team-a"], None) == {}  # one takes any role
    assert revive_body(CONFIG, ["team-a"], ["team-a"]) == {"revive": {"roles": ["team-a"]}}
    # A role not (yet) held would make Mesos drop the whole call: left out.
    assert revive_body(CONFIG, ["team-a"], ["team-a", "team-z"]) == {
        "revive": {"roles": ["team-a"]}}
    assert revive_body(CONFIG, ["team-a"], ["team-z"]) == {}


# --- matching -------------------------------------------------------------------------------
def offers(*roles: str) -> list[Offer]:
    return [Offer.parse(offer_json(f"o-{r}", f"h-{r}", cpus=1, mem=256, ports=[(100, 101)],
                                   role=r)) for r in roles]


def req(task_id: str, role: str | None = None) -> TaskRequest:
    return TaskRequest(task_id=task_id, group="g", cpus=0.5, mem=64, ports=1, role=role)


def test_a_task_with_a_role_takes_only_offers_allocated_to_it() -> None:
    result = match(offers("*", "team-a"), [req("a", "team-a"), req("b", "team-b")])
    placed = {a.task_id: a for a in result.assignments}
    assert set(placed) == {"a"} and placed["a"].offer.id == "o-team-a"
    assert {r["allocation_info"]["role"] for r in placed["a"].resources} == {"team-a"}
    assert [r.task_id for r in result.unmatched] == ["b"]
    assert [o.id for o in result.unused] == ["o-*"]  # declined: nobody needs role *


def test_a_task_without_a_role_takes_the_default_role_or_any() -> None:
    # MULTI_ROLE because of the policy: the configured role only, never another's share.
    result = match(offers("team-a", "*"), [req("x")], default_role="*")
    assert [a.offer.id for a in result.assignments] == ["o-*"]
    result = match(offers("team-a"), [req("x")], default_role="*")
    assert result.assignments == [] and [r.task_id for r in result.unmatched] == ["x"]
    # Without a default (single-role framework): any role of the offer, as before.
    assert [a.offer.id for a in match(offers("team-a"), [req("x")]).assignments] == [
        "o-team-a"]


def test_hopeless_shapes_are_per_role() -> None:
    # team-b fits nowhere; the same shape for team-a must still be tried.
    result = match(offers("team-a"), [req("b", "team-b"), req("a", "team-a")])
    assert [a.task_id for a in result.assignments] == ["a"]


def test_one_offer_mixing_roles_gives_a_task_one_role() -> None:
    raw = offer_json("o", "h", cpus=1, mem=128, role="team-a")
    raw["resources"] += offer_json("o", "h", cpus=1, mem=128, role="*")["resources"]
    result = match([Offer.parse(raw)], [TaskRequest("t", "g", cpus=1.5, mem=64)])
    assert result.assignments == []  # 1.5 cpus exist only across two roles
    result = match([Offer.parse(raw)], [TaskRequest("t", "g", cpus=1, mem=64, role="*")])
    assert {r["allocation_info"]["role"] for r in result.assignments[0].resources} == {"*"}


# --- pending launches -------------------------------------------------------------------------
def launches(config: MesosConfig) -> tuple[Launches, list[tuple[str, dict[str, Any]]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    events: queue.Queue[MesosEvent] = queue.Queue()

    def call(what: str, body: dict[str, Any]) -> bool:
        calls.append((what, body))
        return True

    made = Launches(config, events, call=call, reconcile=lambda known: None,
                    master=lambda: None,
                    group_of=lambda t: "g", clock=lambda: 0.0)
    return made, calls


def template() -> TaskTemplate:
    return TaskTemplate.model_validate({"command": "true", "resources": {"cpus": 0.5,
                                                                         "mem": 64}})


def test_launches_accept_role_offers_and_decline_the_others() -> None:
    made, calls = launches(CONFIG)
    made.extra_roles = ("team-a",)
    made.add([LaunchRequest("job.team-a.j.1.0.0", template(), role="team-a"),
              LaunchRequest("job.other.j.1.0.0", template())])
    assert made.pending_roles() == ["*", "team-a"]
    made.on_offers([offer_json("o1", "h1", cpus=1, mem=256, role="team-b"),
                    offer_json("o2", "h2", cpus=1, mem=256, role="team-a")])
    accepted = [b["accept"] for what, b in calls if what == "ACCEPT"]
    assert len(accepted) == 1 and accepted[0]["offer_ids"] == [{"value": "o2"}]
    info = accepted[0]["operations"][0]["launch"]["task_infos"][0]
    assert info["task_id"]["value"] == "job.team-a.j.1.0.0"
    assert {r["allocation_info"]["role"] for r in info["resources"]} == {"team-a"}
    declined = [b["decline"]["offer_ids"] for what, b in calls if what == "DECLINE"]
    assert declined == [[{"value": "o1"}]]
    assert made.pending_roles() == ["*"]  # the namespace without a role waits for role *


def test_naming_the_configured_role_keeps_a_single_role_framework_as_it_was() -> None:
    made, calls = launches(MesosConfig(master="m", role="batch", user="u"))
    made.add([LaunchRequest("job.x.j.1.0.0", template(), role="batch")])
    assert made.pending_roles() is None
    # A single-role framework's offers carry the resources' own role ("*": unreserved).
    made.on_offers([offer_json("o1", "h1", cpus=1, mem=256)])
    assert [what for what, _ in calls] == ["ACCEPT"]
