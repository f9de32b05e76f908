"""The object API: pydantic models of every kind users write into etcd, their status and
execution records, and the codec that decodes and validates stored documents.

Import from here; the submodules are an implementation detail.
"""

from controller.api.base import (
    API_VERSION,
    GROUP,
    VERSION,
    DocketModel,
    ObjectMeta,
    OwnerReference,
)
from controller.api.codec import (
    KINDS,
    InvalidObject,
    Kind,
    ObjectInvalid,
    Problem,
    decode_object,
    decode_status,
    encode_model,
    encode_object,
    encode_status,
    kind_by_name,
    kind_by_plural,
    kind_for_model,
    parse_document,
)
from controller.api.kinds import (
    AnyObject,
    Backoff,
    CompletionMode,
    ConcurrencyPolicy,
    CronJob,
    CronJobSpec,
    Job,
    JobSpec,
    Queue,
    QueueSpec,
    Service,
    ServiceSpec,
)
from controller.api.status import (
    LAUNCHING,
    Condition,
    CronJobStatus,
    ExecutionRecord,
    JobPhase,
    JobStatus,
    QueueStatus,
    ServiceStatus,
    StatusBase,
)
from controller.api.template import (
    Constraint,
    ConstraintOperator,
    Container,
    ContainerType,
    Resources,
    TaskTemplate,
    Uri,
)

__all__ = [
    "API_VERSION", "GROUP", "KINDS", "LAUNCHING", "VERSION",
    "AnyObject", "Backoff", "CompletionMode", "ConcurrencyPolicy", "Condition", "Constraint",
    "ConstraintOperator", "Container", "ContainerType", "CronJob", "CronJobSpec",
    "CronJobStatus", "DocketModel", "ExecutionRecord", "InvalidObject", "Job", "JobPhase",
    "JobSpec", "JobStatus", "Kind", "ObjectInvalid", "ObjectMeta", "OwnerReference", "Problem",
    "Queue",
    "QueueSpec", "QueueStatus", "Resources", "Service", "ServiceSpec", "ServiceStatus",
    "StatusBase", "TaskTemplate", "Uri", "decode_object", "decode_status", "encode_model",
    "encode_object", "encode_status", "kind_by_name", "kind_by_plural", "kind_for_model",
    "parse_document",
]
