"""Pydantic models of the Mesos 1.11 v1 scheduler messages, as JSON, for conformance checks.

Written from `include/mesos/v1/mesos.proto` and `include/mesos/v1/scheduler/scheduler.proto`
of Mesos 1.11.0, in the JSON form the master speaks: field names are the proto names, proto2
`required` fields are required, unknown fields are errors, enums are their names, `bytes` are
base64 strings and unset fields are absent (never null). Each enum holds exactly the names of
its v1 enum in 1.11.0: a name only the v0 protos have (MasterInfo's QUOTA_V2) is refused, as a
client parsing with the v1 protos refuses it; a 1.11 master never sends one. Messages the
scheduler API never carries (statistics, CSI plugin configuration) are left out; a field of
such a type is a plain JSON object here and says so.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)


def _is_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"bytes field must be base64: {e}") from None
    return value


# Mesos renders proto numbers as JSON numbers (its own jsonify, not proto3's mapping), so
# integers are ints; a double may be written without a fraction.
Int = StrictInt
UInt = Annotated[StrictInt, Field(ge=0)]
Double = StrictFloat  # strict floats take ints too, not bools or strings
Str = StrictStr
Bool = StrictBool
Bytes = Annotated[StrictStr, AfterValidator(_is_base64)]


class Message(BaseModel):
    """A proto2 message in JSON: no unknown fields, no nulls (unset fields are omitted)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(str(k) for k, v in data.items() if v is None)
            if nulls:
                raise ValueError(f"null for {nulls}: Mesos omits unset fields")
        return data


# ---------------------------------------------------------------- identifiers and basics


class FrameworkID(Message):
    value: Str


class OfferID(Message):
    value: Str


class AgentID(Message):
    value: Str


class TaskID(Message):
    value: Str


class ExecutorID(Message):
    value: Str


class ContainerID(Message):
    value: Str
    parent: ContainerID | None = None


class ResourceProviderID(Message):
    value: Str


class OperationID(Message):
    value: Str


class UUID(Message):
    value: Bytes


class TimeInfo(Message):
    nanoseconds: Int


class DurationInfo(Message):
    nanoseconds: Int


class Parameter(Message):
    key: Str
    value: Str


class Parameters(Message):
    parameter: list[Parameter] = []


class Address(Message):
    hostname: Str | None = None
    ip: Str | None = None
    port: Int


class URL(Message):
    scheme: Str
    address: Address
    path: Str | None = None
    query: list[Parameter] = []
    fragment: Str | None = None


class Unavailability(Message):
    start: TimeInfo
    duration: DurationInfo | None = None


class Label(Message):
    key: Str
    value: Str | None = None


class Labels(Message):
    labels: list[Label] = []


class DomainInfo(Message):
    class FaultDomain(Message):
        class RegionInfo(Message):
            name: Str

        class ZoneInfo(Message):
            name: Str

        region: RegionInfo
        zone: ZoneInfo

    fault_domain: FaultDomain | None = None


class MasterInfo(Message):
    class Capability(Message):
        # v1 of 1.11.0 knows no QUOTA_V2 (only the v0 proto does): a 1.11 master's
        # SUBSCRIBED carries that capability as `{}` (see localmesos' master_info).
        type: Literal["UNKNOWN", "AGENT_UPDATE", "AGENT_DRAINING"] | None = None

    id: Str
    ip: UInt  # the IPv4 address as a number, in network byte order
    port: UInt
    pid: Str | None = None
    hostname: Str | None = None
    version: Str | None = None
    address: Address | None = None
    domain: DomainInfo | None = None
    capabilities: list[Capability] = []


# ---------------------------------------------------------------- values and resources

ValueType = Literal["SCALAR", "RANGES", "SET", "TEXT"]


class Scalar(Message):
    value: Double


class Range(Message):
    begin: UInt
    end: UInt


class Ranges(Message):
    range: list[Range] = []


