"""The task template shared by Job, Queue and Service: what to run on Mesos and where.

Shapes follow Marathon's (container, portMappings, volumes, constraints), which the projects
Docket descends from used, so existing definitions translate field by field.

An `env` value is a string, or Kubernetes' `{valueFrom: {secretKeyRef: {name, key}}}`: a
reference to a key of a Secret in the object's namespace (controller/api/secret.py). The
template holds only the reference; the value is read by the controller on the task's way to
Mesos (controller/secrets.py), so no spec, status or record ever holds it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    SerializationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from controller.api.base import (
    MAX_SECONDS,
    DNSLabel,
    DocketModel,
    FieldError,
    Flag,
    Int,
    Number,
)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ContainerType(StrEnum):
    MESOS = "MESOS"
    DOCKER = "DOCKER"


class Network(StrEnum):
    BRIDGE = "BRIDGE"
    HOST = "HOST"
    NONE = "NONE"


class PortMapping(DocketModel):
    container_port: Annotated[Int, Field(ge=0, le=65535)] = Field(
        description="Port inside the container. Required."
    )
    host_port: Annotated[Int, Field(ge=0, le=65535)] = Field(
        default=0, description="Host port; 0 picks one from the offer. Default: 0."
    )
    protocol: Literal["tcp", "udp"] = Field(default="tcp", description="Default: tcp.")


_PORT_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


class PortDefinition(DocketModel):
    """A named port an instance needs: a free host port taken from the offer, given to the
    task as PORT<n> and PORT_<NAME> (upper case, '-' as '_')."""

    name: str = Field(description="Lowercase letters, digits and '-'. Required.")
    protocol: Literal["tcp", "udp"] = Field(default="tcp", description="Default: tcp.")
    container_port: Annotated[Int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="DOCKER BRIDGE: the port inside the container that the host "
        "port is mapped to. Default: none (the task listens on the host port).")

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _PORT_NAME.match(name):
            raise ValueError("must be lowercase letters, digits and '-', starting with a "
                             "letter (at most 63)")
        return name

    @property
    def env_name(self) -> str:
        return "PORT_" + self.name.upper().replace("-", "_")


class Parameter(DocketModel):
    key: str = Field(min_length=1, description="Docker CLI parameter name. Required.")
    value: str = Field(description="Docker CLI parameter value. Required.")


class Volume(DocketModel):
    host_path: str = Field(min_length=1, description="Path on the agent. Required.")
    container_path: str = Field(
        min_length=1, description="Path inside the container. Required."
    )
    mode: Literal["RO", "RW"] = Field(default="RW", description="Default: RW.")


class Container(DocketModel):
    """How to containerize the task. Omitted: a plain command on the agent (Mesos
    containerizer, no image)."""

    type: ContainerType = Field(default=ContainerType.MESOS, description="Default: MESOS.")
    image: str | None = Field(
        default=None, min_length=1, description="Image; required for DOCKER. Default: none."
    )
    network: Network | None = Field(
        default=None, description="DOCKER only: BRIDGE, HOST or NONE. Default: HOST."
    )
    port_mappings: list[PortMapping] = Field(
        default_factory=list, description="DOCKER BRIDGE port mappings. Default: none."
    )
    force_pull_image: Flag = Field(default=False, description="Default: false.")
    parameters: list[Parameter] = Field(
        default_factory=list, description="Extra docker run parameters. Default: none."
    )
    volumes: list[Volume] = Field(default_factory=list, description="Default: none.")

    @model_validator(mode="after")
    def _check_docker(self) -> Container:
        if self.type is ContainerType.DOCKER:
            if not self.image:
                raise FieldError("image", "required field is missing when type is DOCKER")
        else:
            if self.network is not None:
                raise FieldError("network", "applies only to type DOCKER")
            if self.port_mappings:
                raise FieldError("portMappings", "apply only to type DOCKER")
            if self.parameters:
                raise FieldError("parameters", "apply only to type DOCKER")
        return self


class Uri(DocketModel):
    """A file the Mesos fetcher downloads into the sandbox before the task starts."""

    value: str = Field(min_length=1, description="URI to fetch. Required.")
    executable: Flag = Field(default=False, description="Mark it executable. Default: false.")
    extract: Flag = Field(default=True, description="Extract archives. Default: true.")
    cache: Flag = Field(default=False, description="Use the fetcher cache. Default: false.")
    output_file: str | None = Field(
        default=None, min_length=1,
        description="File name in the sandbox. Default: the URI's last segment.",
    )


class Resources(DocketModel):
    cpus: Number = Field(default=0.1, gt=0, description="CPU shares. Default: 0.1.")
    mem: Number = Field(default=32, gt=0, description="Memory in MiB. Default: 32.")
    disk: Number = Field(default=0, ge=0, description="Disk in MiB. Default: 0.")
    gpus: Int = Field(default=0, ge=0, description="GPUs. Default: 0.")
    ports: Int = Field(
        default=0, ge=0, le=1000, description="Number of host ports to reserve. Default: 0."
    )


class ConstraintOperator(StrEnum):
    UNIQUE = "UNIQUE"
    CLUSTER = "CLUSTER"
    GROUP_BY = "GROUP_BY"
    LIKE = "LIKE"
    UNLIKE = "UNLIKE"
    MAX_PER = "MAX_PER"
    IS = "IS"


_NEEDS_VALUE = {
    ConstraintOperator.CLUSTER,
    ConstraintOperator.LIKE,
    ConstraintOperator.UNLIKE,
    ConstraintOperator.MAX_PER,
    ConstraintOperator.IS,
}


class Constraint(DocketModel):
    """A Marathon placement constraint, written as `[field, operator]` or
    `[field, operator, value]`; field is `hostname` or an agent attribute name."""

    field: str = Field(min_length=1)
    operator: ConstraintOperator
    value: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        if not isinstance(data, list | tuple | dict | Constraint):
            raise ValueError("must be [field, operator] or [field, operator, value]")
        if isinstance(data, list | tuple):
            if not 2 <= len(data) <= 3:
                raise ValueError("must be [field, operator] or [field, operator, value]")
            if not all(isinstance(x, str | int) and not isinstance(x, bool) for x in data):
                raise ValueError("each element must be a string")
            parts = [str(x) for x in data]
            return {
                "field": parts[0],
                "operator": parts[1],
                "value": parts[2] if len(parts) == 3 else None,
            }
        return data

    @model_validator(mode="after")
    def _check_value(self) -> Constraint:
        op = self.operator
        if op in _NEEDS_VALUE and self.value is None:
            raise ValueError(f"operator {op.value} needs a value")
        if op is ConstraintOperator.UNIQUE and self.value is not None:
            raise ValueError("operator UNIQUE takes no value")
        if op in (ConstraintOperator.LIKE, ConstraintOperator.UNLIKE):
            try:
                re.compile(self.value or "")
            except re.error as exc:
                raise ValueError(f"value is not a valid regular expression: {exc}") from None
        counted = op in (ConstraintOperator.MAX_PER, ConstraintOperator.GROUP_BY)
        if counted and self.value and (not self.value.isdigit() or int(self.value) < 1):
            raise ValueError(f"value of {op.value} must be a positive integer")
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # Users write the list form; the schema describes that, not the parsed model.
        return {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 2,
            "maxItems": 3,
            "description": "[field, operator] or [field, operator, value]; operator one of "
            + ", ".join(op.value for op in ConstraintOperator),
        }

    @model_serializer
    def _to_list(self) -> list[str]:
        out = [self.field, self.operator.value]
        if self.value is not None:
            out.append(self.value)
        return out


SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
"""A key of a Secret (Kubernetes' rule: an env name or a file name, at most 253 characters,
not '.' or '..')."""


def check_secret_key(key: str) -> str:
    if len(key) > 253:
        raise ValueError("must be no more than 253 characters")
    if not SECRET_KEY.match(key) or key in (".", ".."):
        raise ValueError("must be letters, digits, '-', '_' or '.' (and not '.' or '..')")
    return key


class SecretKeySelector(DocketModel):
    """One key of a Secret in the object's own namespace."""

    name: DNSLabel = Field(description="The Secret's name, a DNS-1123 label. Required.")
    key: str = Field(description="The key in the Secret. Required.")

    @field_validator("key")
    @classmethod
    def _check_key(cls, key: str) -> str:
        return check_secret_key(key)


