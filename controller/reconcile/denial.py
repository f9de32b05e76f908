"""Why an object may launch nothing new, as its planner is told (controller/admission.py
decides it) and as its status says it.

Kept in the planners' layer so they can take it as input without knowing the policy or the
secrets: a planner only needs to know that it may not launch, and what to write.
"""

from __future__ import annotations

from dataclasses import dataclass

POLICY_DENIED = "PolicyDenied"
SECRET_NOT_FOUND = "SecretNotFound"


@dataclass(frozen=True)
class Denial:
    """Why an object may not launch: `reason` is a status reason (PolicyDenied,
    SecretNotFound), `field` the spec's JSON path at fault, `message` the rule it breaks."""

    reason: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


THROTTLED = "Throttled"
"""The condition of an object some of whose launches a throttle holds back (issue 16)."""
THROTTLE_LIMIT = "ThrottleLimit"


def throttled_condition(throttle: str) -> tuple[str, str, str]:
    """The `Throttled` condition as a planner wants it: its launches wait, none is dropped."""
    return ("True", THROTTLE_LIMIT, f"launches wait for room under throttle {throttle}; "
            "nothing is dropped")


def denial_message(denial: Denial, running: bool) -> str:
    """The status message of a denied object: the rule, and what happens to what runs."""
    if running:
        return f"{denial}; nothing new is launched, running tasks go on"
    return f"{denial}; nothing is launched"