class ValueSet(Message):
    item: list[Str] = []


class Text(Message):
    value: Str


class Value(Message):
    type: ValueType
    scalar: Scalar | None = None
    ranges: Ranges | None = None
    set: ValueSet | None = None
    text: Text | None = None


def _value_matches_type(m: Any, allowed: tuple[str, ...]) -> None:
    kind = m.type.lower()
    if kind not in allowed:
        raise ValueError(f"type {m.type} is not allowed here")
    if getattr(m, kind) is None:
        raise ValueError(f"type {m.type} needs the field {kind!r}")


class Attribute(Message):
    name: Str
    type: ValueType
    scalar: Scalar | None = None
    ranges: Ranges | None = None
    set: ValueSet | None = None
    text: Text | None = None

    @model_validator(mode="after")
    def _typed(self) -> Attribute:
        _value_matches_type(self, ("scalar", "ranges", "set", "text"))
        return self


class MountPropagation(Message):
    mode: Literal["UNKNOWN", "HOST_TO_CONTAINER", "BIDIRECTIONAL"] | None = None


class Secret(Message):
    class Reference(Message):
        name: Str
        key: Str | None = None

    class SecretValue(Message):
        data: Bytes

    type: Literal["UNKNOWN", "REFERENCE", "VALUE"] | None = None
    reference: Reference | None = None
    value: SecretValue | None = None


class Credential(Message):
    principal: Str
    secret: Str | None = None


class Image(Message):
    class Appc(Message):
        name: Str
        id: Str | None = None
        labels: Labels | None = None

    class Docker(Message):
        name: Str
        credential: Credential | None = None
        config: Secret | None = None

    type: Literal["APPC", "DOCKER"]
    appc: Appc | None = None
    docker: Docker | None = None
    cached: Bool | None = None


class Volume(Message):
    class Source(Message):
        class DockerVolume(Message):
            driver: Str | None = None
            name: Str
            driver_options: Parameters | None = None

        class HostPath(Message):
            path: Str
            mount_propagation: MountPropagation | None = None

        class SandboxPath(Message):
            type: Literal["UNKNOWN", "SELF", "PARENT"] | None = None
            path: Str

        type: Literal[
            "UNKNOWN", "DOCKER_VOLUME", "HOST_PATH", "SANDBOX_PATH", "SECRET", "CSI_VOLUME"
        ] | None = None
        docker_volume: DockerVolume | None = None
        host_path: HostPath | None = None
        sandbox_path: SandboxPath | None = None
        secret: Secret | None = None
        csi_volume: dict[str, Any] | None = None  # CSI static provisioning: not modelled

    mode: Literal["RW", "RO"]
    container_path: Str
    host_path: Str | None = None
    image: Image | None = None
    source: Source | None = None


class Resource(Message):
    class AllocationInfo(Message):
        role: Str | None = None

    class ReservationInfo(Message):
        type: Literal["UNKNOWN", "STATIC", "DYNAMIC"] | None = None
        role: Str | None = None
        principal: Str | None = None
        labels: Labels | None = None

    class DiskInfo(Message):
        class Persistence(Message):
            id: Str
            principal: Str | None = None

        class Source(Message):
            class Path(Message):
                root: Str | None = None

            class Mount(Message):
                root: Str | None = None

            type: Literal["UNKNOWN", "PATH", "MOUNT", "BLOCK", "RAW"]
            path: Path | None = None
            mount: Mount | None = None
            vendor: Str | None = None
            id: Str | None = None
            metadata: Labels | None = None
            profile: Str | None = None

        persistence: Persistence | None = None
        volume: Volume | None = None
        source: Source | None = None

    class RevocableInfo(Message):
        pass

    class SharedInfo(Message):
        pass

    provider_id: ResourceProviderID | None = None
    name: Str
    type: ValueType
    scalar: Scalar | None = None
    ranges: Ranges | None = None
    set: ValueSet | None = None
    role: Str | None = None  # deprecated since 1.4, still set by the 1.11 master
    allocation_info: AllocationInfo | None = None
    reservation: ReservationInfo | None = None
    reservations: list[ReservationInfo] = []
    disk: DiskInfo | None = None
    revocable: RevocableInfo | None = None
    shared: SharedInfo | None = None

    @model_validator(mode="after")
    def _typed(self) -> Resource:
        # A resource cannot be TEXT (Mesos' resource validation refuses it).
        _value_matches_type(self, ("scalar", "ranges", "set"))
        return self


