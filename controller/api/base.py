"""Shared pydantic configuration, value types and object metadata for every Docket kind.

JSON is camelCase, like Kubernetes manifests; Python attributes are snake_case. Unknown fields
are errors at every level, because a typo silently ignored is a job silently misconfigured.
For the same reason numbers and booleans are strict: `"3"` is not 3, `true` is not 1, `"yes"`
is not true, and NaN or infinity is no number of seconds. A `null` means "not given" (as in
Kubernetes): the field takes its default, or is reported missing when it is required.
Counts and durations have upper bounds, so a slip of the finger (an extra few zeros) is an
error instead of a controller trying to plan ten billion tasks.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "docket.dev/v1"
GROUP = "docket.dev"
VERSION = "v1"

MAX_COUNT = 1_000_000
"""Upper bound of every count (completions, instances, retry limits, batch sizes...)."""
MAX_SECONDS = 315_360_000
"""Upper bound of every duration in seconds: ten years."""

Int = Annotated[int, Strict()]
"""An integer as written: not a string, a bool or a float."""
Number = Annotated[float, Strict()]
"""A finite number as written (an integer is fine): not a string or a bool."""
Flag = Annotated[bool, Strict()]
"""true or false as written: not "yes", 1 or "true"."""

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class FieldError(ValueError):
    """A check made on a whole model that is about one of its fields: reported at that
    field's path (`spec.template.container.image`), not at the model's."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DocketModel(BaseModel):
    """Base of every model: camelCase JSON, snake_case Python, no unknown fields, no NaN."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        allow_inf_nan=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _null_means_unset(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(v is None for v in data.values()):
            return {k: v for k, v in data.items() if v is not None}
        return data


def check_dns1123_label(value: str) -> str:
    if len(value) > 63:
        raise ValueError("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


DNSLabel = Annotated[str, AfterValidator(check_dns1123_label)]


class OwnerReference(DocketModel):
    """The object that created this one and deletes it with itself (a CronJob's Jobs), as
    Kubernetes' ownerReferences: the owner's kind, name (same namespace) and uid (the
    create_revision of its spec key, so a new object of the same name owns nothing of the
    old one's)."""

    kind: Literal["Job", "CronJob", "Queue", "Service"] = Field(
        description="The owner's kind. Required.")
    name: DNSLabel = Field(description="The owner's name, in the same namespace. Required.")
    uid: int = Field(ge=1, description="The owner's uid. Required.")


class ObjectMeta(DocketModel):
    """Identity and free-form metadata of an object. The etcd key is the identity: where the
    name or namespace is given it must match the key."""

    name: DNSLabel | None = Field(
        default=None,
        description="Object name, a DNS-1123 label. Defaults to the last segment of the key; "
        "required in manifest files.",
    )
    namespace: DNSLabel = Field(
        default="default", description="Namespace, a DNS-1123 label. Default: \"default\"."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels. Default: none.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations. Default: none."
    )
    owner_references: list[OwnerReference] = Field(
        default_factory=list, max_length=1,
        description="Set by Docket on objects it creates for another (a CronJob's Jobs): "
        "deleting the owner deletes them. Default: none.")