class EnvVarSource(DocketModel):
    secret_key_ref: SecretKeySelector = Field(
        description="The value of a key of a Secret. Required.")


class EnvValueFrom(DocketModel):
    """An environment variable whose value is read when the task is launched."""

    value_from: EnvVarSource = Field(description="Where the value comes from. Required.")

    @property
    def secret(self) -> SecretKeySelector:
        return self.value_from.secret_key_ref


_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", list: "a list",
               type(None): "null"}


def _env_value(value: Any) -> str | EnvValueFrom:
    # One validator instead of a union: a union reports every variant's errors (the string's
    # "must be a string" beside the object's), under locations the user never wrote.
    if isinstance(value, str):
        return value
    if isinstance(value, dict | EnvValueFrom):
        return EnvValueFrom.model_validate(value)
    if isinstance(value, bool | int | float):  # a YAML scalar meant as a string
        raise PydanticCustomError(
            "env_value", "must be a string, not {kind} (quote it: YAML reads yes, no, on, off "
            "and numbers as non-strings)", {"kind": _JSON_TYPES[type(value)]})
    raise PydanticCustomError(
        "env_value", "must be a string or {valueFrom: {secretKeyRef: {name, key}}}, "
        "not {kind}", {"kind": _JSON_TYPES.get(type(value), type(value).__name__)})