# ---------------------------------------------------------------- commands and containers


class Environment(Message):
    class Variable(Message):
        name: Str
        type: Literal["UNKNOWN", "VALUE", "SECRET"] | None = None
        value: Str | None = None
        secret: Secret | None = None

    variables: list[Variable] = []


class CommandInfo(Message):
    class URI(Message):
        value: Str
        executable: Bool | None = None
        extract: Bool | None = None
        cache: Bool | None = None
        output_file: Str | None = None

    uris: list[URI] = []
    environment: Environment | None = None
    shell: Bool | None = None
    value: Str | None = None
    arguments: list[Str] = []
    user: Str | None = None


class NetworkInfo(Message):
    class IPAddress(Message):
        protocol: Literal["IPv4", "IPv6"] | None = None
        ip_address: Str | None = None

    class PortMapping(Message):
        host_port: UInt
        container_port: UInt
        protocol: Str | None = None

    ip_addresses: list[IPAddress] = []
    name: Str | None = None
    groups: list[Str] = []
    labels: Labels | None = None
    port_mappings: list[PortMapping] = []


_CAPABILITIES = Literal[
    "UNKNOWN", "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
    "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT",
    "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
]


class CapabilityInfo(Message):
    capabilities: list[_CAPABILITIES] = []


class LinuxInfo(Message):
    class SeccompInfo(Message):
        profile_name: Str | None = None
        unconfined: Bool | None = None

    capability_info: CapabilityInfo | None = None
    bounding_capabilities: CapabilityInfo | None = None
    effective_capabilities: CapabilityInfo | None = None
    share_pid_namespace: Bool | None = None
    seccomp: SeccompInfo | None = None
    ipc_mode: Literal["UNKNOWN", "PRIVATE", "SHARE_PARENT"] | None = None
    shm_size: UInt | None = None
    share_cgroups: Bool | None = None


class RLimitInfo(Message):
    class RLimit(Message):
        type: Literal[
            "UNKNOWN", "RLMT_AS", "RLMT_CORE", "RLMT_CPU", "RLMT_DATA", "RLMT_FSIZE",
            "RLMT_LOCKS", "RLMT_MEMLOCK", "RLMT_MSGQUEUE", "RLMT_NICE", "RLMT_NOFILE",
            "RLMT_NPROC", "RLMT_RSS", "RLMT_RTPRIO", "RLMT_RTTIME", "RLMT_SIGPENDING",
            "RLMT_STACK",
        ] | None = None
        hard: UInt | None = None
        soft: UInt | None = None

    rlimits: list[RLimit] = []


class TTYInfo(Message):
    class WindowSize(Message):
        rows: UInt
        columns: UInt

    window_size: WindowSize | None = None


class ContainerInfo(Message):
    class DockerInfo(Message):
        class PortMapping(Message):
            host_port: UInt
            container_port: UInt
            protocol: Str | None = None

        image: Str
        network: Literal["HOST", "BRIDGE", "NONE", "USER"] | None = None
        port_mappings: list[PortMapping] = []
        privileged: Bool | None = None
        parameters: list[Parameter] = []
        force_pull_image: Bool | None = None
        volume_driver: Str | None = None

    class MesosInfo(Message):
        image: Image | None = None

    type: Literal["DOCKER", "MESOS"]
    volumes: list[Volume] = []
    hostname: Str | None = None
    docker: DockerInfo | None = None
    mesos: MesosInfo | None = None
    network_infos: list[NetworkInfo] = []
    linux_info: LinuxInfo | None = None
    rlimit_info: RLimitInfo | None = None
    tty_info: TTYInfo | None = None


