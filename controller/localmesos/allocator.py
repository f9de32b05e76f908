"""The offer allocator: who is offered what, when, and what comes back.

It plays Mesos' hierarchical allocator as a framework sees it: an allocation round (every
`allocation_interval`, and at once after a SUBSCRIBE, a REVIVE or an agent's return) offers
each active agent's available resources to one connected framework, rotating the first one
asked from round to round, for the first of its roles that is neither suppressed nor filtered
on that agent. Agents with GPUs are offered only to frameworks with GPU_RESOURCES (Mesos'
default --filter_gpu_resources). Declined or unused resources are filtered per (role, agent)
for `refuse_seconds`; REVIVE clears the filters of its roles and SUPPRESS stops their offers.
ACCEPT is checked here (validation.py) and its LAUNCH operations handed to tasks.py.

A round over 1,000 agents runs under the master lock, so it stays cheap: agents whose
accounting did not move cost no arithmetic (`Agent.available` is cached) and each
framework gets one OFFERS event per round.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from controller.localmesos.base import MasterBase
from controller.localmesos.models import Agent, Framework, Offer
from controller.localmesos.resources import Resources
from controller.localmesos.validation import dropped_role, validate_offers

log = structlog.get_logger("docket.localmesos.master")


class OfferAllocator(MasterBase):
    def allocate(self) -> None:
        with self.lock:
            frameworks = [fw for fw in self.frameworks.values() if fw.connected and fw.active]
            if not frameworks:
                return
            now = time.monotonic()
            batches: dict[str, list[dict[str, Any]]] = {}
            rotation = self._offer_seq
            for agent in self.agents.values():
                if agent.state != "active":
                    continue
                if not agent.has_available:
                    continue
                available = agent.available
                has_gpus = agent.total.get("gpus") > 0
                for i in range(len(frameworks)):
                    fw = frameworks[(rotation + i) % len(frameworks)]
                    if has_gpus and "GPU_RESOURCES" not in fw.capabilities:
                        # Mesos' default (--filter_gpu_resources): agents with GPUs are kept
                        # for frameworks that declare they can use them.
                        continue
                    role = next((r for r in fw.roles if r not in fw.suppressed
                                 and not self._filtered(fw, r, agent.agent_id, available, now)),
                                None)
                    if role is None:
                        continue
                    offer = self._make_offer(fw, agent, role, available)
                    batches.setdefault(fw.framework_id, []).append(offer)
                    break
            for fid, offers in batches.items():
                self._send(self.frameworks[fid], {"type": "OFFERS", "offers": {"offers": offers}})

    def _filtered(self, fw: Framework, role: str, agent_id: str, available: Resources,
                  now: float) -> bool:
        entries = [(r, t) for r, t in fw.filters.get((role, agent_id), []) if t > now]
        if entries:
            fw.filters[(role, agent_id)] = entries
        else:
            fw.filters.pop((role, agent_id), None)
        # Mesos refuses offers of resources that the declined ones contain (a superset is
        # offered again).
        return any(declined.contains(available) for declined, _ in entries)

    def _make_offer(self, fw: Framework, agent: Agent, role: str,
                    resources: Resources) -> dict[str, Any]:
        offer_id = f"{self.master_id}-O{self._offer_seq}"
        self._offer_seq += 1
        offer = Offer(offer_id, fw.framework_id, agent.agent_id, role, resources)
        self.offers[offer_id] = offer
        fw.offers.add(offer_id)
        agent.offered = agent.offered + resources
        if self.config.offer_timeout is not None:
            offer.timer = self.timers.call_later(
                self.config.offer_timeout, lambda: self._rescind_expired(offer_id))
        multi_role = "MULTI_ROLE" in fw.capabilities
        body: dict[str, Any] = {
            "id": {"value": offer_id},
            "framework_id": {"value": fw.framework_id},
            "agent_id": {"value": agent.agent_id},
            "hostname": agent.hostname,
            "url": {"scheme": "http",
                    "address": {"hostname": agent.hostname, "ip": self.config.host,
                                "port": agent.port},
                    "path": f"/{agent.pid_name}"},
            "resources": resources.to_json(
                allocation_role=role if multi_role else None,
                refinement="RESERVATION_REFINEMENT" in fw.capabilities),
            "attributes": agent.attributes,
        }
        if multi_role:
            body["allocation_info"] = {"role": role}
        return body

    def _remove_offer(self, offer_id: str, *, rescind: bool) -> Offer | None:
        offer = self.offers.pop(offer_id, None)
        if offer is None:
            return None
        if offer.timer:
            offer.timer.cancel()
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offered = agent.offered - offer.resources
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer_id)
            if rescind:
                self._send(fw, {"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}})
        return offer

    def _rescind_expired(self, offer_id: str) -> None:
        self.rescind_offer(offer_id)

    def rescind_offer(self, offer_id: str) -> bool:
        with self.lock:
            return self._remove_offer(offer_id, rescind=True) is not None

    def _add_filter(self, fw: Framework, role: str, agent_id: str, resources: Resources,
                    filters: dict[str, Any] | None) -> None:
        refuse = self.config.default_refuse_seconds
        if filters and "refuse_seconds" in filters:
            refuse = float(filters["refuse_seconds"])
        if refuse > 0 and not resources.empty:
            fw.filters.setdefault((role, agent_id), []).append(
                (resources, time.monotonic() + refuse))

    def decline(self, fw: Framework, decline: dict[str, Any]) -> None:
        for oid in decline.get("offer_ids") or []:
            offer_id = oid.get("value")
            offer = self.offers.get(offer_id)
            if offer is None or offer.framework_id != fw.framework_id:
                continue
            self._remove_offer(offer_id, rescind=False)
            self._add_filter(fw, offer.role, offer.agent_id, offer.resources,
                             decline.get("filters"))

    @staticmethod
    def _roles_dropped(fw: Framework, roles: list[str], what: str) -> bool:
        """Mesos drops a whole REVIVE or SUPPRESS (still answered 202) if one of its roles
        is invalid or not one the framework subscribed with."""
        dropped = dropped_role(fw, roles)
        if dropped is None:
            return False
        role, error = dropped
        log.warning(f"dropping {what} call", framework_id=fw.framework_id, role=role,
                    error=error)
        return True

    def revive(self, fw: Framework, roles: list[str]) -> None:
        if self._roles_dropped(fw, roles, "REVIVE"):
            return
        targets = set(roles) if roles else set(fw.roles)
        fw.suppressed -= targets
        for key in [k for k in fw.filters if k[0] in targets]:
            del fw.filters[key]
        self.timers.call_soon(self.allocate)

    def suppress(self, fw: Framework, roles: list[str]) -> None:
        if self._roles_dropped(fw, roles, "SUPPRESS"):
            return
        fw.suppressed |= set(roles) if roles else set(fw.roles)

    def accept(self, fw: Framework, accept: dict[str, Any]) -> None:
        offer_ids = [o.get("value") for o in accept.get("offer_ids") or []]
        operations = accept.get("operations") or []
        error = validate_offers(self.offers, fw, offer_ids)
        if error is not None:
            for offer_id in offer_ids:
                offer = self.offers.get(offer_id)
                if offer is not None and offer.framework_id == fw.framework_id:
                    self._remove_offer(offer_id, rescind=False)
            state = "TASK_DROPPED" if fw.partition_aware else "TASK_LOST"
            for op in operations:
                for info in self._launch_infos(op):
                    self._send_master_update(fw, info, state,
                                             f"Task launched with invalid offers: {error}",
                                             "REASON_INVALID_OFFERS")
            return
        offers = [self._remove_offer(oid, rescind=False) for oid in offer_ids]
        agent = self.agents[offers[0].agent_id]  # type: ignore[union-attr]
        role = offers[0].role  # type: ignore[union-attr]
        remaining = Resources()
        for offer in offers:
            remaining = remaining + offer.resources  # type: ignore[union-attr]
        for op in operations:
            kind = op.get("type")
            if kind == "LAUNCH":
                for info in op.get("launch", {}).get("task_infos") or []:
                    remaining = self._launch(fw, agent, role, info, remaining)
            elif kind == "LAUNCH_GROUP":
                for info in self._launch_infos(op):
                    self._send_master_update(
                        fw, info, "TASK_ERROR",
                        "LAUNCH_GROUP is not supported by this embedded Mesos (no default "
                        "executor)", "REASON_TASK_GROUP_INVALID")
            else:
                log.warning("refusing unsupported offer operation", type=kind,
                            framework_id=fw.framework_id)
        # What the framework did not use goes back, filtered for refuse_seconds.
        self._add_filter(fw, role, agent.agent_id, remaining, accept.get("filters"))

    @staticmethod
    def _launch_infos(op: dict[str, Any]) -> list[dict[str, Any]]:
        if op.get("type") == "LAUNCH":
            return list((op.get("launch") or {}).get("task_infos") or [])
        if op.get("type") == "LAUNCH_GROUP":
            group = (op.get("launch_group") or {}).get("task_group") or {}
            return list(group.get("tasks") or [])
        return []

