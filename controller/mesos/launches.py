"""Pending launches and where tasks go: offers in, ACCEPT and DECLINE calls out.

Owns the launches waiting for an offer, the agents' hostnames and attributes, where each
task runs (constraints such as `unique hostname` are judged against it) and the host ports
each launched task was given. The adapter hands it offers and status updates on its worker
thread; `add` and `cancel` come from the controller's threads, so the pending set is guarded
by a lock, and nothing else is shared.

Host ports: Mesos' status updates do not say which ports a task got, and the controller needs
them to publish where an instance listens. They are decided here, at ACCEPT, so they are kept
here, in memory, per task id, from the launch until an update ends the task, and attached to
every update of the task (`TaskUpdate.host_ports`). Only tasks with ports are kept. A
controller restart forgets them: updates of tasks launched before it carry None, and the
execution record keeps the ports it recorded from earlier updates.

Roles: a launch may name the Mesos role it must run under (its namespace's, from the admission
policy). It then takes only offers allocated to that role; a launch without one, once the
framework is MULTI_ROLE, only the configured role's (calls.default_role). The roles the
framework holds are the adapter's to change (`set_roles`), on its worker thread.

Apart from the adapter because none of it depends on pymesos or on the connection's
lifecycle: it makes its calls through the two functions it is given, which the adapter
routes to the current driver.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from controller.mesos import metrics
from controller.mesos.backend import LaunchRequest, MesosEvent, TaskLaunched, TaskUpdate
from controller.mesos.calls import default_role
from controller.mesos.config import MesosConfig
from controller.mesos.offers import Offer, Placements, TaskRequest, match
from controller.mesos.taskinfo import port_layout, task_info, task_request
from controller.reconcile.taskid import parse_task_id

log = structlog.get_logger("docket.mesos")

SchedulerCall = Callable[[str, dict[str, Any]], bool]
"""Sends one call (type, its own field) to the master; False when it could not be sent."""
Reconcile = Callable[[Sequence[tuple[str, str | None]]], None]
"""Asks the master about these (task id, agent id or None)."""


def task_log(task_id: str) -> Any:
    """The logger for lines about one task: with its object's kind, namespace and name when
    the id is one of Docket's, so every line about an object can be found by the object."""
    parts = parse_task_id(task_id)
    if parts is None:
        return log.bind(task_id=task_id)
    owner = parts.owner
    return log.bind(kind=owner.kind, namespace=owner.namespace, name=owner.name,
                    task_id=task_id)