class CgroupInfo(Message):
    class NetCls(Message):
        classid: UInt | None = None

    net_cls: NetCls | None = None


class ContainerStatus(Message):
    container_id: ContainerID | None = None
    network_infos: list[NetworkInfo] = []
    cgroup_info: CgroupInfo | None = None
    executor_pid: UInt | None = None


class KillPolicy(Message):
    grace_period: DurationInfo | None = None


CheckType = Literal["UNKNOWN", "COMMAND", "HTTP", "TCP"]


class CheckInfo(Message):
    class Command(Message):
        command: CommandInfo

    class Http(Message):
        port: UInt
        path: Str | None = None

    class Tcp(Message):
        port: UInt

    type: CheckType | None = None
    command: Command | None = None
    http: Http | None = None
    tcp: Tcp | None = None
    delay_seconds: Double | None = None
    interval_seconds: Double | None = None
    timeout_seconds: Double | None = None


class HealthCheck(Message):
    class HTTPCheckInfo(Message):
        protocol: Literal["IPv4", "IPv6"] | None = None
        scheme: Str | None = None
        port: UInt
        path: Str | None = None
        statuses: list[UInt] = []

    class TCPCheckInfo(Message):
        protocol: Literal["IPv4", "IPv6"] | None = None
        port: UInt

    delay_seconds: Double | None = None
    interval_seconds: Double | None = None
    timeout_seconds: Double | None = None
    consecutive_failures: UInt | None = None
    grace_period_seconds: Double | None = None
    type: CheckType | None = None
    command: CommandInfo | None = None
    http: HTTPCheckInfo | None = None
    tcp: TCPCheckInfo | None = None


class Port(Message):
    number: UInt
    name: Str | None = None
    protocol: Str | None = None
    visibility: Literal["FRAMEWORK", "CLUSTER", "EXTERNAL"] | None = None
    labels: Labels | None = None


class Ports(Message):
    ports: list[Port] = []


class DiscoveryInfo(Message):
    visibility: Literal["FRAMEWORK", "CLUSTER", "EXTERNAL"]
    name: Str | None = None
    environment: Str | None = None
    location: Str | None = None
    version: Str | None = None
    ports: Ports | None = None
    labels: Labels | None = None


class ExecutorInfo(Message):
    type: Literal["UNKNOWN", "DEFAULT", "CUSTOM"] | None = None
    executor_id: ExecutorID
    framework_id: FrameworkID | None = None
    command: CommandInfo | None = None
    container: ContainerInfo | None = None
    resources: list[Resource] = []
    name: Str | None = None
    source: Str | None = None
    data: Bytes | None = None
    discovery: DiscoveryInfo | None = None
    shutdown_grace_period: DurationInfo | None = None
    labels: Labels | None = None


class TaskInfo(Message):
    name: Str
    task_id: TaskID
    agent_id: AgentID
    resources: list[Resource] = []
    executor: ExecutorInfo | None = None
    command: CommandInfo | None = None
    container: ContainerInfo | None = None
    health_check: HealthCheck | None = None
    check: CheckInfo | None = None
    kill_policy: KillPolicy | None = None
    data: Bytes | None = None
    labels: Labels | None = None
    discovery: DiscoveryInfo | None = None
    max_completion_time: DurationInfo | None = None
    limits: dict[Str, Scalar] = {}


class TaskGroupInfo(Message):
    tasks: list[TaskInfo] = []


# ---------------------------------------------------------------- task status

TaskState = Literal[
    "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED",
    "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
    "TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN",
]

TaskStatusSource = Literal["SOURCE_MASTER", "SOURCE_AGENT", "SOURCE_EXECUTOR"]

