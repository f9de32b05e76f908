"""Shared pydantic configuration and object metadata for every Docket kind.

JSON is camelCase, like Kubernetes manifests; Python attributes are snake_case. Unknown fields
are errors at every level, because a typo silently ignored is a job silently misconfigured.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_VERSION = "docket.dev/v1"
GROUP = "docket.dev"
VERSION = "v1"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class DocketModel(BaseModel):
    """Base of every model: camelCase JSON, snake_case Python, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )


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
