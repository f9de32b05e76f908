"""The Redis steps of the Queue planner: claiming in three repairable steps (a reservation in
status, an atomic move into the batch's processing list, the launch intent), and giving back
processing lists that belong to no open batch (docs/architecture.md §8). Pure."""

from __future__ import annotations

from collections.abc import Sequence

from controller.api import Queue
from controller.reconcile.queue_base import PlannerState
from controller.reconcile.queue_model import (
    CLAIMING,
    MESSAGE_TOO_LARGE,
    TOO_LARGE_RESERVED,
    Batch,
    Message,
)


class RedisSteps(PlannerState):
    def _settle_strays(self, open_batches: Sequence[Batch]) -> None:
        """Redis processing lists of no open batch or reservation go back to the list."""
        view = self.inp.view
        if view.type != "redis" or not view.available:
            return
        known = set(self.batches) | set(self.claiming)
        for batch in sorted(view.strays, reverse=True):  # the oldest back at the head last
            if batch not in known:
                self.late.append(self._redis("give_back", batch))
                self.more = True

    def _claim_redis(self, queue: Queue, open_count: int) -> None:
        view = self.inp.view
        spec = queue.spec
        for batch in sorted(self.claiming):
            if batch in self.batches:  # launched; the status saying so was not written
                del self.claiming[batch]
                continue
            state = self.claiming[batch]
            contents = view.processing.get(batch)
            if contents is None:
                if state == TOO_LARGE_RESERVED:
                    # The one oversized message reached the dead letter.
                    self.archived.dead_lettered += 1
                    del self.claiming[batch]
                elif view.unclaimed > 0:
                    self.late.append(self._redis("claim", batch, count=spec.batch_size,
                                             max_bytes=spec.max_batch_bytes,
                                             separator_len=len(spec.batch_separator.encode())))
                    self.more = True
                else:
                    del self.claiming[batch]
                continue
            if not contents:
                del self.claiming[batch]
                continue
            messages = [Message(str(i), p) for i, p in enumerate(contents)]
            if len(contents) == 1 and len(contents[0]) > spec.max_batch_bytes:
                self.claiming[batch] = TOO_LARGE_RESERVED
                self.late.append(self._redis("dead_letter", batch,
                                         reason=MESSAGE_TOO_LARGE, execution="", at=self.now))
                self.more = True
                continue
            if not self._spend_units(1):
                continue
            del self.claiming[batch]
            self._launch(queue, batch, 0, messages, None)
            open_count += 1
        reserved = len(self.claiming)
        free = spec.max_concurrent - open_count - reserved
        want = -(-view.unclaimed // spec.batch_size) if view.unclaimed > 0 else 0
        for _ in range(max(0, min(free, want))):
            self.claiming[self.next_batch] = CLAIMING
            self.late.append(self._redis("claim", self.next_batch,
                                     count=spec.batch_size, max_bytes=spec.max_batch_bytes,
                                     separator_len=len(spec.batch_separator.encode())))
            self.next_batch += 1
            self.more = True

