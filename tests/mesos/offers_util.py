"""Builders of v1 offer JSON for the Mesos adapter tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def offer_json(
    offer_id: str,
    hostname: str,
    *,
    cpus: float = 4,
    mem: float = 4096,
    disk: float = 0,
    gpus: float = 0,
    ports: Sequence[tuple[int, int]] = (),
    attributes: Mapping[str, str] | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if role is not None:
        meta = {"role": role, "allocation_info": {"role": role}}
    resources: list[dict[str, Any]] = []
    for name, value in (("cpus", cpus), ("mem", mem), ("disk", disk), ("gpus", gpus)):
        if value:
            resources.append({"name": name, "type": "SCALAR", "scalar": {"value": value},
                              **meta})
    if ports:
        resources.append({"name": "ports", "type": "RANGES",
                          "ranges": {"range": [{"begin": b, "end": e} for b, e in ports]},
                          **meta})
    return {
        "id": {"value": offer_id},
        "framework_id": {"value": "fw"},
        "agent_id": {"value": f"agent-{hostname}"},
        "hostname": hostname,
        "resources": resources,
        "attributes": [{"name": k, "type": "TEXT", "text": {"value": v}}
                       for k, v in (attributes or {}).items()],
    }
