"""The admission policy, judged offline: the model's validation, the namespace merge, and
`evaluate` for each rule — allowed and denied, with the exact message — plus a bounded
property of hostPath prefixes (allowed iff a component-wise prefix)."""

from __future__ import annotations

import posixpath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission import POLICY_DENIED
from controller.api import decode_object
from controller.api.codec import ObjectInvalid
from controller.api.policy import Policy, decode_policy, glob_regex
from controller.policy import evaluate, host_path_allowed, judge, violations

POLICY = """
apiVersion: docket.dev/v1
kind: Policy
spec:
  default:
    allowedNetworks: [HOST]
    maxTaskResources: {cpus: 2, mem: 4096}
  namespaces:
    team-a:
      role: team-a
      allowedImages: ["registry.example.com/team-a/*"]
      allowedHostPaths: [/data]
      allowedNetworks: [HOST, BRIDGE]
      maxObjectResources: {cpus: 4, mem: 8192}
    team-b:
      role: team-b
      requireImage: true
"""


def policy() -> Policy:
    return decode_policy(POLICY)


def job(template: dict[str, Any], **spec: Any) -> Any:
    return decode_object({"apiVersion": "docket.dev/v1", "kind": "Job",
                          "metadata": {"name": "j"}, "spec": {"template": template, **spec}})


def docker(image: str, **container: Any) -> dict[str, Any]:
    return {"container": {"type": "DOCKER", "image": image, **container}}


def denial(ns: str, obj: Any, kind: str = "Job") -> str | None:
    found = evaluate(policy(), kind, ns, obj)
    if found is not None:
        assert found.reason == POLICY_DENIED
    return None if found is None else str(found)


# --- the model ------------------------------------------------------------------------------
def test_namespace_rules_merge_field_by_field_over_the_default() -> None:
    p = policy()
    a = p.rules_for("team-a")
    assert a.allowed_networks is not None and [n.value for n in a.allowed_networks] == [
        "HOST", "BRIDGE"]  # replaced
    assert a.max_task_resources is not None and a.max_task_resources.cpus == 2  # inherited
    assert a.role == "team-a"
    other = p.rules_for("elsewhere")
    assert other == p.spec.default and other.role is None
    assert p.roles() == {"team-a", "team-b"}


@pytest.mark.parametrize(("doc", "expected"), [
    ("apiVersion: docket.dev/v1\nkind: Policy\nspec: {default: {role: /x}}",
     "spec.default.role: '/x' is not a Mesos role"),
    ("apiVersion: docket.dev/v1\nkind: Policy\nspec: {default: {allowedHostPaths: [data]}}",
     "spec.default.allowedHostPaths: 'data' must be an absolute path"),
    ("apiVersion: docket.dev/v1\nkind: Policy\nspec: {default: {allowedHostPaths: [/a/../b]}}",
     "spec.default.allowedHostPaths: '/a/../b' must not contain '..'"),
    ("apiVersion: docket.dev/v1\nkind: Policy\nspec: {namespaces: {Team_A: {}}}",
     "spec.namespaces.Team_A: must be a DNS-1123 label"),
    ("apiVersion: docket.dev/v1\nkind: Policy\nspec: {default: {allowedNetworks: [USER]}}",
     "spec.default.allowedNetworks[0]: "),
    ("apiVersion: docket.dev/v1\nkind: Policy\nspec: {default: {maxTaskResources: {cpus: '2'}}}",
     "spec.default.maxTaskResources.cpus: must be a number, not a string"),
    ("apiVersion: docket.dev/v1\nkind: Policy\nspec: {default: {allowedImage: [x]}}",
     "spec.default.allowedImage: unknown field"),
    ("apiVersion: docket.dev/v1\nkind: Job\nspec: {}", "kind: "),
    ("spec: [unclosed", "invalid YAML"),
])
def test_invalid_policies_name_the_field(doc: str, expected: str) -> None:
    with pytest.raises(ObjectInvalid) as err:
        decode_policy(doc)
    assert any(str(p).startswith(expected) for p in err.value.problems), err.value.problems
    policy_, problems = judge(doc.encode())
    assert policy_ is None and problems


def test_glob_star_stays_within_a_path_component() -> None:
    assert glob_regex("registry.example.com/team-a/*").match("registry.example.com/team-a/x:1")
    assert not glob_regex("registry.example.com/team-a/*").match(
        "registry.example.com/team-a/sub/x:1")
    assert glob_regex("registry.example.com/**").match("registry.example.com/a/b/c:2")
    assert not glob_regex("registry.example.com/*").match("registry.example.com.evil/x")
    assert not glob_regex("a.b/*").match("aXb/c")  # the dot is literal


# --- evaluate, rule by rule -----------------------------------------------------------------
def test_no_policy_admits_everything() -> None:
    assert evaluate(None, "Job", "team-a", job(docker("evil/x:1"))) is None