TaskStatusReason = Literal[
    "REASON_COMMAND_EXECUTOR_FAILED", "REASON_CONTAINER_LAUNCH_FAILED",
    "REASON_CONTAINER_LIMITATION", "REASON_CONTAINER_LIMITATION_DISK",
    "REASON_CONTAINER_LIMITATION_MEMORY", "REASON_CONTAINER_PREEMPTED",
    "REASON_CONTAINER_UPDATE_FAILED", "REASON_MAX_COMPLETION_TIME_REACHED",
    "REASON_EXECUTOR_REGISTRATION_TIMEOUT", "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
    "REASON_EXECUTOR_TERMINATED", "REASON_EXECUTOR_UNREGISTERED", "REASON_FRAMEWORK_REMOVED",
    "REASON_GC_ERROR", "REASON_INVALID_FRAMEWORKID", "REASON_INVALID_OFFERS",
    "REASON_IO_SWITCHBOARD_EXITED", "REASON_MASTER_DISCONNECTED", "REASON_RECONCILIATION",
    "REASON_RESOURCES_UNKNOWN", "REASON_AGENT_DISCONNECTED", "REASON_AGENT_DRAINING",
    "REASON_AGENT_REMOVED", "REASON_AGENT_REMOVED_BY_OPERATOR", "REASON_AGENT_REREGISTERED",
    "REASON_AGENT_RESTARTED", "REASON_AGENT_UNKNOWN", "REASON_TASK_KILLED_DURING_LAUNCH",
    "REASON_TASK_CHECK_STATUS_UPDATED", "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
    "REASON_TASK_GROUP_INVALID", "REASON_TASK_GROUP_UNAUTHORIZED", "REASON_TASK_INVALID",
    "REASON_TASK_UNAUTHORIZED", "REASON_TASK_UNKNOWN",
]


class CheckStatusInfo(Message):
    class Command(Message):
        exit_code: Int | None = None

    class Http(Message):
        status_code: UInt | None = None

    class Tcp(Message):
        succeeded: Bool | None = None

    type: CheckType | None = None
    command: Command | None = None
    http: Http | None = None
    tcp: Tcp | None = None


class TaskResourceLimitation(Message):
    resources: list[Resource] = []


class TaskStatus(Message):
    task_id: TaskID
    state: TaskState
    message: Str | None = None
    source: TaskStatusSource | None = None
    reason: TaskStatusReason | None = None
    data: Bytes | None = None
    agent_id: AgentID | None = None
    executor_id: ExecutorID | None = None
    timestamp: Double | None = None
    uuid: Bytes | None = None
    healthy: Bool | None = None
    check_status: CheckStatusInfo | None = None
    labels: Labels | None = None
    container_status: ContainerStatus | None = None
    unreachable_time: TimeInfo | None = None
    limitation: TaskResourceLimitation | None = None


# ---------------------------------------------------------------- offers and operations

OperationState = Literal[
    "OPERATION_UNSUPPORTED", "OPERATION_PENDING", "OPERATION_FINISHED", "OPERATION_FAILED",
    "OPERATION_ERROR", "OPERATION_DROPPED", "OPERATION_UNREACHABLE",
    "OPERATION_GONE_BY_OPERATOR", "OPERATION_RECOVERING", "OPERATION_UNKNOWN",
]


class OperationStatus(Message):
    operation_id: OperationID | None = None
    state: OperationState
    message: Str | None = None
    converted_resources: list[Resource] = []
    uuid: UUID | None = None
    agent_id: AgentID | None = None
    resource_provider_id: ResourceProviderID | None = None


