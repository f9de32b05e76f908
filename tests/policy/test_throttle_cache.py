"""Throttles and pools through PolicyCache against a real etcd: launches get their throttles
and their pools' constraints (labels from the object, found through the `objects` lookup, and
from the launch's template), limits are published as `docket_throttle_limit` and removed with
their throttle, and a policy whose throttles are invalid leaves the last valid one in force."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.api import decode_object
from controller.api.template import Constraint, TaskTemplate
from controller.cli.main import main
from controller.mesos.backend import LaunchRequest
from controller.policy import PolicyCache
from controller.store import Store
from tests.policy.test_policy_cache import eventually

pytestmark = pytest.mark.integration

POLICY = """
apiVersion: docket.dev/v1
kind: Policy
spec:
  default: {role: shared}
  throttles:
    - {name: mail, match: {name: "mail-.*"}, maxRunning: 10}
    - {name: growth, match: {labels: {team: growth}}, maxRunning: 3}
  pools:
    - {name: email, match: {name: "mail-.*"}, constraints: [[pool, IS, email]]}
"""


def job(name: str, labels: dict[str, str] | None = None) -> Any:
    return decode_object({"apiVersion": "docket.dev/v1", "kind": "Job",
                          "metadata": {"name": name, "namespace": "team-a",
                                       "labels": labels or {}},
                          "spec": {"template": {"command": "true"}}})


OBJECTS = {("Job", "team-a", "mail-a"): job("mail-a", {"team": "growth"}),
           ("Job", "team-a", "report"): job("report")}


@pytest.fixture
def cache(store: Store) -> Iterator[PolicyCache]:
    changes: list[int] = []
    c = PolicyCache(store, on_change=lambda: changes.append(1),
                    objects=lambda kind, ns, name: OBJECTS.get((kind, ns, name)))
    yield c
    c.stop()


def limit(name: str) -> float | None:
    return REGISTRY.get_sample_value("docket_throttle_limit", {"throttle": name})


def running(name: str) -> float | None:
    return REGISTRY.get_sample_value("docket_throttle_running", {"throttle": name})


def launch(name: str, **template: Any) -> LaunchRequest:
    return LaunchRequest(f"job.team-a.{name}.7.0.0", TaskTemplate(command="true", **template))


def test_launches_get_throttles_and_pools_and_bad_throttles_keep_the_last_valid(
        store: Store, cache: PolicyCache, capsys: pytest.CaptureFixture[str]) -> None:
    key = f"{store.keys.prefix}/policy"
    cache.start()
    assert cache.wait_for_sync(10)
    assert cache.throttle_limits() == {} and cache.prepare(launch("mail-a")).throttles == ()

    store.put_raw(key, POLICY.encode())
    eventually(lambda: cache.policy is not None, "the policy is read")
    assert cache.throttle_limits() == {"mail": 10, "growth": 3}
    assert limit("mail") == 10 and limit("growth") == 3 and running("mail") == 0

    # mail-a: its name (mail) and its object's metadata.labels (growth); pool constraints
    # added after its own, the request's template left as it was.
    own = [Constraint.model_validate(["hostname", "UNIQUE"])]
    request = launch("mail-a", constraints=own)
    prepared = cache.prepare(request)
    assert prepared.throttles == ("mail", "growth") and prepared.role == "shared"
    assert [c.model_dump() for c in prepared.template.constraints] == [
        ["hostname", "UNIQUE"], ["pool", "IS", "email"]]
    assert request.template.constraints == own
    assert cache.prepare(prepared) == prepared  # idempotent: a constraint is added once

    # report: growth only through its template's labels (the object has none).
    assert cache.prepare(launch("report")).throttles == ()
    assert cache.prepare(launch("report", labels={"team": "growth"})).throttles == ("growth",)
    # Without an `objects` lookup only the template's labels count.
    cache.objects = None
    assert cache.prepare(launch("mail-a")).throttles == ("mail",)
    # A foreign task id is left alone.
    foreign = LaunchRequest("not-docket", TaskTemplate(command="true"))
    assert cache.prepare(foreign) is foreign
    # throttles_of judges an object as the informer holds it.
    assert cache.throttles_of("Job", "team-a", "mail-a", OBJECTS[("Job", "team-a", "mail-a")]
                              ) == ("mail", "growth")
    assert cache.throttles_of("Queue", "team-a", "report", job("report")) == ()

    # An invalid throttle: the policy stays in force, the problem is named.
    in_force = cache.state.revision
    store.put_raw(key, POLICY.replace('"mail-.*"}, maxRunning', '"mail-(.*"}, maxRunning')
                  .encode())
    eventually(lambda: not cache.state.valid, "the invalid policy is seen")
    assert [str(p) for p in cache.state.problems] == [
        "spec.throttles[0].match.name: not a regular expression: missing ), unterminated "
        "subpattern at position 5"]
    assert cache.state.revision == in_force
    assert REGISTRY.get_sample_value("docket_policy_valid") == 0
    assert cache.throttle_limits() == {"mail": 10, "growth": 3} and limit("mail") == 10
    assert cache.prepare(launch("mail-b")).throttles == ("mail",)
    args = ["policy", "--etcd", store.client.endpoints[0], "--prefix", store.keys.prefix]
    assert main(args) == 1
    assert "spec.throttles[0].match.name: not a regular expression" in capsys.readouterr().out

    # A valid policy without `mail`: its series are removed, the other's limit follows.
    store.put_raw(key, POLICY.replace("maxRunning: 3", "maxRunning: 4")
                  .replace('- {name: mail, match: {name: "mail-.*"}, maxRunning: 10}', "")
                  .encode())
    eventually(lambda: cache.state.valid, "the fixed policy is read")
    assert cache.throttle_limits() == {"growth": 4}
    assert limit("growth") == 4 and limit("mail") is None and running("mail") is None
    assert REGISTRY.get_sample_value("docket_policy_valid") == 1

    store.delete_raw(key)
    eventually(lambda: cache.policy is None, "the deletion is seen")
    assert cache.throttle_limits() == {} and limit("growth") is None
