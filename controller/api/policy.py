"""The admission policy: one operator-owned object at `<prefix>/policy` saying, per namespace,
what its objects may run and under which Mesos role (docs/architecture.md §10).

Shape (JSON or YAML, decoded like every object: unknown fields and wrong types are errors
named by their path):

    apiVersion: docket.dev/v1
    kind: Policy
    spec:
      default: <Rules>              # every namespace without an entry of its own
      namespaces:
        team-a: <Rules>             # merged over `default`, field by field

A namespace's rules are **merged field by field** over the default: a field the namespace
sets replaces the default's whole field (lists are not concatenated, limits are not
combined); a field it leaves out is the default's. A field unset everywhere is no
restriction, and an empty list allows nothing (`allowedHostPaths: []`: no hostPath volume).

Beside `default` and `namespaces`, two cluster-wide lists (issue 16) select tasks by what owns
them, with a `Match` (kinds, namespaces, a name pattern, labels; every field given must hold):

      throttles:                    # at most maxRunning matching tasks live at once, counted
        - name: mail                #   over every object of every kind that matches
          match: {kinds: [Job], name: "mail-.*", labels: {team: growth}}
          maxRunning: 10
      pools:                        # placement constraints added to every matching task
        - name: email
          match: {name: "mail-.*"}
          constraints: [["pool", "IS", "email"]]

A match's `name` is a Python regular expression matched against the whole object name
(fullmatch); its `labels` are compared with the object's metadata.labels merged with its task
template's labels (the template's win on a shared key). Names of throttles and of pools are
DNS-1123 labels, unique in their list: they are metric label values and condition text.

The judging itself is controller/policy.py's; this module only says what a valid policy is,
so `docket policy validate`, the controller and crds/ share one verdict.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from controller.api.base import (
    DNSLabel,
    DocketModel,
    FieldError,
    Flag,
    Int,
    Number,
    ObjectMeta,
)
from controller.api.status import Condition
from controller.api.template import Constraint, Network

POLICY_KEY = "policy"
"""The policy's key below the prefix: `<prefix>/policy`."""

_MAX_RULES = 1000
"""Most patterns in one list: a policy is read on every plan of every object."""


def check_role(role: str) -> str:
    """Mesos' roles::validate (1.11, src/common/roles.cpp), so a policy never names a role the
    master would refuse the framework's subscription for."""
    if role == "*":
        return role
    if not role or role.startswith("/") or role.endswith("/") or "//" in role:
        raise ValueError(f"{role!r} is not a Mesos role: it must not be empty, start or end "
                         "with '/', or contain '//'")
    for component in role.split("/"):
        if component in (".", "..", "*") or component.startswith("-") or any(
                c.isspace() or c == "\b" for c in component):
            raise ValueError(f"{role!r} is not a Mesos role: component {component!r} is "
                             "'.', '..', '*', starts with '-' or holds whitespace")
    return role


def check_host_prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        raise ValueError(f"{prefix!r} must be an absolute path (start with '/')")
    if ".." in prefix.split("/"):
        raise ValueError(f"{prefix!r} must not contain '..'")
    return prefix


def check_image_pattern(pattern: str) -> str:
    if not pattern or any(c.isspace() for c in pattern):
        raise ValueError(f"{pattern!r} must be a non-empty pattern without whitespace")
    return pattern


class ResourceLimits(DocketModel):
    """Upper bounds of resources; a field left out is not bounded."""

    cpus: Number | None = Field(default=None, ge=0, description="CPUs. Default: unbounded.")
    mem: Number | None = Field(default=None, ge=0,
                               description="Memory in MiB. Default: unbounded.")
    disk: Number | None = Field(default=None, ge=0,
                                description="Disk in MiB. Default: unbounded.")
    gpus: Int | None = Field(default=None, ge=0, description="GPUs. Default: unbounded.")


