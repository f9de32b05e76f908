"""TaskInfo for a Service's instances: named ports (PORT0.. order, PORT_<NAME>, DOCKER BRIDGE
mappings) and TaskInfo.health_check in Mesos v1 JSON, checked against the v1 proto models."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.service import HealthCheck
from controller.api.template import TaskTemplate
from controller.mesos.offers import Offer, match
from controller.mesos.taskinfo import NEVER_KILL, port_count, port_layout, task_info, task_request
from tests.mesos.offers_util import offer_json
from tests.mesos_v1 import validate_scheduler_call

TASK_ID = "service.default.web.42.0.0"


def template(**kw: Any) -> TaskTemplate:
    return TaskTemplate.model_validate({"command": "serve", **kw})


def check(**kw: Any) -> HealthCheck:
    return HealthCheck.model_validate(kw)


def place(t: TaskTemplate, hc: HealthCheck | None = None,
          ports: tuple[tuple[int, int], ...] = ((31000, 31010),)) -> dict[str, Any]:
    """The TaskInfo, after checking that the ACCEPT carrying it is a valid v1 Call."""
    offer = Offer.parse(offer_json("o1", "h1", ports=ports))
    (a,) = match([offer], [task_request(t, TASK_ID, "g", hc)]).assignments
    info = task_info(t, a, health_check=hc)
    validate_scheduler_call({
        "type": "ACCEPT", "framework_id": {"value": "fw"},
        "accept": {"offer_ids": [{"value": "o1"}],
                   "operations": [{"type": "LAUNCH", "launch": {"task_infos": [info]}}]},
    })
    assert tuple(int(p) for p in env(info).get("PORTS", "").split(",") if p) == \
        port_layout(t, a).numbers  # the adapter reports the order the task sees
    return info


def env(info: dict[str, Any]) -> dict[str, str]:
    variables = info["command"].get("environment", {}).get("variables", [])
    return {v["name"]: v["value"] for v in variables}


def port_ranges(info: dict[str, Any]) -> list[dict[str, int]]:
    (ports,) = [r for r in info["resources"] if r["name"] == "ports"]
    return list(ports["ranges"]["range"])


# ------------------------------------------------------------------------------ named ports


def test_named_ports_come_first_and_by_name() -> None:
    t = template(ports=[{"name": "http"}, {"name": "admin-api"}], resources={"ports": 1},
                 env={"A": "1"})
    info = place(t)
    assert env(info) == {
        "PORT0": "31000", "PORT1": "31001", "PORT2": "31002", "PORTS": "31000,31001,31002",
        "PORT_HTTP": "31000", "PORT_ADMIN_API": "31001", "A": "1"}
    assert port_ranges(info) == [{"begin": 31000, "end": 31002}]
    assert "container" not in info  # a plain command stays one
    assert port_count(t) == 3


def test_template_env_may_override_a_port_variable() -> None:
    info = place(template(ports=[{"name": "http"}], env={"PORT_HTTP": "80"}))
    assert env(info)["PORT_HTTP"] == "80" and env(info)["PORT0"] == "31000"


def test_named_ports_before_fixed_then_dynamic_mappings_then_resources() -> None:
    t = template(
        container={"type": "DOCKER", "image": "nginx", "network": "BRIDGE",
                   "portMappings": [{"containerPort": 81},
                                    {"containerPort": 53, "hostPort": 31009,
                                     "protocol": "udp"}]},
        ports=[{"name": "http", "containerPort": 8080}, {"name": "metrics"}],
        resources={"ports": 1})
    info = place(t)
    e = env(info)
    # named (31000, 31001), fixed mapping (31009), dynamic mapping (31002), resources (31003)
    assert [e[f"PORT{i}"] for i in range(5)] == ["31000", "31001", "31009", "31002", "31003"]
    assert (e["PORT_HTTP"], e["PORT_METRICS"]) == ("31000", "31001")
    assert info["container"]["docker"]["port_mappings"] == [
        {"host_port": 31000, "container_port": 8080, "protocol": "tcp"},
        # No containerPort: mapped to the same number, so $PORT_METRICS works inside.
        {"host_port": 31001, "container_port": 31001, "protocol": "tcp"},
        {"host_port": 31002, "container_port": 81, "protocol": "tcp"},
        {"host_port": 31009, "container_port": 53, "protocol": "udp"},
    ]
    assert port_ranges(info) == [{"begin": 31000, "end": 31003}, {"begin": 31009, "end": 31009}]


def test_named_ports_are_not_mapped_without_a_bridge() -> None:
    t = template(container={"type": "DOCKER", "image": "nginx", "network": "HOST",
                            "portMappings": [{"containerPort": 81}]},
                 ports=[{"name": "http", "containerPort": 8080}])
    info = place(t)
    # Only the template's own mapping, as before named ports existed.
    assert info["container"]["docker"]["port_mappings"] == [
        {"host_port": 31001, "container_port": 81, "protocol": "tcp"}]
    assert (env(info)["PORT0"], env(info)["PORT_HTTP"], env(info)["PORT1"]) == (
        "31000", "31000", "31001")


def test_without_named_ports_the_order_is_unchanged() -> None:
    t = template(container={"type": "DOCKER", "image": "nginx", "network": "BRIDGE",
                            "portMappings": [{"containerPort": 80},
                                             {"containerPort": 53, "hostPort": 31005}]},
                 resources={"ports": 1})
    e = env(place(t))
    assert [e[f"PORT{i}"] for i in range(3)] == ["31005", "31000", "31001"]
    assert not any(k.startswith("PORT_") for k in e)


def test_named_ports_must_fit_the_offer() -> None:
    t = template(ports=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    offer = Offer.parse(offer_json("o1", "h1", ports=[(31000, 31001)]))
    assert match([offer], [task_request(t, TASK_ID, "g")]).assignments == []


# ----------------------------------------------------------------------------- health checks

TIMINGS = {"delaySeconds": 5, "intervalSeconds": 10, "timeoutSeconds": 2,
           "maxConsecutiveFailures": 3, "gracePeriodSeconds": 30}
TIMINGS_JSON = {"delay_seconds": 5.0, "interval_seconds": 10.0, "timeout_seconds": 2.0,
                "consecutive_failures": 3, "grace_period_seconds": 30.0}


def test_http_check_by_name_probes_the_host_port() -> None:
    t = template(ports=[{"name": "admin"}, {"name": "http"}])
    info = place(t, check(type="HTTP", portName="http", path="/health", **TIMINGS))
    assert info["health_check"] == {
        "type": "HTTP", "http": {"port": 31001, "path": "/health", "scheme": "http"},
        **TIMINGS_JSON}


def test_tcp_check_by_index() -> None:
    t = template(ports=[{"name": "http"}], resources={"ports": 2})
    info = place(t, check(type="TCP", portIndex=2, **TIMINGS))
    assert info["health_check"] == {"type": "TCP", "tcp": {"port": 31002}, **TIMINGS_JSON}


def test_http_check_defaults_to_port0_and_spells_out_the_defaults() -> None:
    info = place(template(ports=[{"name": "http"}]), check(type="HTTP"))
    # Marathon's defaults, written out: Mesos' own differ (interval 10, grace 10).
    assert info["health_check"] == {
        "type": "HTTP", "http": {"port": 31000, "path": "/", "scheme": "http"},
        "delay_seconds": 15.0, "interval_seconds": 60.0, "timeout_seconds": 20.0,
        "consecutive_failures": 3, "grace_period_seconds": 300.0}


def test_command_check() -> None:
    info = place(template(), check(type="COMMAND", command="curl -f localhost:$PORT0",
                                   **TIMINGS))
    assert info["health_check"] == {
        "type": "COMMAND", "command": {"shell": True, "value": "curl -f localhost:$PORT0"},
        **TIMINGS_JSON}


def test_zero_failures_means_never_kill() -> None:
    # Mesos kills at failures >= consecutive_failures: 0 would kill at the first failure.
    info = place(template(), check(type="COMMAND", command="true",
                                   maxConsecutiveFailures=0))
    assert info["health_check"]["consecutive_failures"] == NEVER_KILL == 4294967295


def test_bridge_checks_probe_the_container_port() -> None:
    t = template(
        container={"type": "DOCKER", "image": "nginx", "network": "BRIDGE",
                   "portMappings": [{"containerPort": 81}]},
        ports=[{"name": "http", "containerPort": 8080}, {"name": "raw"}],
        resources={"ports": 1})
    by_name = place(t, check(type="HTTP", portName="http"))
    assert by_name["health_check"]["http"]["port"] == 8080
    assert place(t, check(type="TCP", portName="raw"))["health_check"]["tcp"] == {
        "port": 31001}  # mapped to the same number
    assert place(t, check(type="TCP", portIndex=2))["health_check"]["tcp"] == {"port": 81}
    # resources.ports are not mapped: the task can only listen on the host port.
    assert place(t, check(type="TCP", portIndex=3))["health_check"]["tcp"] == {"port": 31003}


def test_host_network_checks_probe_the_host_port() -> None:
    t = template(container={"type": "DOCKER", "image": "nginx", "network": "HOST"},
                 ports=[{"name": "http", "containerPort": 8080}])
    assert place(t, check(type="HTTP"))["health_check"]["http"]["port"] == 31000


@pytest.mark.parametrize(("t", "hc", "error"), [
    (template(ports=[{"name": "http"}]), check(type="HTTP", portIndex=1),
     "PORT1 does not exist: the task has 1 port"),
    (template(), check(type="TCP"), "PORT0 does not exist: the task has 0 port"),
    (template(ports=[{"name": "http"}]), check(type="HTTP", portName="admin"),
     "'admin' is not in template.ports"),
    (template(ports=[{"name": "dns", "protocol": "udp"}]), check(type="TCP"),
     "cannot probe PORT0: it is udp"),
])
def test_a_check_on_a_port_the_task_lacks_is_refused_before_any_offer(
        t: TaskTemplate, hc: HealthCheck, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        task_request(t, TASK_ID, "g", hc)


def test_no_check_no_health_check_field() -> None:
    assert "health_check" not in place(template(ports=[{"name": "http"}]))
