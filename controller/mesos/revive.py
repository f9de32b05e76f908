"""When to REVIVE and when to SUPPRESS offers: a pure state machine.

Owns the decision only. The adapter tells it what happened (a subscription, new launches),
asks it on each tick of its worker, with the time and the number of pending launches, which
call to make, makes that call and reports it sent. No I/O, no clock, no threads here, so the
rules can be tested as a table of (time, pending, event) → call.

Why coalesce at all: each REVIVE clears every filter and brings an offer from every agent;
reviving on each new launch made offer handling (parse, match, decline) most of the
controller's work. And why wait before suppressing: the pending set is empty for a moment
between most bursts of launches, and suppressing then would need a REVIVE for the next one.

The rules (times in seconds, `now` from the caller's monotonic clock):

- While launches are pending:
  - suppressed: REVIVE at once and on every tick until one is sent, whatever the interval
    (no offer comes at all while suppressed);
  - otherwise REVIVE only if one is wished (a launch or a subscription since the last one)
    and at least `revive_interval` has passed since the last REVIVE sent; else nothing:
    offers keep coming (declined agents come back after their refuse_seconds filter);
  - the idle timer is cleared.
- While nothing is pending:
  - a wish to revive is dropped (nothing would use the offers);
  - the idle timer starts at the first tick that sees nothing pending;
  - once idle for `suppress_after`, SUPPRESS, on every tick until one is sent; then
    nothing until launches are pending again.
- On (re)subscription: the previous connection's offers are gone and the master's
  suppression state is not known, so: not suppressed, a REVIVE wished and allowed at once.
  The idle timer is kept: nothing pending for long already means SUPPRESS on the next tick.
- A call changes the state only once reported sent (`sent`): a call that failed is simply
  asked for again on a later tick.
- The adapter asks only while subscribed: there is no call to make without a subscription,
  and nothing here moves meanwhile.
"""

from __future__ import annotations

from typing import Literal

Call = Literal["REVIVE", "SUPPRESS"]


class ReviveSuppress:
    def __init__(self, revive_interval: float, suppress_after: float) -> None:
        self.revive_interval = revive_interval
        self.suppress_after = suppress_after
        self._suppressed = False
        self._want_revive = False
        self._last_revive = float("-inf")
        self._idle_since: float | None = None

    @property
    def suppressed(self) -> bool:
        """Whether the last call sent was a SUPPRESS (since the last subscription)."""
        return self._suppressed

    def subscribed(self) -> None:
        self._suppressed = False
        self._want_revive = True
        self._last_revive = float("-inf")

    def launched(self) -> None:
        """New launches were asked for, or launches a throttle held got room: they want
        offers (and the held ones' offers were declined with a filter a REVIVE clears)."""
        self._want_revive = True

    def decide(self, now: float, pending: int) -> Call | None:
        """The call to make now, if any; report it with `sent` once it has been made."""
        if pending:
            self._idle_since = None
            due = now - self._last_revive >= self.revive_interval
            if self._suppressed or (self._want_revive and due):
                return "REVIVE"
            return None
        self._want_revive = False
        if self._idle_since is None:
            self._idle_since = now
        if not self._suppressed and now - self._idle_since >= self.suppress_after:
            return "SUPPRESS"
        return None

    def sent(self, call: Call, now: float) -> None:
        """`call`, asked for by `decide(now, ...)`, was accepted by the master."""
        if call == "REVIVE":
            self._suppressed = False
            self._want_revive = False
            self._last_revive = now
        else:
            self._suppressed = True
