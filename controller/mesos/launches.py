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

Throttles (issue 16; the rules are throttle.py's): with a `ThrottleSource` set and any pending
launch naming a throttle, each offer round first asks the gate which pending launches may be
matched; the others stay pending, held. Without either, nothing of this runs. The source's
usage counts the intents of launches still waiting here, so those are taken off; the tasks
this process launched and has not seen end are a floor under the count (the source reads a
cache that may lag the writes). After each round the source is told what is held. Held
launches are not "waiting for an offer": the pending-launches gauge leaves them out (they have
their own), so an alert on launches no offer fits does not fire for work a throttle holds.
Room comes from a task ending (once recorded: the source counts records) or a limit raised,
never from an offer, so held launches do not wait for offers: the adapter asks `throttle_room`
on its ticks — every `ROOM_POLL_SECONDS` for a while after a counted task ended, else every
tick — and REVIVEs when a held launch would now be admitted; the REVIVE clears the filters of
the offers declined meanwhile (declined as usual, with the long filter: shorter ones would
bring every agent's offer back every few seconds for as long as a throttle stays full).

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
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from controller.mesos import metrics
from controller.mesos.backend import (
    LaunchRequest,
    MesosEvent,
    TaskLaunched,
    TaskUpdate,
    ThrottleSource,
)
from controller.mesos.calls import default_role
from controller.mesos.config import MesosConfig
from controller.mesos.offers import Offer, Placements, TaskRequest, match
from controller.mesos.taskinfo import port_layout, task_info, task_request
from controller.mesos.throttle import Gate, Waiting, gate, live_counts
from controller.reconcile.taskid import parse_task_id

log = structlog.get_logger("docket.mesos")

SchedulerCall = Callable[[str, dict[str, Any]], bool]
"""Sends one call (type, its own field) to the master; False when it could not be sent."""
Reconcile = Callable[[Sequence[tuple[str, str | None]]], None]
"""Asks the master about these (task id, agent id or None)."""

ROOM_POLL_SECONDS = 0.1
ROOM_WINDOW_SECONDS = 3.0
"""After a task counted against a throttle ends while launches are held, look for room this
often for this long: the room shows once the controller has recorded the end, usually within
a few hundred milliseconds; past the window, the adapter's tick keeps looking."""


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
        # Tasks of an ACCEPT that seemed to fail (task id -> agent id), until Mesos says
        # anything of them: reconciled at once and again on every subscription, since the
        # first ask may fail too (the master died with the ACCEPT) and the controller still
        # counts them as handed over, so no one else would ever ask (the worker's only).
        self._uncertain: dict[str, str] = {}
        # The roles the policy names (calls.framework_roles); the worker's only.
        self.extra_roles: tuple[str, ...] = ()
        self._base_role = None if config.roles else (config.role or "*")
        # Throttles. The source is set from any thread (a plain reference: read once per use).
        self.throttle_source: ThrottleSource | None = None
        self._throttled = 0  # pending launches naming a throttle (lock)
        self._held: set[str] = set()  # pending launches the last round held back (lock)
        self._reported = False  # whether the last `held` told of any (worker)
        # Tasks launched here with throttles, until their end is seen, and their count per
        # throttle (worker).
        self._counted: dict[str, tuple[str, ...]] = {}
        self._counted_per: Counter[str] = Counter()
        self._last_room_check = float("-inf")
        self._room_soon_until = float("-inf")

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
                if req.throttles:
                    self._throttled += 1
                added += 1
            self._publish()
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

    def uncertain(self) -> list[tuple[str, str | None]]:
        """Tasks of a failed ACCEPT Mesos has said nothing of yet (task id, agent id)."""
        return list(self._uncertain.items())

    def pending_ids(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def cancel(self, task_id: str) -> bool:
        with self._lock:
            found = self._pop(task_id) is not None
            self._publish()
        return found

    def forget(self, task_id: str) -> None:
        """A task being killed is not launched if it was still waiting."""
        with self._lock:
            if self._pop(task_id) is not None:
                self._publish()

    def _pop(self, task_id: str) -> LaunchRequest | None:
        """Take a launch out of the pending set (lock held)."""
        found = self._pending.pop(task_id, None)
        if found is None:
            return None
        if found[0].throttles:
            self._throttled -= 1
            self._held.discard(task_id)
        return found[0]

    def _publish(self) -> None:
        """The gauges of pending launches (lock held): held ones wait for room, not offers."""
        metrics.PENDING_LAUNCHES.set(len(self._pending) - len(self._held))
        metrics.THROTTLED_LAUNCHES.set(len(self._held))

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
        self._uncertain.pop(task_id, None)
        metrics.STATUS_UPDATES.labels(update.state).inc()
        if update.terminal or update.state == "TASK_UNKNOWN":
            self._placements.remove(task_id)
            # TASK_UNREACHABLE keeps them: the task may come back.
            self._host_ports.pop(task_id, None)
            self._uncount(task_id)
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
        source = self.throttle_source
        judged = self._judge(source) if source is not None and self._throttled else None
        with self._lock:
            if judged is None:
                requests = [needs for _, needs in self._pending.values()]
                self._held.clear()
            else:
                # Throttled launches added since the gate looked wait for the next round.
                admitted = set(judged.admitted)
                requests = [needs for req, needs in self._pending.values()
                            if not req.throttles or req.task_id in admitted]
                self._held = {t for t in judged.held_ids if t in self._pending}
            constrained = {needs.group for needs in requests if needs.constraints}
            result = match(offers, requests, self._placements.of_groups(constrained),
                           default_role=default_role(self.config, self.extra_roles))
            templates = {a.task_id: self._pending[a.task_id][0] for a in result.assignments}
            for task_id in templates:
                self._pop(task_id)
            self._publish()
        if judged is not None and source is not None:
            self._report(source, judged)
        elif self._reported and source is not None:
            self._report(source, gate([], self._limits(source), {}))
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
            for info in infos:
                task_id = info["task_id"]["value"]
                self._count(task_id, templates[task_id].throttles)
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
                asked = [(i["task_id"]["value"], i["agent_id"]["value"]) for i in infos]
                self._uncertain.update(asked)
                self._reconcile(asked)
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

    # --- throttles (the worker) -------------------------------------------------------------
    def _waiting(self) -> list[Waiting]:
        """The pending launches naming a throttle, in arrival order (lock held)."""
        return [Waiting(req.task_id, needs.group, req.throttles)
                for req, needs in self._pending.values() if req.throttles]

    def _limits(self, source: ThrottleSource) -> Mapping[str, int]:
        try:
            return source.limits()
        except Exception:
            log.exception("cannot read the throttles' limits")
            return {}

    def _judge(self, source: ThrottleSource) -> Gate:
        """The gate over the pending launches now. The waiting set is read before the usage:
        a launch added in between has its intent in the usage but is not taken off it, which
        errs on the safe side (the other order would take off intents not counted yet)."""
        with self._lock:
            waiting = self._waiting()
        try:
            limits = source.limits()
            live = live_counts(source.usage(), waiting, self._counted_per)
        except Exception:
            # Fail closed: held launches wait, nothing is dropped; the next round asks again.
            log.exception("cannot read the throttles' usage; holding throttled launches")
            held: dict[str, list[str]] = {}
            for w in waiting:
                for t in dict.fromkeys(w.throttles):
                    held.setdefault(t, []).append(w.task_id)
            return Gate(admitted=(), held={t: tuple(ids) for t, ids in held.items()})
        finally:
            self._last_room_check = self._clock()
        running = Counter(group for tid in list(self._counted)
                          if (group := self._group_of(tid)) is not None)
        return gate(waiting, limits, live, running)

    def _report(self, source: ThrottleSource, judged: Gate) -> None:
        self._reported = any(judged.held.values())
        try:
            source.held(judged.held)
        except Exception:
            log.exception("cannot report held launches")

    def _count(self, task_id: str, throttles: tuple[str, ...]) -> None:
        if throttles and task_id not in self._counted:
            names = tuple(dict.fromkeys(throttles))
            self._counted[task_id] = names
            self._counted_per.update(names)

    def _uncount(self, task_id: str) -> None:
        names = self._counted.pop(task_id, None)
        if names is None:
            return
        self._counted_per.subtract(names)
        if self._held:
            # Room may be on its way (once the controller records the end): look often.
            self._room_soon_until = self._clock() + ROOM_WINDOW_SECONDS

    @property
    def next_room_check(self) -> float:
        """When `throttle_room` wants to be asked next (the adapter's clock); inf: never."""
        if not (self._held or self._reported):
            return float("inf")
        soon = self._clock() < self._room_soon_until
        return self._last_room_check + (ROOM_POLL_SECONDS if soon else self.config.tick_seconds)

    def throttle_room(self) -> bool:
        """Whether a launch the last round held back would be admitted now (then REVIVE: the
        offers declined meanwhile are filtered). Also tells the source when nothing is held
        any more without a round (the held launches were cancelled). Cheap when not due."""
        if self._clock() < self.next_room_check:
            return False
        self._last_room_check = self._clock()
        source = self.throttle_source
        with self._lock:
            held = set(self._held)
        if source is None:
            self._reported = False
            return bool(held)  # the gate is gone: everything may go
        if not held:
            if self._reported:
                self._report(source, gate([], self._limits(source), {}))
            return False
        judged = self._judge(source)
        if not held.isdisjoint(judged.admitted):
            self._room_soon_until = float("-inf")
            return True
        return False

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