def _env_dump(value: str | EnvValueFrom, info: SerializationInfo) -> Any:
    if isinstance(value, str):
        return value
    return value.model_dump(mode=info.mode, by_alias=bool(info.by_alias),
                            exclude_none=info.exclude_none)


EnvValue = Annotated[
    str | EnvValueFrom,
    PlainValidator(_env_value),
    PlainSerializer(_env_dump),
    # A structural schema (crds/) cannot say "a string or an object" with types: the models
    # are the verdict, the schema says what is allowed in words.
    WithJsonSchema({
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "A string, or {valueFrom: {secretKeyRef: {name, key}}}: the value "
                       "of a key of a Secret in the object's namespace.",
    }),
]


class TaskTemplate(DocketModel):
    """What each task runs: a command or argv, its container, resources and placement."""

    container: Container | None = Field(
        default=None, description="Container settings. Default: plain command, no image."
    )
    command: str | None = Field(
        default=None, min_length=1, description="Shell command (sh -c). Exactly one of "
        "command or args, unless the container image has its own. Default: none."
    )
    args: list[str] | None = Field(
        default=None, min_length=1, description="Argument vector, run without a shell. "
        "Exactly one of command or args, unless the container image has its own. Default: none."
    )
    env: dict[str, EnvValue] = Field(
        default_factory=dict, description="Environment: NAME: value, or NAME: {valueFrom: "
        "{secretKeyRef: {name, key}}} for a Secret's value. Default: none.")
    uris: list[Uri] = Field(default_factory=list, description="Files to fetch. Default: none.")
    resources: Resources = Field(
        default_factory=Resources, description="Resources of one task. Default: see fields."
    )
    constraints: list[Constraint] = Field(
        default_factory=list, description="Marathon-style placement constraints. Default: none."
    )
    kill_grace_period_seconds: Number = Field(
        default=10, ge=0, le=MAX_SECONDS,
        description="Seconds between SIGTERM and SIGKILL. Default: 10."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Mesos task labels. Default: none."
    )
    ports: list[PortDefinition] = Field(
        default_factory=list,
        description="Named host ports, taken from the offer: PORT0.. in this order (before "
        "portMappings' and resources.ports'), and PORT_<NAME>. Default: none.")

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str | EnvValueFrom]) -> dict[str, str | EnvValueFrom]:
        for name in env:
            if not _ENV_NAME.match(name):
                raise FieldError(name, "must be a variable name: letters, digits and '_', "
                                 "not starting with a digit")
        return env

    @property
    def plain_env(self) -> dict[str, str]:
        """The variables given as strings."""
        return {k: v for k, v in self.env.items() if isinstance(v, str)}

    @property
    def secret_env(self) -> dict[str, SecretKeySelector]:
        """The variables whose values come from Secrets: name -> the Secret's key."""
        return {k: v.secret for k, v in self.env.items() if isinstance(v, EnvValueFrom)}

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[PortDefinition]) -> list[PortDefinition]:
        seen: set[str] = set()
        for port in ports:
            if port.name in seen:
                raise ValueError(f"port name {port.name!r} is used twice")
            seen.add(port.name)
        return ports

    @model_validator(mode="after")
    def _one_of_command_args(self) -> TaskTemplate:
        has_image = self.container is not None and self.container.image is not None
        if self.command is not None and self.args is not None:
            raise ValueError("give either command or args, not both")
        if self.command is None and self.args is None and not has_image:
            raise ValueError("one of command or args is required (or a container image)")
        return self
