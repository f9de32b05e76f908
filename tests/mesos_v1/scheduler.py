"""Pydantic models of `mesos.v1.scheduler.Event` and `Call` (Mesos 1.11), as JSON.

Each type names the one sub-message it needs (SUBSCRIBED needs `subscribed`, ...), as the
master's own call validation (`src/master/validation.cpp`) demands of calls; an event is held
to the same rule so a test catches a master that sends a typed event without its body.
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import model_validator

from tests.mesos_v1.models import (
    AgentID,
    Bytes,
    Double,
    ExecutorID,
    Filters,
    FrameworkID,
    FrameworkInfo,
    Int,
    InverseOffer,
    KillPolicy,
    MasterInfo,
    Message,
    Offer,
    OfferID,
    Operation,
    OperationID,
    OperationStatus,
    Request,
    ResourceProviderID,
    Str,
    TaskID,
    TaskStatus,
    _require_sub_message,
)

EventType = Literal[
    "UNKNOWN", "SUBSCRIBED", "OFFERS", "INVERSE_OFFERS", "RESCIND", "RESCIND_INVERSE_OFFER",
    "UPDATE", "UPDATE_OPERATION_STATUS", "MESSAGE", "FAILURE", "ERROR", "HEARTBEAT",
]


class Event(Message):
    class Subscribed(Message):
        framework_id: FrameworkID
        heartbeat_interval_seconds: Double | None = None
        master_info: MasterInfo | None = None

    class Offers(Message):
        offers: list[Offer] = []

    class InverseOffers(Message):
        inverse_offers: list[InverseOffer] = []

    class Rescind(Message):
        offer_id: OfferID

    class RescindInverseOffer(Message):
        inverse_offer_id: OfferID

    class Update(Message):
        status: TaskStatus

    class UpdateOperationStatus(Message):
        status: OperationStatus

    class ExecutorMessage(Message):
        agent_id: AgentID
        executor_id: ExecutorID
        data: Bytes

    class Failure(Message):
        agent_id: AgentID | None = None
        executor_id: ExecutorID | None = None
        status: Int | None = None

    class Error(Message):
        message: Str

    type: EventType
    subscribed: Subscribed | None = None
    offers: Offers | None = None
    inverse_offers: InverseOffers | None = None
    rescind: Rescind | None = None
    rescind_inverse_offer: RescindInverseOffer | None = None
    update: Update | None = None
    update_operation_status: UpdateOperationStatus | None = None
    message: ExecutorMessage | None = None
    failure: Failure | None = None
    error: Error | None = None

    @model_validator(mode="after")
    def _has_its_sub_message(self) -> Event:
        _require_sub_message(self, "event", exempt=("UNKNOWN", "HEARTBEAT"))
        return self


CallType = Literal[
    "UNKNOWN", "SUBSCRIBE", "TEARDOWN", "ACCEPT", "DECLINE", "ACCEPT_INVERSE_OFFERS",
    "DECLINE_INVERSE_OFFERS", "REVIVE", "KILL", "SHUTDOWN", "ACKNOWLEDGE",
    "ACKNOWLEDGE_OPERATION_STATUS", "RECONCILE", "RECONCILE_OPERATIONS", "MESSAGE", "REQUEST",
    "SUPPRESS", "UPDATE_FRAMEWORK",
]


class Call(Message):
    class Subscribe(Message):
        framework_info: FrameworkInfo
        suppressed_roles: list[Str] = []
        offer_constraints: dict[str, object] | None = None  # attribute constraints: not modelled

    class Accept(Message):
        offer_ids: list[OfferID] = []
        operations: list[Operation] = []
        filters: Filters | None = None

    class Decline(Message):
        offer_ids: list[OfferID] = []
        filters: Filters | None = None

    class AcceptInverseOffers(Message):
        inverse_offer_ids: list[OfferID] = []
        filters: Filters | None = None

    class DeclineInverseOffers(Message):
        inverse_offer_ids: list[OfferID] = []
        filters: Filters | None = None

    class Revive(Message):
        roles: list[Str] = []

    class Kill(Message):
        task_id: TaskID
        agent_id: AgentID | None = None
        kill_policy: KillPolicy | None = None

    class Shutdown(Message):
        executor_id: ExecutorID
        agent_id: AgentID

    class Acknowledge(Message):
        agent_id: AgentID
        task_id: TaskID
        uuid: Bytes

    class AcknowledgeOperationStatus(Message):
        agent_id: AgentID | None = None
        resource_provider_id: ResourceProviderID | None = None
        uuid: Bytes
        operation_id: OperationID

    class Reconcile(Message):
        class Task(Message):
            task_id: TaskID
            agent_id: AgentID | None = None

        tasks: list[Task] = []

    class ReconcileOperations(Message):
        class Operation(Message):
            operation_id: OperationID
            agent_id: AgentID | None = None
            resource_provider_id: ResourceProviderID | None = None

        operations: list[Operation] = []

    class FrameworkMessage(Message):
        agent_id: AgentID
        executor_id: ExecutorID
        data: Bytes

    class Requests(Message):
        requests: list[Request] = []

    class Suppress(Message):
        roles: list[Str] = []

    class UpdateFramework(Message):
        framework_info: FrameworkInfo
        suppressed_roles: list[Str] = []
        offer_constraints: dict[str, object] | None = None  # not modelled

    framework_id: FrameworkID | None = None
    type: CallType
    subscribe: Subscribe | None = None
    accept: Accept | None = None
    decline: Decline | None = None
    accept_inverse_offers: AcceptInverseOffers | None = None
    decline_inverse_offers: DeclineInverseOffers | None = None
    revive: Revive | None = None
    kill: Kill | None = None
    shutdown: Shutdown | None = None
    acknowledge: Acknowledge | None = None
    acknowledge_operation_status: AcknowledgeOperationStatus | None = None
    reconcile: Reconcile | None = None
    reconcile_operations: ReconcileOperations | None = None
    message: FrameworkMessage | None = None
    request: Requests | None = None
    suppress: Suppress | None = None
    update_framework: UpdateFramework | None = None

    @model_validator(mode="after")
    def _has_its_sub_message(self) -> Call:
        # As `validation::scheduler::call::validate` (src/master/validation.cpp) checks.
        _require_sub_message(self, "call", exempt=("UNKNOWN", "TEARDOWN", "REVIVE", "SUPPRESS"))
        body = self.subscribe or self.update_framework
        if body is not None and self.framework_id != body.framework_info.id:
            raise ValueError(f"'framework_id' differs from '{self.type.lower()}"
                             ".framework_info.id'")
        if self.type != "SUBSCRIBE" and self.framework_id is None:
            raise ValueError(f"call of type {self.type} needs 'framework_id'")
        if self.acknowledge is not None and len(base64.b64decode(self.acknowledge.uuid)) != 16:
            raise ValueError("acknowledge.uuid is not the 16 bytes of a UUID")
        return self