class Operation(Message):
    """`Offer.Operation`: what ACCEPT asks the master to do with the offered resources."""

    class Launch(Message):
        task_infos: list[TaskInfo] = []

    class LaunchGroup(Message):
        executor: ExecutorInfo
        task_group: TaskGroupInfo

    class Reserve(Message):
        source: list[Resource] = []
        resources: list[Resource] = []

    class Unreserve(Message):
        resources: list[Resource] = []

    class Create(Message):
        volumes: list[Resource] = []

    class Destroy(Message):
        volumes: list[Resource] = []

    class GrowVolume(Message):
        volume: Resource
        addition: Resource

    class ShrinkVolume(Message):
        volume: Resource
        subtract: Scalar

    class CreateDisk(Message):
        source: Resource
        target_type: Literal["UNKNOWN", "PATH", "MOUNT", "BLOCK", "RAW"]
        target_profile: Str | None = None

    class DestroyDisk(Message):
        source: Resource

    type: Literal[
        "UNKNOWN", "LAUNCH", "LAUNCH_GROUP", "RESERVE", "UNRESERVE", "CREATE", "DESTROY",
        "GROW_VOLUME", "SHRINK_VOLUME", "CREATE_DISK", "DESTROY_DISK",
    ] | None = None
    id: OperationID | None = None
    launch: Launch | None = None
    launch_group: LaunchGroup | None = None
    reserve: Reserve | None = None
    unreserve: Unreserve | None = None
    create: Create | None = None
    destroy: Destroy | None = None
    grow_volume: GrowVolume | None = None
    shrink_volume: ShrinkVolume | None = None
    create_disk: CreateDisk | None = None
    destroy_disk: DestroyDisk | None = None

    @model_validator(mode="after")
    def _has_its_sub_message(self) -> Operation:
        _require_sub_message(self, "operation", exempt=("UNKNOWN",))
        return self


class Offer(Message):
    id: OfferID
    framework_id: FrameworkID
    agent_id: AgentID
    hostname: Str
    url: URL | None = None
    domain: DomainInfo | None = None
    resources: list[Resource] = []
    attributes: list[Attribute] = []
    executor_ids: list[ExecutorID] = []
    unavailability: Unavailability | None = None
    allocation_info: Resource.AllocationInfo | None = None


class InverseOffer(Message):
    id: OfferID
    url: URL | None = None
    framework_id: FrameworkID
    agent_id: AgentID | None = None
    unavailability: Unavailability
    resources: list[Resource] = []


class Filters(Message):
    refuse_seconds: Double | None = None


class OfferFilters(Message):
    class ResourceQuantities(Message):
        quantities: dict[Str, Scalar] = {}

    class MinAllocatableResources(Message):
        quantities: list[OfferFilters.ResourceQuantities] = []

    min_allocatable_resources: MinAllocatableResources | None = None


class FrameworkInfo(Message):
    class Capability(Message):
        type: Literal[
            "UNKNOWN", "REVOCABLE_RESOURCES", "TASK_KILLING_STATE", "GPU_RESOURCES",
            "SHARED_RESOURCES", "PARTITION_AWARE", "MULTI_ROLE", "RESERVATION_REFINEMENT",
            "REGION_AWARE",
        ] | None = None

    user: Str
    name: Str
    id: FrameworkID | None = None
    failover_timeout: Double | None = None
    checkpoint: Bool | None = None
    role: Str | None = None
    roles: list[Str] = []
    hostname: Str | None = None
    principal: Str | None = None
    webui_url: Str | None = None
    capabilities: list[Capability] = []
    labels: Labels | None = None
    offer_filters: dict[Str, OfferFilters] = {}


class Request(Message):
    agent_id: AgentID | None = None
    resources: list[Resource] = []


# ---------------------------------------------------------------- the union helper


def _require_sub_message(m: BaseModel, what: str, exempt: tuple[str, ...]) -> None:
    """Mesos' "union trick": `type` names the one sub-message (its lower-case name) that
    must be set."""
    kind = getattr(m, "type", None)
    if kind is None:
        raise ValueError(f"{what} has no 'type'")
    if kind in exempt:
        return
    field = kind.lower()
    if field in type(m).model_fields and getattr(m, field) is None:
        raise ValueError(f"{what} of type {kind} needs the field {field!r}")