def attribute_text(value: Any) -> str:
    """An attribute as the master's JSON endpoints give it, rendered as in offers."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


class Launches:
    def __init__(
        self,
        config: MesosConfig,
        events: queue.Queue[MesosEvent],
        *,
        call: SchedulerCall,
        reconcile: Reconcile,
        master: Callable[[], str | None],
        group_of: Callable[[str], str | None],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self._events = events
        self._call = call
        self._reconcile = reconcile
        self._master = master
        self._group_of = group_of
        self._clock = clock
        self._lock = threading.Lock()
        # Pending launches with what they need from an offer, worked out once at `add`.
        self._pending: dict[str, tuple[LaunchRequest, TaskRequest]] = {}
        # Where tasks run, for constraints.
        self._placements = Placements()
        self._agents: dict[str, tuple[str, Mapping[str, str]]] = {}
        self._agents_fetched = float("-inf")
        # Task id -> its host ports (PORT0.. order), for tasks launched with any.
        self._host_ports: dict[str, tuple[int, ...]] = {}
        # The roles the policy names (calls.framework_roles); the worker's only.
        self.extra_roles: tuple[str, ...] = ()
        self._base_role = None if config.roles else (config.role or "*")

    # --- pending launches (any thread) ------------------------------------------------------
    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, requests: Iterable[LaunchRequest]) -> bool:
        """Queue launches until an offer fits them; True when any is new. One whose template
        cannot become a task fails at once with TASK_ERROR."""
        added = 0
        invalid: list[tuple[str, str]] = []
        with self._lock:
            for req in requests:
                if req.task_id in self._pending:
                    continue
                group = req.group or self._group_of(req.task_id) or req.task_id
                try:
                    needs = task_request(req.template, req.task_id, group,
                                         req.health_check)
                except ValueError as exc:
                    invalid.append((req.task_id, str(exc)))
                    continue
                # The configured role is what a launch without a role gets anyway: naming it
                # must not tie a single-role framework to offers allocated to it by name.
                if req.role is not None and req.role != self._base_role:
                    needs = dataclasses.replace(needs, role=req.role)
                self._pending[req.task_id] = (req, needs)
                added += 1
            metrics.PENDING_LAUNCHES.set(len(self._pending))
        for task_id, message in invalid:
            self.launch_failed(task_id, message)
        return added > 0

    def pending_roles(self) -> list[str] | None:
        """The roles the pending launches wait for offers of (a REVIVE names them), or None
        when one of them takes any role (a single-role framework: REVIVE them all)."""
        fallback = default_role(self.config, self.extra_roles)
        roles: set[str] = set()
        with self._lock:
            for _, needs in self._pending.values():
                role = needs.role or fallback
                if role is None:
                    return None
                roles.add(role)
        return sorted(roles)

    def cancel(self, task_id: str) -> bool:
        with self._lock:
            found = self._pending.pop(task_id, None) is not None
            metrics.PENDING_LAUNCHES.set(len(self._pending))
        return found

    def forget(self, task_id: str) -> None:
        """A task being killed is not launched if it was still waiting."""
        with self._lock:
            if self._pending.pop(task_id, None) is not None:
                metrics.PENDING_LAUNCHES.set(len(self._pending))

    def launch_failed(self, task_id: str, message: str) -> None:
        metrics.LAUNCH_ERRORS.inc()
        task_log(task_id).error("task cannot be launched", error=message)
        self._events.put(TaskUpdate(task_id=task_id, state="TASK_ERROR",
                                    reason="REASON_TASK_INVALID", message=message,
                                    source="SOURCE_FRAMEWORK", timestamp=time.time()))

    # --- the adapter's worker ---------------------------------------------------------------
    def on_update(self, status: Mapping[str, Any]) -> TaskUpdate:
        """The update of a status that names a task, with the hostname of its agent and the
        host ports it was launched with; keeps where the task runs current."""
        agent_id = (status.get("agent_id") or {}).get("value")
        task_id = str(status["task_id"]["value"])
        placement = self._placements.get(task_id)
        hostname = placement[1][0] if placement else None
        if hostname is None and agent_id in self._agents:
            hostname = self._agents[agent_id][0]
        if hostname is None and agent_id and agent_id not in self._agents:
            self.refresh_agents(min_interval=self.config.agent_refresh_seconds)
            if agent_id in self._agents:
                hostname = self._agents[agent_id][0]
        update = TaskUpdate.from_status(status, hostname, self._host_ports.get(task_id))
        metrics.STATUS_UPDATES.labels(update.state).inc()
        if update.terminal or update.state == "TASK_UNKNOWN":
            self._placements.remove(task_id)
            # TASK_UNREACHABLE keeps them: the task may come back.
            self._host_ports.pop(task_id, None)
        elif placement is None and agent_id in self._agents:
            group = self._group_of(task_id)
            if group is not None:
                host, attrs = self._agents[agent_id]
                self._placements.add(task_id, group, host, attrs)
        return update

    def on_offers(self, raw_offers: Sequence[Mapping[str, Any]]) -> None:
        """Match the offers to pending launches: ACCEPT each offer that got tasks, DECLINE the
        rest in one call."""
        metrics.OFFERS_RECEIVED.inc(len(raw_offers))
        offers = []
        for raw in raw_offers:
            try:
                offer = Offer.parse(raw)
            except (KeyError, TypeError, ValueError):
                log.warning("unreadable offer declined", offer=raw.get("id"))
                continue
            offers.append(offer)
            self._agents[offer.agent_id] = (offer.hostname, offer.attributes)
        with self._lock:
            requests = [needs for _, needs in self._pending.values()]
            constrained = {needs.group for needs in requests if needs.constraints}
            result = match(offers, requests, self._placements.of_groups(constrained),
                           default_role=default_role(self.config, self.extra_roles))
            templates = {a.task_id: self._pending.pop(a.task_id)[0] for a in result.assignments}
            metrics.PENDING_LAUNCHES.set(len(self._pending))
        filters = {"refuse_seconds": self.config.accept_refuse_seconds}
        declined: list[dict[str, str]] = []
        for offer_id, assignments in result.by_offer.items():
            infos = []
            ports: dict[str, tuple[int, ...]] = {}
            for a in assignments:
                req = templates[a.task_id]
                try:
                    infos.append(task_info(req.template, a, name=req.name,
                                           extra_env=req.extra_env,
                                           max_completion_seconds=req.max_completion_seconds,
                                           health_check=req.health_check,
                                           secret_env=req.secret_env))
                    ports[a.task_id] = port_layout(req.template, a).numbers
                except ValueError as exc:
                    self.launch_failed(a.task_id, str(exc))
            # Before the call: even when it seems to fail, the tasks may exist, and the
            # answers to the reconciliation below are their updates.
            self._host_ports.update((t, p) for t, p in ports.items() if p)
            if not infos:
                declined.append({"value": offer_id})
                continue
            ok = self._call("ACCEPT", {"accept": {
                "offer_ids": [{"value": offer_id}],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": infos}}],
                "filters": filters,
            }})
            if not ok:
                # Mesos may or may not have them: ask, and let the answer decide.
                metrics.LAUNCH_ERRORS.inc(len(infos))
                self._reconcile([(i["task_id"]["value"], i["agent_id"]["value"])
                                 for i in infos])
                continue
            metrics.OFFERS_USED.inc()
            metrics.TASKS_LAUNCHED.inc(len(infos))
            launched = {i["task_id"]["value"] for i in infos}
            for a in assignments:
                if a.task_id not in launched:
                    continue
                group = a.request.group
                self._placements.add(a.task_id, group, a.offer.hostname, a.offer.attributes)
                task_log(a.task_id).info("task launched", agent_id=a.offer.agent_id,
                                         hostname=a.offer.hostname)
                self._events.put(TaskLaunched(a.task_id, a.offer.agent_id, a.offer.hostname,
                                              offer_id, ports[a.task_id]))
        unused = [{"value": o.id} for o in result.unused]
        parsed = {o.id for o in offers}
        unreadable = [{"value": str(r["id"]["value"])} for r in raw_offers
                      if "value" in (r.get("id") or {}) and str(r["id"]["value"]) not in parsed]
        declined += unused + unreadable
        if declined:
            metrics.OFFERS_DECLINED.inc(len(declined))
            self._call("DECLINE", {"decline": {
                "offer_ids": declined,
                "filters": {"refuse_seconds": self.config.refuse_seconds},
            }})

    def refresh_agents(self, min_interval: float = 0.0) -> None:
        """Learn every agent's hostname and attributes from the master's read endpoints
        (offers tell only of agents with free resources; constraints and updates need them
        all)."""
        now = self._clock()
        if now - self._agents_fetched < min_interval:
            return
        self._agents_fetched = now
        master = self._master()
        if not master:
            return
        agents = None
        # /master/slaves is the cheap one; a master that lacks it still has /master/state.
        for path in ("/master/slaves", "/master/state"):
            try:
                agents = self._get_json(f"http://{master}{path}").get("slaves")
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    log.warning("cannot list mesos agents", error=str(exc))
                    return
            except Exception as exc:
                log.warning("cannot list mesos agents", error=str(exc))
                return
        for agent in agents or []:
            attrs = {str(k): attribute_text(v) for k, v in (agent.get("attributes") or {}).items()}
            self._agents[str(agent["id"])] = (str(agent.get("hostname", "")), attrs)

    def _get_json(self, url: str) -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        c = self.config
        if c.principal and c.secret:
            token = base64.b64encode(f"{c.principal}:{c.secret}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=c.call_timeout_seconds) as resp:
            body = json.loads(resp.read().decode("utf-8"))
        return body if isinstance(body, dict) else {}
