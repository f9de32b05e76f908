"""The etcd writes of a Queue's source actions, as the executor commits them
(docs/architecture.md §8).

A Queue's planner asks for claims, acks, releases and dead letters in its own terms
(`controller/reconcile/actions.py`); this module turns each into keys, values and conditions:
- a claim key is written only if absent, so a message is never held by two batches even if
  two plans raced (the loser's whole transaction, launch intent included, fails);
- a dead letter entry is written with the item's deletion, on the condition that the item is
  still the one the plan saw, so a message is moved once and never both acked and dead;
- acks and releases are plain deletions: deleting what is already gone changes nothing, so a
  repeated ack after a crash is harmless.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from controller.reconcile.actions import AckItems, ClaimItems, DeadLetterItems, ReleaseClaims
from controller.store import Delete, Expect, Keys, Put

SourceOp = tuple[Put | Delete, Expect | None]


def dead_entry(payload: bytes, reason: str, execution: str, at: str) -> bytes:
    """A dead letter entry: the message (as text, or base64 when it is not UTF-8) with why it
    is there and the last execution that held it."""
    entry: dict[str, Any] = {"reason": reason, "execution": execution, "at": at}
    try:
        entry["message"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        entry["message"] = base64.b64encode(payload).decode("ascii")
        entry["encoding"] = "base64"
    return json.dumps(entry, sort_keys=True).encode()


def etcd_ops(keys: Keys, action: ClaimItems | AckItems | ReleaseClaims | DeadLetterItems
             ) -> list[list[SourceOp]]:
    """The action's writes as units, each to be committed whole: a batch's claims are one
    unit (with its launch intent, which the executor adds), a dead letter is one unit per
    message (its entry and the item's deletion); an ack or a release is a unit per key."""
    ns, queue = action.namespace, action.queue
    if isinstance(action, ClaimItems):
        claims = [keys.queue_claim(ns, queue, item) for item in action.item_ids]
        return [[(Put(claim, action.value.encode()), Expect(claim, 0)) for claim in claims]]
    if isinstance(action, AckItems):
        return [[(Delete(keys.queue_item(ns, queue, item)), None),
                 (Delete(keys.queue_claim(ns, queue, item)), None)]
                for item in action.item_ids]
    if isinstance(action, ReleaseClaims):
        return [[(Delete(keys.queue_claim(ns, queue, item)), None)]
                for item in action.item_ids]
    prefix = action.prefix or keys.queue_dead_prefix(ns, queue)
    if not prefix.startswith(keys.queue_dead_namespace(ns)) or "/../" in prefix + "/":
        # The Queue's planner refuses such a key (queuekind._own_dead_letter); should one
        # get here anyway, it is not written: the controller writes only where it may.
        prefix = keys.queue_dead_prefix(ns, queue)
    at = action.at.isoformat()
    units: list[list[SourceOp]] = []
    for dead in action.items:
        item = keys.queue_item(ns, queue, dead.id)
        units.append([
            (Put(prefix + dead.id, dead_entry(dead.payload, action.reason, action.execution,
                                              at)), None),
            (Delete(item), Expect(item, dead.mod_revision)),
            (Delete(keys.queue_claim(ns, queue, dead.id)), None)])
    return units
