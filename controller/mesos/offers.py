"""Offers as a small typed view, and first-fit matching of pending tasks over a batch of them.

Pure: no I/O, no clock. The adapter feeds it the offers of one RESOURCE_OFFERS event and the
launches waiting; it answers which task goes on which offer with exactly which resources, so
one ACCEPT per offer can carry many LAUNCH operations.

Each resource a task takes is copied from the offer with its role, allocation_info and
reservations intact, because Mesos rejects a launch whose resources are not literally part of
the offer. With MULTI_ROLE an offer can mix roles; one task takes all its resources under one
allocation role (Mesos 1.11 refuses resources of several: validation.cpp
validateAllocatedToSingleRole), and a task that must run under a role (its namespace's, from
the admission policy) takes only resources allocated to that role. Scalars are counted in
thousandths (Mesos' own fixed-point precision) so
repeated subtraction never strands 0.0999 of a CPU. Resources with a `disk` source or
persistent volume are left alone: they cannot be split.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.api.template import Constraint
from controller.mesos.constraints import all_satisfied

SCALARS = ("cpus", "mem", "disk", "gpus")
_META_SKIP = {"name", "type", "scalar", "ranges", "set"}

Placement = tuple[str, Mapping[str, str]]


class Placements:
    """Where running tasks are (hostname, attributes), by task id and by group: constraints
    only ever look at the tasks of their own group, so an offer round reads just the groups
    of the pending requests that have constraints, not every running task."""

    def __init__(self) -> None:
        self._by_task: dict[str, tuple[str, Placement]] = {}
        self._by_group: dict[str, dict[str, Placement]] = {}

    def get(self, task_id: str) -> tuple[str, Placement] | None:
        """(group, (hostname, attributes)) of a task, or None."""
        return self._by_task.get(task_id)

    def add(self, task_id: str, group: str, hostname: str, attributes: Mapping[str, str]
            ) -> None:
        self.remove(task_id)
        self._by_task[task_id] = (group, (hostname, attributes))
        self._by_group.setdefault(group, {})[task_id] = (hostname, attributes)

    def remove(self, task_id: str) -> None:
        found = self._by_task.pop(task_id, None)
        if found is not None:
            tasks = self._by_group[found[0]]
            del tasks[task_id]
            if not tasks:
                del self._by_group[found[0]]

    def of_groups(self, groups: Iterable[str]) -> dict[str, list[Placement]]:
        return {g: list(self._by_group[g].values()) for g in groups if g in self._by_group}
"""Where a task runs: the agent's hostname and attributes."""


def _milli(value: float) -> int:
    return round(value * 1000)