def test_images() -> None:
    assert denial("team-a", job(docker("registry.example.com/team-a/app:1"))) is None
    assert denial("team-a", job(docker("evil/x:1"))) == (
        'spec.template.container.image: image \'evil/x:1\' is not allowed in namespace '
        'team-a (allowed: registry.example.com/team-a/*)')
    assert denial("team-a", job({"command": "true"})) is None  # no image, not required
    assert denial("team-b", job({"command": "true"})) == (
        "spec.template.container.image: a container image is required in namespace team-b "
        "(requireImage)")
    assert denial("other", job(docker("evil/x:1"))) is None  # default: any image


@pytest.mark.parametrize(("path", "allowed"), [
    ("/data", True), ("/data/", True), ("/data/x/y", True), ("/data//x", True),
    ("/data/./x", True), ("/database", False), ("/dat", False), ("/", False),
    ("/data/../etc", False), ("/data/x/..", False), ("data/x", False), ("/etc", False),
])
def test_host_paths_are_prefixes_by_component(path: str, allowed: bool) -> None:
    obj = job(docker("registry.example.com/team-a/a", volumes=[
        {"hostPath": path, "containerPath": "/mnt"}]))
    expected = None if allowed else (
        f"spec.template.container.volumes[0].hostPath: host path {path!r} is not allowed in "
        "namespace team-a (allowed prefixes: /data)")
    assert denial("team-a", obj) == expected


def test_networks() -> None:
    image = "registry.example.com/team-a/a"
    assert denial("team-a", job(docker(image, network="BRIDGE"))) is None
    assert denial("team-a", job(docker(image, network="NONE"))) == (
        "spec.template.container.network: network NONE is not allowed in namespace team-a "
        "(allowed: HOST, BRIDGE)")
    assert denial("other", job(docker("x", network="BRIDGE"))) == (
        "spec.template.container.network: network BRIDGE is not allowed in namespace other "
        "(allowed: HOST)")
    assert denial("other", job(docker("x"))) is None  # DOCKER without network: HOST
    assert denial("other", job({"command": "true"})) is None  # a plain command: HOST
    strict = Policy.model_validate({"apiVersion": "docket.dev/v1", "kind": "Policy",
                                    "spec": {"default": {"allowedNetworks": ["BRIDGE"]}}})
    found = evaluate(strict, "Job", "x", job({"command": "true"}))
    assert found is not None and found.field == "spec.template.container"
    assert "network HOST is not allowed" in found.message


def test_docker_parameters_cannot_bypass_volumes_or_network() -> None:
    obj = job(docker("registry.example.com/team-a/a", parameters=[
        {"key": "volume", "value": "/:/host"}, {"key": "net", "value": "none"}]))
    found = [str(d) for d in violations(policy(), "Job", "team-a", obj)]
    assert found == [
        "spec.template.container.parameters[0].key: docker parameter 'volume' is not "
        "allowed in namespace team-a (allowedHostPaths: use container.volumes)",
        "spec.template.container.parameters[1].key: docker parameter 'net' is not allowed "
        "in namespace team-a (allowedNetworks: use container.network)"]


def test_task_resources() -> None:
    assert denial("other", job({"command": "x", "resources": {"cpus": 2, "mem": 4096}})) is None
    assert denial("other", job({"command": "x", "resources": {"cpus": 2.5}})) == (
        "spec.template.resources.cpus: 2.5 cpus per task exceeds the maximum of 2 in "
        "namespace other (maxTaskResources.cpus)")
    assert denial("other", job({"command": "x", "resources": {"mem": 5000}})) == (
        "spec.template.resources.mem: 5000 mem per task exceeds the maximum of 4096 in "
        "namespace other (maxTaskResources.mem)")


IMAGE = {"container": {"type": "DOCKER", "image": "registry.example.com/team-a/a"},
         "resources": {"cpus": 1, "mem": 1024}}


