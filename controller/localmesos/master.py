"""The embedded Mesos master: frameworks subscribing and failing over, agents joining, and
every scheduler call routed to the part of the master that owns it.

It follows Mesos 1.11's master (src/master/master.cpp, validation.cpp): the same validation
order and messages, the same task states and reasons, master-generated updates without a
uuid, agent updates with a uuid that are resent until acknowledged, in order per task, and
the same reconciliation answers. The HTTP layer (`http.py`) only parses and routes; the agents
(`agents.py`) only run tasks and report their states here.

`Master` is assembled from one part per concern (see base.py for why they are mixins):

    validation.py  every check a call passes, and Mesos' messages
    models.py      the records: Framework, Agent, Offer, Task, MasterConfig
    stream.py      a framework's event stream and the lock whose release writes it
    base.py        shared state, sending events, the records of task state
    allocator.py   offer rounds, filters, REVIVE/SUPPRESS, DECLINE, ACCEPT
    tasks.py       launch, status updates, acknowledgements and resends, KILL
    reconcile.py   RECONCILE
    faults.py      agents lost, partitioned and healed, failover, tampered updates
    master.py      lifecycle, SUBSCRIBE, disconnection and failover timeout, call dispatch

All state is guarded by one lock; nothing here blocks on I/O while holding it. Events for a
framework are buffered in its stream and written to the SUBSCRIBE connection by the thread
that made them once it lets go of the lock (`MasterLock`, `Stream.flush`).
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import structlog

from controller.localmesos.allocator import OfferAllocator
from controller.localmesos.faults import FaultInjection
from controller.localmesos.models import (
    MASTER_CAPABILITIES,
    MESOS_VERSION,
    PARTITION_AWARE_STATES,
    TERMINAL_STATES,
    V1_MASTER_CAPABILITIES,
    Agent,
    AgentRuntime,
    Framework,
    MasterConfig,
    Offer,
    Task,
    framework_roles,
    new_uuid,
    new_uuid_bytes,
)
from controller.localmesos.reconcile import Reconciliation
from controller.localmesos.resources import Resources
from controller.localmesos.stream import MasterLock, Stream, recordio
from controller.localmesos.tasks import DEFAULT_KILL_GRACE_SECONDS, TaskLifecycle
from controller.localmesos.validation import (
    ApiError,
    framework_for_call,
    subscribe_refusal,
    validate_framework,
    validate_id,
    validate_role,
)

# What master.py exported before it was split, still importable from here.
__all__ = [
    "DEFAULT_KILL_GRACE_SECONDS", "MASTER_CAPABILITIES", "MESOS_VERSION",
    "PARTITION_AWARE_STATES", "TERMINAL_STATES", "V1_MASTER_CAPABILITIES", "Agent",
    "AgentRuntime", "ApiError", "Framework", "Master", "MasterConfig", "MasterLock", "Offer",
    "Stream", "Task", "framework_roles", "new_uuid", "new_uuid_bytes", "recordio",
    "validate_framework", "validate_id", "validate_role",
]

log = structlog.get_logger("docket.localmesos.master")


class Master(OfferAllocator, TaskLifecycle, Reconciliation, FaultInjection):
    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._allocation_timer = self.timers.every(self.config.allocation_interval,
                                                   self.allocate)
        # Retries are checked a few times per minimum interval: resends come at most a
        # quarter of it late.
        self._retry_timer = self.timers.every(
            min(1.0, max(0.02, self.config.status_update_retry_min / 4)), self._resend_due)

    def stop(self) -> None:
        with self.lock:
            for fw in self.frameworks.values():
                if fw.stream:
                    fw.stream.close()
            agents = list(self.agents.values())
        for agent in agents:
            agent.runtime.shutdown()
        self.timers.stop()

    @property
    def ip_uint32(self) -> int:
        """MasterInfo.ip: the IPv4 address packed in network order, read as a uint32."""
        packed = socket.inet_aton(self.config.host)
        return int(struct.unpack("<I", packed)[0])

    def master_info(self, *, v1: bool = False) -> dict[str, Any]:
        """The master's MasterInfo; `v1` as SUBSCRIBED carries it. Mesos 1.11 makes that
        by `evolve()` (src/internal/evolve.cpp: serialize the v0 message, parse it as v1).
        Its v1 proto is proto2, whose parser keeps an enum number it does not know as an
        unknown field, so QUOTA_V2 (v0 only) leaves a Capability without `type`, and the
        JSON writer (stout's protobuf.hpp, set fields only) makes that `{}`."""
        capabilities = [{"type": c} if not v1 or c in V1_MASTER_CAPABILITIES else {}
                        for c in MASTER_CAPABILITIES]
        return {
            "id": self.master_id,
            "ip": self.ip_uint32,
            "port": self.config.port,
            "pid": f"master@{self.config.host}:{self.config.port}",
            "hostname": self.config.hostname,
            "version": MESOS_VERSION,
            "address": {"hostname": self.config.hostname, "ip": self.config.host,
                        "port": self.config.port},
            "capabilities": capabilities,
        }

    # --- agents ----------------------------------------------------------------------------
    def add_agent(self, *, hostname: str, port: int, resources: Resources,
                  attributes: list[dict[str, Any]], runtime: AgentRuntime,
                  work_dir: str | None = None) -> Agent:
        with self.lock:
            agent_id = f"{self.master_id}-S{self._agent_seq}"
            self._agent_seq += 1
            agent = Agent(agent_id, hostname, port, resources, attributes, runtime,
                          work_dir=work_dir)
            self.agents[agent_id] = agent
            return agent

    # --- subscription ----------------------------------------------------------------------
    def subscribe(self, call: dict[str, Any]) -> Stream:
        """A validated SUBSCRIBE: the stream to answer with (already holding SUBSCRIBED, or
        ERROR for a removed framework)."""
        info = dict(call["subscribe"]["framework_info"])
        with self.lock:
            fid = (info.get("id") or {}).get("value")
            stream = Stream(framework_id=fid or "", lock=self.lock)
            # Refused subscriptions get a 200 stream holding one ERROR, as in Mesos.
            refusal = subscribe_refusal(info, call["subscribe"].get("suppressed_roles") or [],
                                        self.removed_frameworks)
            if refusal is not None:
                self._send_on(stream, {"type": "ERROR", "error": {"message": refusal}})
                stream.close()
                return stream
            if fid and fid in self.frameworks:
                fw = self.frameworks[fid]
                old = fw.stream
                if old is not None and not old.closed:
                    self._send_on(old, {"type": "ERROR",
                                        "error": {"message": "Framework failed over"}})
                    old.close()
                if fw.removal_timer:
                    fw.removal_timer.cancel()
                    fw.removal_timer = None
                info["id"] = {"value": fid}
                fw.info = info
                # Offers outstanding to the previous instance are rescinded.
                for offer_id in list(fw.offers):
                    self._remove_offer(offer_id, rescind=False)
            else:
                if not fid:
                    fid = f"{self.master_id}-{self._framework_seq:04d}"
                    self._framework_seq += 1
                info["id"] = {"value": fid}
                fw = Framework(fid, info)
                self.frameworks[fid] = fw
                self._adopt_orphans(fw)
            stream.framework_id = fid
            fw.stream = stream
            fw.connected = True
            fw.active = True
            fw.unregistered_time = None
            fw.suppressed = set(call["subscribe"].get("suppressed_roles") or [])
            self._send(fw, {
                "type": "SUBSCRIBED",
                "subscribed": {
                    "framework_id": {"value": fid},
                    "heartbeat_interval_seconds": self.config.heartbeat_interval,
                    "master_info": self.master_info(v1=True),
                },
            })
            if fw.heartbeat_timer:
                fw.heartbeat_timer.cancel()
            fw.heartbeat_timer = self.timers.every(self.config.heartbeat_interval,
                                                   lambda: self._heartbeat(fw))
            # Updates that were waiting for the framework to come back are sent now.
            for task in fw.tasks.values():
                if task.pending:
                    self._forward_head(task)
        self.timers.call_soon(self.allocate)
        return stream

    def _heartbeat(self, fw: Framework) -> None:
        with self.lock:
            self._send(fw, {"type": "HEARTBEAT"})

    def _adopt_orphans(self, fw: Framework) -> None:
        """After a master restart that forgot frameworks, agents still run their tasks; the
        re-subscribing framework gets them back, as when agents reregister with a new
        master."""
        for agent in self.agents.values():
            for (fid, _tid), task in agent.tasks.items():
                if fid == fw.framework_id:
                    fw.tasks[task.task_id] = task

    def stream_closed(self, stream: Stream) -> None:
        """The SUBSCRIBE connection broke: the framework is disconnected (calls get 403) and
        removed after its failover_timeout unless it subscribes again."""
        with self.lock:
            stream.close()
            fw = self.frameworks.get(stream.framework_id)
            if fw is None or fw.stream is not stream:
                return
            self._disconnect(fw)

    def _disconnect(self, fw: Framework) -> None:
        fw.connected = False
        fw.active = False
        fw.unregistered_time = time.time()
        if fw.heartbeat_timer:
            fw.heartbeat_timer.cancel()
            fw.heartbeat_timer = None
        for offer_id in list(fw.offers):
            self._remove_offer(offer_id, rescind=False)
        timeout = fw.failover_timeout
        if self.config.failover_timeout_cap is not None:
            timeout = min(timeout, self.config.failover_timeout_cap)
        fid = fw.framework_id
        fw.removal_timer = self.timers.call_later(timeout, lambda: self._failover_expired(fid))

    def _failover_expired(self, framework_id: str) -> None:
        with self.lock:
            fw = self.frameworks.get(framework_id)
            if fw is not None and not fw.connected:
                log.info("framework failover timeout expired", framework_id=framework_id)
                self.remove_framework(fw)

    def remove_framework(self, fw: Framework) -> None:
        with self.lock:
            for task in list(fw.tasks.values()) + list(fw.unreachable_tasks.values()):
                agent = self.agents.get(task.agent_id)
                if task.state not in TERMINAL_STATES and agent is not None \
                        and agent.state == "active":
                    agent.runtime.kill(task, 0.0, killing_state=False)
                self._set_state(task, self._master_status(
                    fw, task, "TASK_KILLED", f"Framework {fw.framework_id} removed",
                    "REASON_FRAMEWORK_REMOVED"))
                self._release(task)
                self._complete(fw, task)
            fw.unreachable_tasks.clear()
            for offer_id in list(fw.offers):
                self._remove_offer(offer_id, rescind=False)
            if fw.heartbeat_timer:
                fw.heartbeat_timer.cancel()
            if fw.removal_timer:
                fw.removal_timer.cancel()
            fw.connected = fw.active = False
            if fw.stream:
                fw.stream.close()
            self.frameworks.pop(fw.framework_id, None)
            self.removed_frameworks[fw.framework_id] = fw

    # --- UPDATE_FRAMEWORK (master.cpp Master::updateFramework, 1.11) -----------------------
    def update_framework(self, call: dict[str, Any], stream_id: str | None) -> None:
        """A new FrameworkInfo for a subscribed framework, all or nothing: roles added are
        offered, offers of roles removed are rescinded, and the roles suppressed are exactly
        the call's `suppressed_roles`. ApiError(400) as Mesos words it."""
        update = call.get("update_framework")
        if not isinstance(update, dict) or not isinstance(update.get("framework_info"), dict):
            raise ApiError(400, "Failed to validate scheduler::Call: Not initialized: "
                                "update_framework.framework_info")
        info = dict(update["framework_info"])
        missing = [f"update_framework.framework_info.{f}" for f in ("user", "name")
                   if not isinstance(info.get(f), str)]
        if missing:
            raise ApiError(400, "Failed to validate scheduler::Call: Not initialized: "
                                + ", ".join(missing))
        fid = str(call["framework_id"]["value"])
        if (info.get("id") or {}).get("value") != fid:
            raise ApiError(400, "Failed to validate scheduler::Call: 'framework_id' differs "
                                "from 'update_framework.framework_info.id'")
        suppressed = [str(r) for r in update.get("suppressed_roles") or []]
        with self.lock:
            fw = framework_for_call(self.frameworks, fid, stream_id)
            error = validate_framework(info)
            if error is None:
                unknown = [r for r in suppressed if r not in framework_roles(info)]
                if unknown:
                    error = (f"Suppressed role '{unknown[0]}' is not contained in the list "
                             "of roles")
            if error is not None:
                raise ApiError(400, f"Supplied FrameworkInfo is not valid: {error}")
            old = fw.info
            if info.get("principal") != old.get("principal"):
                error = "Changing framework's principal is not allowed."
            elif info.get("user") != old.get("user"):
                error = (f"Updating 'FrameworkInfo.user' is unsupported; attempted to update "
                         f"from '{old.get('user')}' to '{info.get('user')}'")
            elif bool(info.get("checkpoint", False)) != bool(old.get("checkpoint", False)):
                error = ("Updating 'FrameworkInfo.checkpoint' is unsupported; attempted to "
                         f"update from '{str(bool(old.get('checkpoint'))).lower()}' to "
                         f"'{str(bool(info.get('checkpoint'))).lower()}'")
            if error is not None:
                raise ApiError(400, f"FrameworkInfo update is not valid: {error}")
            fw.info = info
            fw.suppressed = set(suppressed)
            roles = set(fw.roles)
            for offer_id in list(fw.offers):
                offer = self.offers.get(offer_id)
                if offer is not None and offer.role not in roles:
                    self._remove_offer(offer_id, rescind=True)
            for key in [k for k in fw.filters if k[0] not in roles]:
                del fw.filters[key]
            log.info("framework updated", framework_id=fid, roles=sorted(roles),
                     suppressed=sorted(fw.suppressed))
        self.timers.call_soon(self.allocate)

    # --- calls (validate_call has checked them; the caller is checked here) ---------------
    def handle_call(self, call: dict[str, Any], stream_id: str | None) -> None:
        with self.lock:
            fw = framework_for_call(self.frameworks, call["framework_id"]["value"], stream_id)
            kind = call["type"]
            if kind == "TEARDOWN":
                self.remove_framework(fw)
            elif kind == "ACCEPT":
                self.accept(fw, call["accept"])
            elif kind == "DECLINE":
                self.decline(fw, call["decline"])
            elif kind == "REVIVE":
                self.revive(fw, (call.get("revive") or {}).get("roles") or [])
            elif kind == "SUPPRESS":
                self.suppress(fw, (call.get("suppress") or {}).get("roles") or [])
            elif kind == "KILL":
                self.kill(fw, call["kill"])
            elif kind == "ACKNOWLEDGE":
                self.acknowledge(fw, call["acknowledge"])
            elif kind == "RECONCILE":
                self.reconcile(fw, call["reconcile"].get("tasks") or [])
            elif kind == "SHUTDOWN":
                pass  # custom executors are not supported; nothing to shut down
            elif kind == "UNKNOWN":
                raise ApiError(501, "")  # after the caller's checks, as in Mesos
            # MESSAGE, REQUEST, ACCEPT/DECLINE_INVERSE_OFFERS: accepted, nothing to do.
