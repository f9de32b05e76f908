"""Throttles and pools in the policy (issue 16), offline: the model's verdict on each bad shape
(named by its field, exact message), which throttles and pools a task matches by kind,
namespace, name pattern and labels, the label merge rule, and bounded properties (an empty
match selects every task; a name pattern is a fullmatch)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.api import decode_object
from controller.api.codec import ObjectInvalid
from controller.api.policy import Match, Policy, decode_policy
from controller.api.template import Constraint
from controller.policy import (
    judge,
    pool_constraints_for,
    task_labels,
    throttles_for,
)

POLICY = """
apiVersion: docket.dev/v1
kind: Policy
spec:
  throttles:
    - name: mail
      match: {name: "mail-.*"}
      maxRunning: 10
    - name: growth-jobs
      match: {kinds: [Job], namespaces: [growth], labels: {team: growth}}
      maxRunning: 3
    - name: everything
      maxRunning: 1000
  pools:
    - name: email
      match: {name: "mail-.*"}
      constraints: [[pool, IS, email]]
    - name: gpu
      match: {kinds: [Queue, Service], labels: {gpu: "yes"}}
      constraints: [[gpu, IS, "true"], [hostname, UNIQUE]]
    - name: email-again
      match: {name: "mail-a"}
      constraints: [[pool, IS, email], [rack, GROUP_BY, "2"]]
