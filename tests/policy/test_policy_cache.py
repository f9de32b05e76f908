"""PolicyCache against a real etcd: the policy in force follows the key; an invalid document
leaves the last valid one in force (and says so: log, gauge, `docket policy`); a change
wakes every object and passes the roles on; launches get their namespace's role."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.api.template import TaskTemplate
from controller.cli.main import main
from controller.mesos.backend import LaunchRequest
from controller.policy import PolicyCache
from controller.store import Store
from tests.policy.test_evaluate import POLICY, docker, job

pytestmark = pytest.mark.integration


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


class Roles:
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def set_roles(self, roles: Any) -> None:
        self.seen.append(list(roles))


@pytest.fixture
def cache(store: Store) -> Iterator[tuple[PolicyCache, list[int], Roles]]:
    changes: list[int] = []
    roles = Roles()
    c = PolicyCache(store, on_change=lambda: changes.append(1), roles_to=roles)
    yield c, changes, roles
    c.stop()


def valid() -> float | None:
    return REGISTRY.get_sample_value("docket_policy_valid")


def launch(namespace: str) -> LaunchRequest:
    return LaunchRequest(f"job.{namespace}.j.3.0.0", TaskTemplate(command="true"))


def test_policy_follows_its_key_and_invalid_keeps_the_last_valid(
        store: Store, cache: tuple[PolicyCache, list[int], Roles]) -> None:
    c, changes, roles = cache
    key = f"{store.keys.prefix}/policy"
    evil = job(docker("evil/x:1"))
    c.start()
    assert c.wait_for_sync(10)
    assert c.policy is None and c.check("Job", "team-a", "j", evil) is None
    assert c.prepare(launch("team-a")).role is None
    assert roles.seen == [[]] and valid() == 1

    store.put_raw(key, POLICY.encode())
    # on_change comes last: once it has, everything else has been done.
    eventually(lambda: changes == [1], "the policy is read")
    assert roles.seen[-1] == ["team-a", "team-b"]
    denial = c.check("Job", "team-a", "j", evil)
    assert denial is not None and denial.field == "spec.template.container.image"
    assert c.prepare(launch("team-a")).role == "team-a"
    assert c.prepare(launch("other")).role is None
    assert c.prepare(LaunchRequest("not-docket", TaskTemplate(command="true"))).role is None
    in_force = c.state.revision

    # A key beside it is not the policy.
    store.put_raw(key + "-draft", b"kind: Policy")
    store.put_raw(key, b"apiVersion: docket.dev/v1\nkind: Policy\nspec: {default: {role: /x}}")
    eventually(lambda: not c.state.valid, "the invalid document is seen")
    assert [str(p) for p in c.state.problems] == [
        "spec.default.role: '/x' is not a Mesos role: it must not be empty, start or end "
        "with '/', or contain '//'"]
    assert valid() == 0 and c.state.revision == in_force and changes == [1]
    assert c.check("Job", "team-a", "j", evil) is not None  # the last valid one holds

    # A valid one again: in force, and every object woken.
    store.put_raw(key, POLICY.replace("role: team-b", "role: team-c").encode())
    eventually(lambda: changes == [1, 1], "the fix is read")
    assert c.state.valid and c.state.revision > in_force
    assert valid() == 1 and roles.seen[-1] == ["team-a", "team-c"]

    store.delete_raw(key)
    eventually(lambda: changes == [1, 1, 1], "the deletion is seen")
    assert c.policy is None and roles.seen[-1] == []
    assert c.check("Job", "team-a", "j", evil) is None


def test_invalid_at_start_denies_nothing_and_says_so(
        store: Store, cache: tuple[PolicyCache, list[int], Roles],
        capsys: pytest.CaptureFixture[str]) -> None:
    c, changes, _ = cache
    store.put_raw(f"{store.keys.prefix}/policy", b"spec: [unclosed")
    c.start()
    assert c.wait_for_sync(10)
    assert c.policy is None and not c.state.valid and valid() == 0
    assert c.check("Job", "team-a", "j", job(docker("evil/x:1"))) is None
    assert changes == []
    endpoint = store.client.endpoints[0]
    args = ["policy", "--etcd", endpoint, "--prefix", store.keys.prefix]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "VALID:     false" in out and "invalid YAML" in out
    store.put_raw(f"{store.keys.prefix}/policy", POLICY.encode())
    eventually(lambda: c.policy is not None, "the valid policy is read")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "VALID:     true" in out
    row = next(line for line in out.splitlines() if line.startswith("team-a"))
    assert row.split()[:5] == ["team-a", "team-a", "registry.example.com/team-a/*", "/data",
                               "HOST,BRIDGE"]
    assert main([*args, "-o", "json"]) == 0
    assert '"team-a"' in capsys.readouterr().out
