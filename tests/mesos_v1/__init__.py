"""Conformance checks of Mesos v1 scheduler API messages (JSON) against models written from
Mesos 1.11's protos, so tests can tell whether localmesos speaks like a real master."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from tests.mesos_v1.scheduler import Call, Event

__all__ = ["validate_scheduler_call", "validate_scheduler_event"]


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or "-" in part or "," in part:
            continue  # pydantic's names of union branches and validators, not JSON keys
        else:
            out += f".{part}"
    return out


def _validate(model: type[BaseModel], root: str, message: Any) -> None:
    if not isinstance(message, dict):
        raise ValueError(f"{root}: expected a JSON object, got {type(message).__name__}")
    try:
        model.model_validate(message)
    except ValidationError as e:
        problems = [f"{root}{_path(err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ValueError(
            f"not a Mesos v1 {model.__name__}: " + "; ".join(problems) + f"\n  in {message!r}"
        ) from None


def validate_scheduler_event(event: dict[str, Any]) -> None:
    """Raise ValueError naming the offending field if `event` is not a valid v1 Event."""
    _validate(Event, "event", event)


def validate_scheduler_call(call: dict[str, Any]) -> None:
    """Raise ValueError naming the offending field if `call` is not a valid v1 Call."""
    _validate(Call, "call", call)