def test_object_resources_per_kind() -> None:
    assert denial("team-a", job(IMAGE, parallelism=4)) is None  # 4 x 1 cpus = 4
    assert denial("team-a", job(IMAGE, parallelism=5)) == (
        "spec.parallelism: 5 tasks x 1 cpus = 5 cpus at once exceeds the maximum of 4 per "
        "object in namespace team-a (maxObjectResources.cpus)")
    queue = decode_object({"apiVersion": "docket.dev/v1", "kind": "Queue",
                           "metadata": {"name": "q"},
                           "spec": {"source": {"type": "etcd"}, "maxConcurrent": 9,
                                    "template": IMAGE}})
    assert denial("team-a", queue, "Queue") == (
        "spec.maxConcurrent: 9 tasks x 1 cpus = 9 cpus at once exceeds the maximum of 4 per "
        "object in namespace team-a (maxObjectResources.cpus)")

    def service(instances: int, over: float) -> Any:
        return decode_object({"apiVersion": "docket.dev/v1", "kind": "Service",
                              "metadata": {"name": "s"},
                              "spec": {"instances": instances, "template": IMAGE,
                                       "upgradeStrategy": {"maximumOverCapacity": over}}})

    assert denial("team-a", service(4, 0), "Service") is None
    # During a rollout floor(2 x (1 + 1)) = 4 instances may be live: allowed; 3 -> 6: not.
    assert denial("team-a", service(2, 1), "Service") is None
    assert denial("team-a", service(3, 1), "Service") == (
        "spec.instances: 6 tasks x 1 cpus = 6 cpus at once exceeds the maximum of 4 per "
        "object in namespace team-a (maxObjectResources.cpus)")
    cron = decode_object({"apiVersion": "docket.dev/v1", "kind": "CronJob",
                          "metadata": {"name": "c"},
                          "spec": {"schedule": "@daily", "jobTemplate": {"spec": {
                              "parallelism": 5, "template": IMAGE}}}})
    assert denial("team-a", cron, "CronJob") == (
        "spec.jobTemplate.spec.parallelism: 5 tasks x 1 cpus = 5 cpus at once exceeds the "
        "maximum of 4 per object in namespace team-a (maxObjectResources.cpus)")
    bad_image = decode_object({"apiVersion": "docket.dev/v1", "kind": "CronJob",
                               "metadata": {"name": "c"},
                               "spec": {"schedule": "@daily", "jobTemplate": {"spec": {
                                   "template": docker("evil/x:1")}}}})
    found = evaluate(policy(), "CronJob", "team-a", bad_image)
    assert found is not None and found.field == "spec.jobTemplate.spec.template.container.image"


def test_spec_alone_is_judged_like_its_object() -> None:
    obj = job(docker("evil/x:1"))
    assert evaluate(policy(), "Job", "team-a", obj.spec) == evaluate(
        policy(), "Job", "team-a", obj)


# --- a bounded property ---------------------------------------------------------------------
_COMPONENT = st.sampled_from(["data", "database", "dat", "a", "..", ".", "", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_COMPONENT, min_size=1, max_size=5), st.lists(
    st.sampled_from(["data", "database", "a", "x"]), min_size=1, max_size=3))
def test_host_path_allowed_iff_a_component_prefix(path_parts: list[str],
                                                  prefix_parts: list[str]) -> None:
    path = "/" + "/".join(path_parts)
    prefix = "/" + "/".join(prefix_parts)
    allowed = host_path_allowed(path, [prefix])
    if ".." in path_parts:
        assert not allowed
        return
    parts = [p for p in posixpath.normpath(path).split("/") if p]
    assert allowed == (parts[:len(prefix_parts)] == prefix_parts)


# --- docker parameters and fetched files (review of issue 15) -----------------------------
OK_IMAGE = "registry.example.com/team-a/app:1"


@pytest.mark.parametrize("key", ["privileged", "--device", "cap-add", "env-file", "cidfile",
                                 "pid", "security-opt", "memory"])
def test_a_restricted_namespace_denies_docker_parameters_not_allowed_by_name(key: str) -> None:
    obj = job(docker(OK_IMAGE, parameters=[{"key": key, "value": "x"}]))
    assert denial("team-a", obj) == (
        f"spec.template.container.parameters[0].key: docker parameter {key!r} is not allowed "
        "in namespace team-a (allowedDockerParameters: none)")


def test_allowed_docker_parameters_and_unrestricted_namespaces_pass() -> None:
    allowed = decode_policy(POLICY.replace("      role: team-a\n", "      role: team-a\n"
                                           "      allowedDockerParameters: [log-driver]\n"))
    obj = job(docker(OK_IMAGE, parameters=[{"key": "log-driver", "value": "none"}]))
    assert evaluate(allowed, "Job", "team-a", obj) is None
    only_role = decode_policy("apiVersion: docket.dev/v1\nkind: Policy\nspec:\n"
                              "  namespaces:\n    free: {role: free}\n")
    assert evaluate(only_role, "Job", "free",
                    job(docker("any/thing", parameters=[{"key": "privileged",
                                                         "value": "true"}]))) is None


@pytest.mark.parametrize(("uri", "denied"), [
    ("file:///etc/shadow", "/etc/shadow"), ("/etc/mesos/secret", "/etc/mesos/secret"),
    ("file:///data/input.csv", None), ("https://example.com/x.tgz", None),
    ("hdfs://nn/x", None)])
def test_fetching_agent_files_outside_allowed_host_paths_is_denied(uri: str,
                                                                   denied: str | None) -> None:
    obj = job({**docker(OK_IMAGE), "uris": [{"value": uri}]})
    expected = None if denied is None else (
        f"spec.template.uris[0].value: fetching the agent's file {denied!r} is not allowed in "
        "namespace team-a (allowedHostPaths: /data)")
    assert denial("team-a", obj) == expected
