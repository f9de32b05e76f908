"""The policy's status (issue 16: "the last valid policy stays in force meanwhile, and a
condition says so"): what the leader holds, written to <prefix>/status/policy — Valid=True,
or Valid=False naming every problem and the revision still in force — and shown by
`docket policy`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from controller.api.codec import Problem
from controller.api.policy import PolicyStatus
from controller.clock import FakeClock
from controller.manager import Manager
from controller.policy import PolicyState
from controller.policy_status import policy_status
from controller.store import MemoryEtcd
from tests.e2e.harness import wait_for
from tests.mesos.fake import FakeMesos

T0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
GOOD = {"apiVersion": "docket.dev/v1", "kind": "Policy",
        "spec": {"throttles": [{"name": "mail", "match": {"name": "mail-.*"},
                                "maxRunning": 3}]}}
BAD = {"apiVersion": "docket.dev/v1", "kind": "Policy",
       "spec": {"throttles": [{"name": "mail", "match": {"name": "mail-(.*"},
                               "maxRunning": 3}]}}


def test_the_condition_flips_with_the_verdict_and_keeps_its_time_otherwise() -> None:
    first = policy_status(PolicyState(), None, T0)
    assert (first.observed_revision, first.revision_in_force) == (0, 0)
    assert first.conditions[0].message == "no policy stored: nothing is denied"
    refused = policy_status(PolicyState(None, 5, 9, (Problem("spec.x", "bad"),)), first, T0)
    (cond,) = refused.conditions
    assert (cond.status, cond.reason) == ("False", "PolicyInvalid")
    assert cond.message == "spec.x: bad (no valid policy was read yet: nothing is denied)"
    later = policy_status(PolicyState(None, 5, 9, (Problem("spec.x", "bad"),)), refused,
                          T0.replace(hour=6))
    assert later.conditions[0].last_transition_time == T0  # unchanged verdict, same time


def test_the_leader_writes_what_it_holds_and_the_cli_shows_it() -> None:
    store = MemoryEtcd().store()
    manager = Manager(store, lambda _known: FakeMesos(), workers=1,
                      clock=FakeClock(wall=T0))
    manager.start()
    key = f"{store.keys.prefix}/status/policy"

    def status() -> PolicyStatus | None:
        found = store.get_raw(key)
        return PolicyStatus.model_validate_json(found[0]) if found else None

    try:
        rev = store.put_raw(f"{store.keys.prefix}/policy", json.dumps(GOOD).encode())
        good = wait_for(lambda: (s := status()) and s.revision_in_force == rev and s, 10,
                        lambda: f"{status()}")
        assert good.conditions[0].status == "True"
        bad_rev = store.put_raw(f"{store.keys.prefix}/policy", json.dumps(BAD).encode())
        bad = wait_for(lambda: (s := status()) and s.observed_revision == bad_rev and s, 10,
                       lambda: f"{status()}")
        (cond,) = bad.conditions
        assert bad.revision_in_force == rev and cond.status == "False"
        assert cond.message.startswith("spec.throttles[0].match.name: not a regular "
                                       "expression"), cond.message
        assert cond.message.endswith(f"(revision {rev} stays in force)")
        assert manager.policy.throttle_limits() == {"mail": 3}  # the last valid one

        from controller.cli.policy import _in_force

        line = _in_force(store.get_raw(key))
        assert line.startswith(f"revision {rev}, as of revision {bad_rev}: the stored one "
                               "was refused: spec.throttles[0].match.name"), line
    finally:
        manager.stop()
        store.close()


def test_a_status_write_that_failed_is_retried() -> None:
    from controller.policy_status import PolicyStatusWriter
    from controller.store import StoreError

    store = MemoryEtcd().store()
    failures = [StoreError("etcd hiccup")]
    real_commit = store.commit

    def commit(ops, expect=()):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return real_commit(ops, expect)

    store.commit = commit  # type: ignore[method-assign]
    try:
        writer = PolicyStatusWriter(store, None, lambda: T0)
        writer(PolicyState(None, 0, 7, (Problem("spec.x", "bad"),)))
        assert failures == []  # the first write failed
        found = wait_for(lambda: store.get_raw(writer.key), 10, lambda: "never retried")
        assert PolicyStatus.model_validate_json(found[0]).observed_revision == 7
    finally:
        store.close()


def test_a_restart_with_an_invalid_policy_keeps_the_last_valid_one_in_force() -> None:
    """Review of issue 15: a typo followed by a controller restart turned every rule off
    (nothing read yet was valid). The leader keeps a copy of the policy in force, and a new
    leader starts from it while the stored document is invalid."""
    store = MemoryEtcd().store()
    key = f"{store.keys.prefix}/status/policy"

    def run_until(check):  # type: ignore[no-untyped-def]
        manager = Manager(store, lambda _known: FakeMesos(), workers=1,
                          clock=FakeClock(wall=T0))
        manager.start()
        try:
            return manager, wait_for(lambda: check(manager), 10, lambda: "never")
        finally:
            manager.stop()

    try:
        rev = store.put_raw(f"{store.keys.prefix}/policy", json.dumps(GOOD).encode())
        run_until(lambda m: (f := store.get_raw(key)) and PolicyStatus.model_validate_json(
            f[0]).revision_in_force == rev)
        bad_rev = store.put_raw(f"{store.keys.prefix}/policy", json.dumps(BAD).encode())
        manager, limits = run_until(lambda m: m.policy.state.stored_revision == bad_rev
                                    and m.policy.throttle_limits())
        assert limits == {"mail": 3}  # the valid policy's throttle, not "nothing denied"
        assert manager.policy.state.revision == rev
        status = PolicyStatus.model_validate_json(store.get_raw(key)[0])
        assert status.revision_in_force == rev and status.observed_revision == bad_rev
        assert status.conditions[0].message.endswith(f"(revision {rev} stays in force)")
    finally:
        store.close()
