"""The Service kind's spec beyond the task template: health checks, crash-loop backoff, the
unreachable strategy and the rollout strategy — with Marathon's names and defaults, so an
operator moving from Marathon recognises every field (docs/architecture.md §9)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from controller.api.base import MAX_COUNT, MAX_SECONDS, DocketModel, FieldError, Int, Number
from controller.api.template import TaskTemplate


class HealthCheckType(StrEnum):
    HTTP = "HTTP"
    TCP = "TCP"
    COMMAND = "COMMAND"


class HealthCheck(DocketModel):
    """Run by the Mesos agent next to each instance (TaskInfo.health_check), as Mesos' own
    executors do: a probe every `intervalSeconds` after `delaySeconds`; failures during
    `gracePeriodSeconds` are ignored until the first success; `maxConsecutiveFailures`
    failures in a row kill the instance."""

    type: HealthCheckType = Field(description="HTTP, TCP or COMMAND. Required.")
    port_name: str | None = Field(
        default=None, description="HTTP/TCP: the name of a port in template.ports. Default: "
        "portIndex.")
    port_index: Int | None = Field(
        default=None, ge=0, le=1000,
        description="HTTP/TCP: index of the port (PORT<n>). Default: 0 when no portName.")
    path: str = Field(default="/", description="HTTP: the path probed. Default: /.")
    command: str | None = Field(
        default=None, min_length=1, description="COMMAND: a shell command; exit 0 is healthy. "
        "Required for COMMAND; Default: none.")
    grace_period_seconds: Number = Field(
        default=300, ge=0, le=MAX_SECONDS,
        description="Failures are ignored this long after the start, until the first success. "
        "Default: 300.")
    interval_seconds: Number = Field(
        default=60, gt=0, le=MAX_SECONDS, description="Between probes. Default: 60.")
    timeout_seconds: Number = Field(
        default=20, gt=0, le=MAX_SECONDS, description="A probe longer than this fails. "
        "Default: 20.")
    max_consecutive_failures: Int = Field(
        default=3, ge=0, le=MAX_COUNT,
        description="Failures in a row that kill the instance (0: never killed). Default: 3.")
    delay_seconds: Number = Field(
        default=15, ge=0, le=MAX_SECONDS, description="Before the first probe. Default: 15.")

    @model_validator(mode="after")
    def _check_type(self) -> HealthCheck:
        if self.type is HealthCheckType.COMMAND:
            if not self.command:
                raise FieldError("command", "required field is missing when type is COMMAND")
            if self.port_name is not None or self.port_index is not None:
                raise FieldError("portName", "applies only to HTTP and TCP")
        else:
            if self.command is not None:
                raise FieldError("command", "applies only to COMMAND")
            if self.port_name is not None and self.port_index is not None:
                raise FieldError("portIndex", "give either portName or portIndex, not both")
        if not self.path.startswith("/"):
            raise FieldError("path", "must start with '/'")
        return self


class KillSelection(StrEnum):
    YOUNGEST_FIRST = "YoungestFirst"
    OLDEST_FIRST = "OldestFirst"


class UnreachableStrategy(DocketModel):
    inactive_after_seconds: Number = Field(
        default=0, ge=0, le=MAX_SECONDS,
        description="After TASK_UNREACHABLE, wait this long before launching a replacement. "
        "Default: 0.")
    expunge_after_seconds: Number = Field(
        default=0, ge=0, le=MAX_SECONDS,
        description="An unreachable instance is forgotten this long after it became "
        "unreachable: killed if it ever returns. One that returns earlier is kept unless its "
        "replacement was started. Default: 0.")


class UpgradeStrategy(DocketModel):
    minimum_health_capacity: Number = Field(
        default=1, ge=0, le=1,
        description="Share of instances kept healthy during a rollout: at least "
        "ceil(minimumHealthCapacity x instances). Default: 1."
    )
    maximum_over_capacity: Number = Field(
        default=1, ge=0, le=1,
        description="Share of extra instances allowed during a rollout: at most "
        "floor(instances x (1 + maximumOverCapacity)) in all. Default: 1."
    )


class ServiceSpec(DocketModel):
    instances: Int = Field(
        default=1, ge=0, le=MAX_COUNT, description="Instances to keep running. Default: 1."
    )
    template: TaskTemplate = Field(description="The long-running task. Required.")
    health_check: HealthCheck | None = Field(
        default=None, description="How the agent checks an instance. Default: none (an "
        "instance is healthy once RUNNING).")
    upgrade_strategy: UpgradeStrategy = Field(
        default_factory=UpgradeStrategy,
        description="Rollout of a new template. Default: minimumHealthCapacity 1, "
        "maximumOverCapacity 1."
    )
    kill_selection: KillSelection = Field(
        default=KillSelection.YOUNGEST_FIRST,
        description="Which instances go first when there are too many: YoungestFirst or "
        "OldestFirst. Default: YoungestFirst.")
    backoff_seconds: Number = Field(
        default=1, ge=0, le=MAX_SECONDS,
        description="Delay before relaunching after a failure. Default: 1.")
    backoff_factor: Number = Field(
        default=1.15, ge=1, le=100,
        description="Growth of that delay per consecutive failure. Default: 1.15.")
    max_launch_delay_seconds: Number = Field(
        default=300, ge=0, le=MAX_SECONDS, description="Longest delay. Default: 300.")
    unreachable_strategy: UnreachableStrategy = Field(
        default_factory=UnreachableStrategy,
        description="What to do when an instance's agent is unreachable. Default: replace at "
        "once; kill the original if it returns after its replacement started.")
    progress_deadline_seconds: Number = Field(
        default=600, gt=0, le=MAX_SECONDS,
        description="A rollout that makes no progress this long gets Progressing=False "
        "(ProgressDeadlineExceeded). Default: 600.")

    @model_validator(mode="after")
    def _check_health_port(self) -> ServiceSpec:
        hc = self.health_check
        if hc is None or hc.type is HealthCheckType.COMMAND:
            return self
        names = [p.name for p in self.template.ports]
        if hc.port_name is not None and hc.port_name not in names:
            raise FieldError("healthCheck.portName",
                             f"{hc.port_name!r} is not a port of template.ports"
                             + (f" ({', '.join(names)})" if names else " (it has none)"))
        count = len(names) + self.template.resources.ports + len(
            self.template.container.port_mappings if self.template.container else ())
        index = hc.port_index if hc.port_index is not None else 0
        if hc.port_name is None and index >= count:
            raise FieldError("healthCheck.portIndex",
                             f"the task has {count} port(s); PORT{index} does not exist")
        return self