def _format_scalar(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def attribute_text(attribute: Mapping[str, Any]) -> str | None:
    """An agent attribute as the text constraints compare (Mesos' own rendering)."""
    kind = attribute.get("type", "TEXT")
    if kind == "TEXT":
        value = attribute.get("text", {}).get("value")
        return None if value is None else str(value)
    if kind == "SCALAR":
        return _format_scalar(float(attribute.get("scalar", {}).get("value", 0)))
    if kind == "RANGES":
        ranges = attribute.get("ranges", {}).get("range", [])
        return "[" + ", ".join(f"{r['begin']}-{r['end']}" for r in ranges) + "]"
    if kind == "SET":
        return "{" + ", ".join(attribute.get("set", {}).get("item", [])) + "}"
    return None


@dataclass(frozen=True)
class ResourcePool:
    """One Resource entry of an offer: a scalar amount (in thousandths) or port ranges, plus
    the fields that must be copied verbatim into a TaskInfo (role, allocation_info, ...)."""

    name: str
    milli: int = 0
    ranges: tuple[tuple[int, int], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def allocation_role(self) -> str:
        info = self.meta.get("allocation_info") or {}
        return str(info.get("role") or self.meta.get("role") or "*")

    def scalar_json(self, milli: int) -> dict[str, Any]:
        return {"name": self.name, "type": "SCALAR", "scalar": {"value": milli / 1000},
                **_copy(self.meta)}

    def ranges_json(self, ports: Sequence[int]) -> dict[str, Any]:
        return {"name": self.name, "type": "RANGES",
                "ranges": {"range": [{"begin": b, "end": e} for b, e in _to_ranges(ports)]},
                **_copy(self.meta)}


def _copy(meta: Mapping[str, Any]) -> dict[str, Any]:
    # Nested dicts are shared by every task taking from the pool: copy so a caller that
    # mutates one TaskInfo cannot change another.
    return copy.deepcopy(dict(meta))


def _to_ranges(ports: Sequence[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for p in sorted(ports):
        if out and p == out[-1][1] + 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return [(b, e) for b, e in out]


@dataclass(frozen=True)
class Offer:
    """The parts of a v1 Offer that matching needs, plus the raw dict."""

    id: str
    agent_id: str
    hostname: str
    attributes: Mapping[str, str]
    pools: tuple[ResourcePool, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def parse(offer: Mapping[str, Any]) -> Offer:
        pools = []
        for res in offer.get("resources", []):
            name = res.get("name")
            if "disk" in res or "set" in res or res.get("revocable") is not None:
                continue  # volumes, mount disks, revocable resources: not ours to split
            meta = {k: v for k, v in res.items() if k not in _META_SKIP}
            if res.get("type", "SCALAR") == "SCALAR" and name in SCALARS:
                pools.append(ResourcePool(name, _milli(float(res["scalar"]["value"])),
                                          meta=meta))
            elif res.get("type") == "RANGES" and name == "ports":
                ranges = tuple((int(r["begin"]), int(r["end"]))
                               for r in res.get("ranges", {}).get("range", []))
                pools.append(ResourcePool(name, ranges=ranges, meta=meta))
        attributes: dict[str, str] = {}
        for attr in offer.get("attributes", []):
            text = attribute_text(attr)
            if text is not None and "name" in attr:
                attributes[str(attr["name"])] = text
        return Offer(
            id=str(offer["id"]["value"]),
            agent_id=str(offer["agent_id"]["value"]),
            hostname=str(offer.get("hostname", "")),
            attributes=attributes,
            pools=tuple(pools),
            raw=offer,
        )

    def total(self, name: str) -> float:
        """The amount of a scalar resource in the offer (all roles)."""
        return sum(p.milli for p in self.pools if p.name == name) / 1000

    def port_count(self) -> int:
        return sum(e - b + 1 for p in self.pools if p.name == "ports" for b, e in p.ranges)


@dataclass(frozen=True)
class TaskRequest:
    """What one pending task needs. `group` names the set of tasks its constraints are
    counted over (normally its owning object); `host_ports` are fixed ports it must get,
    `ports` the number of any other ports."""

    task_id: str
    group: str
    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    gpus: float = 0.0
    ports: int = 0
    host_ports: tuple[int, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    role: str | None = None
    """The allocation role the task must run under; None: the match's default (any role of
    the offer, unless the match names one)."""


@dataclass(frozen=True)
class Assignment:
    """A task placed on an offer: the exact resources to put in its TaskInfo and the host
    ports it got (fixed ones first, in request order, then the dynamic ones; the order the
    task sees them in is taskinfo.port_layout's business)."""

    request: TaskRequest
    offer: Offer
    resources: tuple[dict[str, Any], ...]
    ports: tuple[int, ...]

    @property
    def task_id(self) -> str:
        return self.request.task_id


@dataclass
class MatchResult:
    by_offer: dict[str, list[Assignment]]
    """Offer id -> the tasks placed on it, for offers that got at least one."""
    unmatched: list[TaskRequest]
    unused: list[Offer]
    """Offers that got nothing: decline them."""

    @property
    def assignments(self) -> list[Assignment]:
        return [a for group in self.by_offer.values() for a in group]


class _Remaining:
    """What is left of one offer during a matching pass."""

    def __init__(self, offer: Offer) -> None:
        self.offer = offer
        self.milli = [p.milli for p in offer.pools]
        self.free_ports = [
            [port for b, e in p.ranges for port in range(b, e + 1)] if p.name == "ports" else []
            for p in offer.pools
        ]
        self.roles = list(dict.fromkeys(p.allocation_role for p in offer.pools))
        self.totals: dict[str, int] = {}
        for p in offer.pools:
            self.totals[p.name] = self.totals.get(p.name, 0) + p.milli

    def take(self, req: TaskRequest, default_role: str | None = None
             ) -> tuple[tuple[dict[str, Any], ...], tuple[int, ...]] | None:
        # Cheap rejection first: most requests in a big backlog fit no exhausted offer.
        if _milli(req.cpus) > self.totals.get("cpus", 0) or \
                _milli(req.mem) > self.totals.get("mem", 0):
            return None
        role = req.role or default_role
        if role is not None:
            return self._take_in_role(req, role) if role in self.roles else None
        for role in self.roles:
            got = self._take_in_role(req, role)
            if got is not None:
                return got
        return None

    def _take_in_role(self, req: TaskRequest, role: str
                      ) -> tuple[tuple[dict[str, Any], ...], tuple[int, ...]] | None:
        pools = [i for i, p in enumerate(self.offer.pools) if p.allocation_role == role]
        plan: list[tuple[int, int]] = []  # (pool index, milli taken)
        for name, amount in (("cpus", req.cpus), ("mem", req.mem), ("disk", req.disk),
                             ("gpus", req.gpus)):
            need = _milli(amount)
            for i in pools:
                if need <= 0:
                    break
                if self.offer.pools[i].name == name and self.milli[i] > 0:
                    part = min(need, self.milli[i])
                    plan.append((i, part))
                    need -= part
            if need > 0:
                return None
        port_plan: dict[int, list[int]] = {}
        chosen: list[int] = []
        port_pools = [i for i in pools if self.offer.pools[i].name == "ports"]
        for port in req.host_ports:
            owner = next((i for i in port_pools if port in self.free_ports[i]
                          and port not in port_plan.get(i, [])), None)
            if owner is None:
                return None
            port_plan.setdefault(owner, []).append(port)
            chosen.append(port)
        dynamic = req.ports
        for i in port_pools:
            if dynamic <= 0:
                break
            taken = set(port_plan.get(i, []))
            for port in self.free_ports[i]:
                if dynamic <= 0:
                    break
                if port not in taken:
                    port_plan.setdefault(i, []).append(port)
                    chosen.append(port)
                    dynamic -= 1
        if dynamic > 0:
            return None
        # Commit only now that everything fits.
        resources: list[dict[str, Any]] = []
        for i, part in plan:
            self.milli[i] -= part
            self.totals[self.offer.pools[i].name] -= part
            resources.append(self.offer.pools[i].scalar_json(part))
        for i, ports in port_plan.items():
            gone = set(ports)
            self.free_ports[i] = [p for p in self.free_ports[i] if p not in gone]
            resources.append(self.offer.pools[i].ranges_json(ports))
        return tuple(resources), tuple(chosen)


def match(
    offers: Sequence[Offer],
    requests: Sequence[TaskRequest],
    running: Mapping[str, Sequence[Placement]] | None = None,
    default_role: str | None = None,
) -> MatchResult:
    """Place each request, in order, on the first offer with room that its constraints allow.

    `running` gives, per group, where that group's tasks already run; tasks placed in this
    pass are added to it as they go (the caller's mapping is not modified). A request takes
    only resources allocated to its role, or to `default_role` when it names none; with
    neither, resources of any one role of the offer.
    """
    running = running or {}
    placed: dict[str, list[Placement]] = {}
    remaining = [_Remaining(o) for o in offers]
    by_offer: dict[str, list[Assignment]] = {}
    unmatched: list[TaskRequest] = []
    # Resources only shrink during a pass, so a request shape without constraints that fit
    # nowhere will fit nowhere later either: a big homogeneous backlog costs one scan.
    hopeless: set[tuple[object, ...]] = set()
    for req in requests:
        shape = None if req.constraints else (
            req.cpus, req.mem, req.disk, req.gpus, req.ports, req.host_ports, req.role)
        if shape is not None and shape in hopeless:
            unmatched.append(req)
            continue
        group_places = placed.get(req.group)
        if group_places is None:  # copied on first use: the caller's stays as it is
            group_places = placed[req.group] = list(running.get(req.group, ()))
        for rem in remaining:
            offer = rem.offer
            if req.constraints and not all_satisfied(
                req.constraints, offer.hostname, offer.attributes, group_places
            ):
                continue
            got = rem.take(req, default_role)
            if got is None:
                continue
            resources, ports = got
            by_offer.setdefault(offer.id, []).append(Assignment(req, offer, resources, ports))
            group_places.append((offer.hostname, offer.attributes))
            break
        else:
            unmatched.append(req)
            if shape is not None:
                hopeless.add(shape)
    unused = [o for o in offers if o.id not in by_offer]
    return MatchResult(by_offer=by_offer, unmatched=unmatched, unused=unused)