class Rules(DocketModel):
    """What the objects of a namespace may run. Every field left out is no restriction (or,
    in a namespace's entry, the default's)."""

    allowed_images: list[str] | None = Field(
        default=None, max_length=_MAX_RULES,
        description="Container images allowed, as glob patterns: '*' any characters but "
        "'/', '**' any characters, '?' one character but '/' (e.g. "
        "registry.example.com/team-a/*). Tasks without an image are judged by requireImage. "
        "Default: any image.")
    require_image: Flag | None = Field(
        default=None,
        description="true: a task must name a container image (a bare command would run on "
        "the agent's host, outside allowedImages). Default: false.")
    allowed_host_paths: list[str] | None = Field(
        default=None, max_length=_MAX_RULES,
        description="Absolute path prefixes allowed as container.volumes[].hostPath, "
        "compared component by component (/data allows /data and /data/x, not /database); "
        "a hostPath holding '..' or not absolute is never allowed. Default: any path.")
    allowed_networks: list[Network] | None = Field(
        default=None, max_length=8,
        description="Network modes allowed: HOST (also every task not in a DOCKER "
        "container), BRIDGE, NONE. Default: any.")
    max_task_resources: ResourceLimits | None = Field(
        default=None, description="Most resources one task may ask for. Default: unbounded.")
    max_object_resources: ResourceLimits | None = Field(
        default=None,
        description="Most resources one object may hold at once: a task's resources times "
        "the object's most concurrent tasks (Job: parallelism; Queue: maxConcurrent; "
        "Service: floor(instances x (1 + upgradeStrategy.maximumOverCapacity)), its "
        "ceiling during a rollout; CronJob: each of its Jobs, by its parallelism). "
        "Default: unbounded.")
    allowed_docker_parameters: list[str] | None = Field(
        default=None, max_length=_MAX_RULES,
        description="Docker run parameters (container.parameters[].key, without '--') "
        "allowed while any other rule but role restricts the namespace: every other one is "
        "denied, as each can undo a rule (privileged, device, cap-add, volume, network, "
        "memory, env-file...). Default: none while restricted, any otherwise.")
    role: str | None = Field(
        default=None,
        description="The Mesos role the namespace's tasks run under (Mesos' quotas and "
        "weights then share the cluster between roles). Default: the framework's role.")

    @field_validator("allowed_images")
    @classmethod
    def _images(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or ():
            check_image_pattern(pattern)
        return value

    @field_validator("allowed_host_paths")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        for prefix in value or ():
            check_host_prefix(prefix)
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        return None if value is None else check_role(value)

    def over(self, default: Rules) -> Rules:
        """These rules merged over `default`, field by field (see the module docstring)."""
        given = self.model_dump(exclude_unset=True)
        given = {k: v for k, v in given.items() if v is not None}
        return default.model_copy(update={k: getattr(self, k) for k in given})


_MAX_ENTRIES = 100
"""Most throttles (and most pools): each throttle is a metric label value and is checked for
every launch at offer time."""

TaskKind = Literal["Job", "Queue", "Service"]
"""The kinds whose objects launch tasks (a CronJob's tasks are its Jobs')."""


@functools.lru_cache(maxsize=1024)
def name_regex(pattern: str) -> re.Pattern[str]:
    """A match's name pattern, compiled once (Match validated it)."""
    return re.compile(pattern)


class Match(DocketModel):
    """Which tasks an entry applies to, by what owns them. Every field given must hold; a
    field left out holds for any task (an empty match: every task)."""

    kinds: list[TaskKind] | None = Field(
        default=None, max_length=3,
        description="Kinds of the owning object: Job, Queue, Service (a CronJob's tasks are "
        "its Jobs'). Default: any kind.")
    namespaces: list[DNSLabel] | None = Field(
        default=None, max_length=_MAX_RULES,
        description="Namespaces of the owning object. Default: any namespace.")
    name: str | None = Field(
        default=None, min_length=1, max_length=1000,
        description="A Python regular expression the whole object name must match "
        "(fullmatch: 'mail-.*' matches mail-a, not x-mail-a). Default: any name.")
    labels: dict[str, str] | None = Field(
        default=None, max_length=64,
        description="Labels the task must carry, each with this value: the object's "
        "metadata.labels merged with its template's labels (the template's win). "
        "Default: any labels.")

    @field_validator("kinds", "namespaces", "labels")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if value is not None and not value:
            raise ValueError("must not be empty (it would match nothing): leave the field out "
                             "to match any")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                name_regex(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def matches(self, kind: str, namespace: str, name: str,
                labels: Mapping[str, str]) -> bool:
        """Whether a task of object `kind/namespace/name` carrying `labels` is selected."""
        if self.kinds is not None and kind not in self.kinds:
            return False
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        if self.name is not None and name_regex(self.name).fullmatch(name) is None:
            return False
        return self.labels is None or all(
            labels.get(k) == v for k, v in self.labels.items())

    def text(self) -> str:
        """A short human form (`docket policy throttles`): 'kinds=Job name=mail-.*'."""
        parts = []
        if self.kinds is not None:
            parts.append("kinds=" + ",".join(self.kinds))
        if self.namespaces is not None:
            parts.append("namespaces=" + ",".join(self.namespaces))
        if self.name is not None:
            parts.append(f"name={self.name}")
        if self.labels is not None:
            parts.append("labels=" + ",".join(f"{k}={v}" for k, v in sorted(
                self.labels.items())))
        return " ".join(parts) or "(every task)"


class Throttle(DocketModel):
    """At most `maxRunning` matching tasks live at once, across every object that matches;
    launches beyond wait (oldest first), none is dropped or failed."""

    name: DNSLabel = Field(description="The throttle's name, unique among throttles "
                           "(a metric label value). Required.")
    match: Match = Field(default_factory=Match,
                         description="The tasks it counts. Default: every task.")
    max_running: Int = Field(
        json_schema_extra={"minimum": 1, "maximum": 1_000_000},
        description="Most matching tasks live at once, at least 1. Required.")

    @field_validator("max_running")
    @classmethod
    def _max_running(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, not {value}: a throttle of 0 would hold "
                             "its tasks waiting forever (to stop launches, suspend the objects "
                             "or deny them in the rules)")
        if value > 1_000_000:
            raise ValueError(f"must be at most 1000000, not {value}")
        return value


class Pool(DocketModel):
    """Placement constraints added to every matching task, beside its own."""

    name: DNSLabel = Field(description="The pool's name, unique among pools. Required.")
    match: Match = Field(default_factory=Match,
                         description="The tasks it places. Default: every task.")
    constraints: list[Constraint] = Field(
        max_length=64, json_schema_extra={"minItems": 1},
        description="Marathon-style constraints, as a task template's (e.g. "
        "[[pool, IS, email]]), added to those of every matching task. Required.")

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: list[Constraint]) -> list[Constraint]:
        if not value:
            raise ValueError("must not be empty: a pool without constraints places nothing")
        return value


def _unique_names(names: list[str], field: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise FieldError(f"{field}[{i}].name", f"{name!r} is used twice (also at "
                             f"spec.{field}[{seen[name]}]): names must be unique")
        seen[name] = i


class PolicySpec(DocketModel):
    default: Rules = Field(default_factory=Rules,
                           description="Rules of every namespace. Default: none.")
    namespaces: dict[DNSLabel, Rules] = Field(
        default_factory=dict,
        description="Rules of one namespace, merged field by field over `default`: a field "
        "given replaces the default's. Default: none.")
    throttles: list[Throttle] = Field(
        default_factory=list, max_length=_MAX_ENTRIES,
        description="Limits on live tasks across objects: {name, match, maxRunning}. "
        "Default: none.")
    pools: list[Pool] = Field(
        default_factory=list, max_length=_MAX_ENTRIES,
        description="Placement constraints added by match: {name, match, constraints}. "
        "Default: none.")

    @model_validator(mode="after")
    def _unique(self) -> PolicySpec:
        _unique_names([t.name for t in self.throttles], "throttles")
        _unique_names([p.name for p in self.pools], "pools")
        return self


class Policy(DocketModel):
    """The operator's admission policy (`<prefix>/policy`): what each namespace may run."""

    api_version: Literal["docket.dev/v1"] = Field(description="Always docket.dev/v1.")
    kind: Literal["Policy"] = Field(description="Always Policy.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta,
                                 description="Optional; the key is the identity.")
    spec: PolicySpec = Field(default_factory=PolicySpec)

    def rules_for(self, namespace: str) -> Rules:
        own = self.spec.namespaces.get(namespace)
        return self.spec.default if own is None else own.over(self.spec.default)

    def role_for(self, namespace: str) -> str | None:
        return self.rules_for(namespace).role

    def roles(self) -> frozenset[str]:
        """Every role the policy names (the framework subscribes with all of them)."""
        named = {self.spec.default.role} | {r.role for r in self.spec.namespaces.values()}
        return frozenset(r for r in named if r is not None)


_GLOB_PART = re.compile(r"\*\*|\*|\?|[^*?]+")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """An image glob as a regular expression: '**' any characters, '*' any but '/', '?' one
    character but '/', everything else literally."""
    out = []
    for part in _GLOB_PART.findall(pattern):
        out.append({"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part)))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def decode_policy(data: bytes | str) -> Policy:
    """Parse and validate the policy document; ObjectInvalid names every problem by path."""
    from pydantic import ValidationError

    from controller.api.codec import (
        ObjectInvalid,
        Problem,
        parse_document,
        problems_from_validation,
    )

    doc = parse_document(data)
    if not isinstance(doc, dict):
        raise ObjectInvalid([Problem("", f"must be an object (a mapping), not "
                                         f"{type(doc).__name__}")], kind="Policy")
    try:
        return Policy.model_validate(doc)
    except ValidationError as exc:
        problems = [Problem(p.path.removesuffix(".[key]"), p.message)
                    for p in problems_from_validation(exc, doc=doc)]
        raise ObjectInvalid(problems, kind="Policy") from None


class PolicyStatus(DocketModel):
    """What the controller holds of the policy, written by the leader to
    `<prefix>/status/policy` whenever it changes (the policy has no other status: it is one
    operator-owned document, not a kind)."""

    observed_revision: int = Field(
        default=0, description="mod_revision of the stored policy document last read (0: none).")
    revision_in_force: int = Field(
        default=0, description="mod_revision of the document in force (0: none, nothing is "
        "denied). Behind observedRevision while the stored one is invalid.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Valid: True, or False naming every problem.")