"""


def policy() -> Policy:
    return decode_policy(POLICY)


def with_spec(spec: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": "docket.dev/v1", "kind": "Policy", "spec": spec})


def problems(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(ObjectInvalid) as exc:
        decode_policy(with_spec(spec))
    return [str(p) for p in exc.value.problems]


def test_the_example_decodes() -> None:
    p = policy()
    assert [(t.name, t.max_running) for t in p.spec.throttles] == [
        ("mail", 10), ("growth-jobs", 3), ("everything", 1000)]
    assert p.spec.throttles[2].match == Match()
    assert p.spec.pools[1].constraints == [Constraint.model_validate(["gpu", "IS", "true"]),
                                           Constraint.model_validate(["hostname", "UNIQUE"])]
    # Written back as the user wrote it (camelCase, constraints as lists).
    dumped = p.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped["spec"]["throttles"][0] == {"name": "mail", "match": {"name": "mail-.*"},
                                              "maxRunning": 10}
    assert dumped["spec"]["pools"][0]["constraints"] == [["pool", "IS", "email"]]


OK = {"name": "a", "maxRunning": 1}
POOL = {"name": "p", "constraints": [["pool", "IS", "x"]]}
MISSING_PAREN = "missing ), unterminated subpattern at position 3"

BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    ("regex that does not compile", {"throttles": [OK, {**OK, "name": "b"},
                                                   {**OK, "name": "c",
                                                    "match": {"name": "abc(d"}}]},
     [f"spec.throttles[2].match.name: not a regular expression: {MISSING_PAREN}"]),
    ("pool regex", {"pools": [{**POOL, "match": {"name": "*x"}}]},
     ["spec.pools[0].match.name: not a regular expression: nothing to repeat at "
      "position 0"]),
    ("duplicate throttle name", {"throttles": [OK, {**OK, "maxRunning": 2}]},
     ["spec.throttles[1].name: 'a' is used twice (also at spec.throttles[0]): names must be "
      "unique"]),
    ("duplicate pool name", {"pools": [POOL, POOL, {**POOL, "name": "q"}, POOL]},
     ["spec.pools[1].name: 'p' is used twice (also at spec.pools[0]): names must be unique"]),
    ("maxRunning 0 starves", {"throttles": [{**OK, "maxRunning": 0}]},
     ["spec.throttles[0].maxRunning: must be at least 1, not 0: a throttle of 0 would hold "
      "its tasks waiting forever (to stop launches, suspend the objects or deny them in the "
      "rules)"]),
    ("maxRunning a string", {"throttles": [{**OK, "maxRunning": "3"}]},
     ["spec.throttles[0].maxRunning: must be an integer, not a string (remove the quotes)"]),
    ("maxRunning missing", {"throttles": [{"name": "a"}]},
     ["spec.throttles[0].maxRunning: required field is missing"]),
    ("name not a DNS label", {"throttles": [{**OK, "name": "Mail_1"}]},
     ["spec.throttles[0].name: must be a DNS-1123 label: lowercase letters, digits and '-', "
      "starting and ending with a letter or digit"]),
    ("unknown kind", {"throttles": [{**OK, "match": {"kinds": ["Job", "CronJob"]}}]},
     ["spec.throttles[0].match.kinds[1]: must be 'Job', 'Queue' or 'Service'"]),
    ("empty kinds", {"throttles": [{**OK, "match": {"kinds": []}}]},
     ["spec.throttles[0].match.kinds: must not be empty (it would match nothing): leave the "
      "field out to match any"]),
    ("empty labels", {"pools": [{**POOL, "match": {"labels": {}}}]},
     ["spec.pools[0].match.labels: must not be empty (it would match nothing): leave the "
      "field out to match any"]),
    ("bad namespace", {"throttles": [{**OK, "match": {"namespaces": ["Team A"]}}]},
     ["spec.throttles[0].match.namespaces[0]: must be a DNS-1123 label: lowercase letters, "
      "digits and '-', starting and ending with a letter or digit"]),
    ("unknown match field", {"throttles": [{**OK, "match": {"image": "x"}}]},
     ["spec.throttles[0].match.image: unknown field"]),
    ("match not a mapping", {"throttles": [{**OK, "match": ["x"]}]},
     ["spec.throttles[0].match: must be an object (a mapping), not a list"]),
    ("throttles not a list", {"throttles": {"name": "a"}},
     ["spec.throttles: must be a list, not an object"]),
    ("pool without constraints", {"pools": [{"name": "p"}]},
     ["spec.pools[0].constraints: required field is missing"]),
    ("pool with no constraint", {"pools": [{**POOL, "constraints": []}]},
     ["spec.pools[0].constraints: must not be empty: a pool without constraints places "
      "nothing"]),
    ("pool constraint shape", {"pools": [{**POOL, "constraints": [["pool", "IS"]]}]},
     ["spec.pools[0].constraints[0]: operator IS needs a value"]),
    ("pool constraint operator", {"pools": [{**POOL, "constraints": [["a", "NEAR", "b"]]}]},
     ["spec.pools[0].constraints[0].operator: must be 'UNIQUE', 'CLUSTER', 'GROUP_BY', "
      "'LIKE', 'UNLIKE', 'MAX_PER' or 'IS'"]),
]


@pytest.mark.parametrize(("what", "spec", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_shapes_are_named(what: str, spec: dict[str, Any], expected: list[str]) -> None:
    assert problems(spec) == expected
    # The controller's verdict is the same (and then keeps the last valid policy).
    policy_, found = judge(with_spec(spec).encode())
    assert policy_ is None and [str(p) for p in found] == expected


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"throttles": [{**OK, "maxRunning": 0},
                                    {**OK, "name": "b", "match": {"name": "("}}],
                      "pools": [{"name": "x"}]})
    assert [f.split(":")[0] for f in found] == [
        "spec.throttles[0].maxRunning", "spec.throttles[1].match.name",
        "spec.pools[0].constraints"]


# --- which tasks match ------------------------------------------------------------------------
THROTTLES = [
    # kind, namespace, name, labels -> throttles
    ("Job", "default", "mail-a", {}, ("mail", "everything")),
    ("Queue", "default", "mail-digest", {}, ("mail", "everything")),
    ("Job", "default", "x-mail-a", {}, ("everything",)),  # fullmatch, not search
    ("Job", "default", "mail", {}, ("everything",)),  # 'mail-.*' needs the '-'
    ("Job", "growth", "report", {"team": "growth"}, ("growth-jobs", "everything")),
    ("Job", "growth", "report", {"team": "growth", "x": "y"}, ("growth-jobs", "everything")),
    ("Service", "growth", "report", {"team": "growth"}, ("everything",)),  # not a Job
    ("Job", "other", "report", {"team": "growth"}, ("everything",)),  # other namespace
    ("Job", "growth", "report", {"team": "Growth"}, ("everything",)),  # values are exact
    ("Job", "growth", "report", {}, ("everything",)),  # label missing
    ("Job", "growth", "mail-x", {"team": "growth"}, ("mail", "growth-jobs", "everything")),
]


@pytest.mark.parametrize(("kind", "ns", "name", "labels", "expected"), THROTTLES)
def test_throttles_for(kind: str, ns: str, name: str, labels: dict[str, str],
                       expected: tuple[str, ...]) -> None:
    assert throttles_for(policy(), kind, ns, name, labels) == expected


def constraints(*rows: list[str]) -> list[Constraint]:
    return [Constraint.model_validate(r) for r in rows]


POOLS = [
    ("Job", "default", "mail-b", {}, constraints(["pool", "IS", "email"])),
    # Two pools adding the same constraint: once, in the policy's order.
    ("Job", "default", "mail-a", {}, constraints(["pool", "IS", "email"],
                                                 ["rack", "GROUP_BY", "2"])),
    ("Queue", "ml", "train", {"gpu": "yes"}, constraints(["gpu", "IS", "true"],
                                                         ["hostname", "UNIQUE"])),
    ("Job", "ml", "train", {"gpu": "yes"}, []),  # the gpu pool is for Queues and Services
    ("Service", "ml", "serve", {"gpu": "no"}, []),
    ("Job", "default", "backup", {}, []),
]


@pytest.mark.parametrize(("kind", "ns", "name", "labels", "expected"), POOLS)
def test_pool_constraints_for(kind: str, ns: str, name: str, labels: dict[str, str],
                              expected: list[Constraint]) -> None:
    assert pool_constraints_for(policy(), kind, ns, name, labels) == expected


def test_no_policy_no_throttles_no_pools() -> None:
    assert throttles_for(None, "Job", "default", "mail-a", {}) == ()
    assert pool_constraints_for(None, "Job", "default", "mail-a", {}) == []
    empty = decode_policy("apiVersion: docket.dev/v1\nkind: Policy\n")
    assert throttles_for(empty, "Job", "default", "mail-a", {}) == ()


def test_labels_are_the_objects_merged_with_its_templates_the_template_winning() -> None:
    job = decode_object({"apiVersion": "docket.dev/v1", "kind": "Job",
                         "metadata": {"name": "report", "labels": {"team": "growth",
                                                                   "tier": "1"}},
                         "spec": {"template": {"command": "true",
                                               "labels": {"tier": "2", "gpu": "yes"}}}})
    assert task_labels(job) == {"team": "growth", "tier": "2", "gpu": "yes"}
    # A launch's own template replaces the object's (a Service instance of an old version).
    assert task_labels(job, job.spec.template.model_copy(update={"labels": {}})) == {
        "team": "growth", "tier": "1"}
    assert task_labels(None, job.spec.template) == {"tier": "2", "gpu": "yes"}
    assert task_labels(None) == {}
    assert throttles_for(policy(), "Job", "growth", "report", task_labels(job)) == (
        "growth-jobs", "everything")


# --- properties (bounded) -------------------------------------------------------------------
KINDS = st.sampled_from(["Job", "Queue", "Service"])
LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
LABELS = st.dictionaries(LABEL, LABEL, max_size=4)


@settings(max_examples=200, deadline=None)
@given(KINDS, LABEL, LABEL, LABELS)
def test_an_empty_match_selects_every_task(kind: str, namespace: str, name: str,
                                           labels: dict[str, str]) -> None:
    p = decode_policy(with_spec({"throttles": [{"name": "all", "maxRunning": 1}],
                                 "pools": [POOL]}))
    assert throttles_for(p, kind, namespace, name, labels) == ("all",)
    assert pool_constraints_for(p, kind, namespace, name, labels) == p.spec.pools[0].constraints


@settings(max_examples=200, deadline=None)
@given(LABEL, LABEL, LABELS, LABELS)
def test_a_match_is_the_conjunction_of_its_fields(prefix: str, name: str,
                                                  want: dict[str, str],
                                                  have: dict[str, str]) -> None:
    pattern = re.escape(prefix) + ".*"
    match = Match.model_validate({"name": pattern, "namespaces": ["a"],
                                  **({"labels": want} if want else {})})
    expected = (name.startswith(prefix)
                and all(have.get(k) == v for k, v in want.items()))
    assert match.matches("Job", "a", name, have) is expected
    assert not match.matches("Job", "b", name, have)
