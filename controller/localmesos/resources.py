"""Mesos resources as the master accounts them: scalars (cpus, mem, disk, gpus) and port
ranges, with containment and arithmetic, converted from and to the v1 JSON `Resource` list.

Scalars are kept in Mesos' fixed-point precision (three decimals) so that repeated
subtraction never leaves 0.09999999 of a CPU that no task can use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCALARS = ("cpus", "mem", "disk", "gpus")


def _fixed(value: float) -> float:
    return round(value * 1000) / 1000


def _normalize(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for begin, end in sorted(r for r in ranges if r[0] <= r[1]):
        if out and begin <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return tuple((b, e) for b, e in out)


def _subtract_ranges(have: tuple[tuple[int, int], ...],
                     take: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    result = list(have)
    for tb, te in take:
        nxt = []
        for b, e in result:
            if te < b or tb > e:
                nxt.append((b, e))
                continue
            if b < tb:
                nxt.append((b, tb - 1))
            if te < e:
                nxt.append((te + 1, e))
        result = nxt
    return _normalize(result)


def _ranges_contain(have: tuple[tuple[int, int], ...],
                    want: tuple[tuple[int, int], ...]) -> bool:
    return all(any(b <= wb and we <= e for b, e in have) for wb, we in want)


class ResourceError(ValueError):
    """A Resource in a call that Mesos would reject."""


@dataclass(frozen=True)
class Resources:
    scalars: Mapping[str, float] = field(default_factory=dict)
    ports: tuple[tuple[int, int], ...] = ()

    @staticmethod
    def of(cpus: float = 0, mem: float = 0, disk: float = 0, gpus: float = 0,
           ports: Iterable[tuple[int, int]] = ()) -> Resources:
        scalars = {k: _fixed(v) for k, v in
                   (("cpus", cpus), ("mem", mem), ("disk", disk), ("gpus", gpus)) if v}
        return Resources(scalars, _normalize(ports))

    def get(self, name: str) -> float:
        return self.scalars.get(name, 0.0)

    @property
    def empty(self) -> bool:
        return not any(v > 0 for v in self.scalars.values()) and not self.ports

    def contains(self, other: Resources) -> bool:
        return all(self.get(k) + 1e-9 >= v for k, v in other.scalars.items()) and \
            _ranges_contain(self.ports, other.ports)

    def __add__(self, other: Resources) -> Resources:
        if not other.scalars and not other.ports:
            return self
        scalars = dict(self.scalars)
        for k, v in other.scalars.items():
            scalars[k] = _fixed(scalars.get(k, 0.0) + v)
        ports = _normalize(self.ports + other.ports) if self.ports and other.ports \
            else self.ports or other.ports
        return Resources(scalars, ports)

    def __sub__(self, other: Resources) -> Resources:
        if not other.scalars and not other.ports:
            return self
        take = other.scalars
        scalars = {}
        for k, v in self.scalars.items():
            left = _fixed(v - take[k]) if k in take else v
            if left > 0:
                scalars[k] = left
        ports = _subtract_ranges(self.ports, other.ports) if self.ports and other.ports \
            else self.ports
        return Resources(scalars, ports)

    def __str__(self) -> str:
        parts = [f"{k}:{self.scalars[k]:g}" for k in SCALARS if self.scalars.get(k)]
        if self.ports:
            parts.append("ports:[" + ", ".join(f"{b}-{e}" for b, e in self.ports) + "]")
        return "; ".join(parts) or "{}"

    def allocated_string(self, role: str) -> str:
        """Mesos' stringify(Resources) of resources allocated to `role`, as its validation
        messages print them: "cpus(allocated: *):1; mem(allocated: *):128"."""
        parts = [f"{k}(allocated: {role}):{self.scalars[k]:g}" for k in SCALARS
                 if self.scalars.get(k)]
        if self.ports:
            parts.append(f"ports(allocated: {role}):[" +
                         ", ".join(f"{b}-{e}" for b, e in self.ports) + "]")
        return "; ".join(parts)

    # --- JSON ------------------------------------------------------------------------------
    def to_json(self, *, allocation_role: str | None = None,
                refinement: bool = False) -> list[dict[str, Any]]:
        """Unreserved resources as the master sends them: in the pre-reservation-refinement
        format (role "*") to frameworks without RESERVATION_REFINEMENT, with neither role nor
        reservations to those with it; allocation_info only for MULTI_ROLE frameworks."""
        out: list[dict[str, Any]] = []
        for name in SCALARS:
            value = self.scalars.get(name, 0)
            if value > 0:
                out.append({"name": name, "type": "SCALAR", "scalar": {"value": value}})
        if self.ports:
            out.append({"name": "ports", "type": "RANGES",
                        "ranges": {"range": [{"begin": b, "end": e} for b, e in self.ports]}})
        if not refinement:
            for r in out:
                r["role"] = "*"
        if allocation_role is not None:
            for r in out:
                r["allocation_info"] = {"role": allocation_role}
        return out

    @staticmethod
    def from_json(items: Any) -> Resources:
        if not isinstance(items, list):
            raise ResourceError("resources must be a list")
        total = Resources()
        for item in items:
            if not isinstance(item, dict) or "name" not in item or "type" not in item:
                raise ResourceError("each resource needs 'name' and 'type'")
            name, kind = item["name"], item["type"]
            if kind == "SCALAR":
                value = (item.get("scalar") or {}).get("value")
                if not isinstance(value, int | float) or value < 0:
                    raise ResourceError(f"invalid scalar resource {name!r}")
                total = total + Resources({name: _fixed(float(value))})
            elif kind == "RANGES":
                ranges = []
                for r in (item.get("ranges") or {}).get("range", []):
                    b, e = int(r["begin"]), int(r["end"])
                    if b > e:
                        raise ResourceError(f"invalid range {b}-{e} of {name!r}")
                    ranges.append((b, e))
                if name != "ports":
                    raise ResourceError(f"unknown ranges resource {name!r}")
                total = total + Resources({}, _normalize(ranges))
            else:
                raise ResourceError(f"unsupported resource type {kind!r} of {name!r}")
        return total
