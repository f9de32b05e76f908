"""The policy's status: what the leader holds of the admission policy, written to
`<prefix>/status/policy` (docs/architecture.md §10).

The policy is one operator-owned document, so it has no planner and no status of its own
kind; yet an operator who wrote a policy with a bad throttle must be able to read, where every
other status is, that it was refused and that the previous one is still in force. The
`PolicyCache` tells this writer every change of what it holds; the writer keeps the condition
`Valid` (lastTransitionTime moving only when it flips, as every condition does) and writes the
status fenced on the leader's lease, so a deposed leader never overwrites its successor's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime

import structlog

from controller.api.codec import ObjectInvalid
from controller.api.policy import Policy, PolicyStatus, decode_policy
from controller.executor import NotLeader, fenced_commit
from controller.policy import PolicyState
from controller.reconcile.conditions import update_conditions
from controller.runtime import Fence
from controller.store import Delete, Put, Store, StoreError

log = structlog.get_logger("docket.policy")

VALID = "Valid"
RETRY_SECONDS = 1.0


def policy_status(state: PolicyState, previous: PolicyStatus | None, now: datetime
                  ) -> PolicyStatus:
    """The status for what the cache holds now (pure)."""
    if state.valid:
        wanted = (("True", "PolicyValid", "no policy stored: nothing is denied")
                  if state.stored_revision == 0 else ("True", "PolicyValid", ""))
    else:
        in_force = (f"revision {state.revision} stays in force" if state.policy is not None
                    else "no valid policy was read yet: nothing is denied")
        wanted = ("False", "PolicyInvalid",
                  "; ".join(str(p) for p in state.problems) + f" ({in_force})")
    conditions = update_conditions(previous.conditions if previous else [], {VALID: wanted},
                                   order=(VALID,), keep=(), now=now)
    return PolicyStatus(observed_revision=state.stored_revision,
                        revision_in_force=state.revision if state.policy is not None else 0,
                        conditions=conditions)


class PolicyStatusWriter:
    """`PolicyCache(on_state=...)`: writes the status when what the cache holds changed."""

    def __init__(self, store: Store, fence: Callable[[], Fence | None] | None,
                 clock: Callable[[], datetime]) -> None:
        self._store = store
        self._fence = fence
        self._clock = clock
        self.key = f"{store.keys.prefix}/status/policy"
        self.copy_key = f"{store.keys.prefix}/status/policy-in-force"
        self._written: PolicyStatus | None = None
        self._latest: PolicyState | None = None

    def __call__(self, state: PolicyState) -> None:
        self._latest = state
        if self._written is None:
            self._written = self._read()
        status = policy_status(state, self._written, self._clock())
        if status == self._written:
            return
        ops: list[Put | Delete] = [Put(self.key, status.model_dump_json(by_alias=True).encode())]
        if self._written is None or status.revision_in_force != self._written.revision_in_force:
            # The copy a restarted controller starts from while the stored one is invalid.
            ops.append(Delete(self.copy_key) if state.policy is None else Put(
                self.copy_key, json.dumps({"revision": state.revision, "policy": json.loads(
                    state.policy.model_dump_json(by_alias=True, exclude_none=True))}).encode()))
        try:
            fenced_commit(self._store, self._fence, ops)
        except NotLeader:
            return  # the leader writes it
        except StoreError as exc:
            log.warning("cannot write the policy's status; retrying", key=self.key,
                        error=str(exc))
            self._retry(state)
            return
        self._written = status

    def _retry(self, state: PolicyState) -> None:
        """Write again in a second unless a newer state came meanwhile (which writes itself);
        the status must not stay stale until the policy next changes."""
        self._latest = state

        def again() -> None:
            if self._latest is state:
                self(state)

        timer = threading.Timer(RETRY_SECONDS, again)
        timer.daemon = True
        timer.start()

    def last_valid(self) -> tuple[Policy, int] | None:
        """The policy in force when the leader last wrote its copy, with its revision."""
        found = self._store.get_raw(self.copy_key)
        if found is None:
            return None
        try:
            doc = json.loads(found[0])
            return decode_policy(json.dumps(doc["policy"]).encode()), int(doc["revision"])
        except (ValueError, KeyError, TypeError, ObjectInvalid):
            log.error("the kept copy of the last valid policy does not decode",
                      key=self.copy_key)
            return None

    def _read(self) -> PolicyStatus | None:
        try:
            found = self._store.get_raw(self.key)
        except StoreError:
            return None
        if found is None:
            return None
        try:
            return PolicyStatus.model_validate_json(found[0])
        except ValueError:
            return None
