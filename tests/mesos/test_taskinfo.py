"""TaskInfo JSON: Mesos' proto field names, resources copied from the offer, ports."""

from __future__ import annotations

import json

import pytest

from controller.api.template import TaskTemplate
from controller.mesos.offers import Offer, match
from controller.mesos.taskinfo import check_task_id, task_info, task_request
from tests.mesos.offers_util import offer_json

TASK_ID = "job.default.hello.42.0.1"


def place(template: TaskTemplate, **offer_kw: object) -> dict[str, object]:
    offer = Offer.parse(offer_json("o1", "h1", ports=[(31000, 31010)], **offer_kw))  # type: ignore[arg-type]
    (a,) = match([offer], [task_request(template, TASK_ID, "job/default/hello")]).assignments
    return task_info(template, a)


def test_shell_command_resources_kill_policy_labels() -> None:
    t = TaskTemplate.model_validate({
        "command": "echo hello", "env": {"A": "1"},
        "resources": {"cpus": 0.5, "mem": 64, "disk": 10},
        "killGracePeriodSeconds": 2.5, "labels": {"team": "x"},
        "uris": [{"value": "http://x/a.tgz", "outputFile": "a.tgz"}],
    })
    info = place(t, disk=100, role="batch")
    assert info["name"] == TASK_ID
    assert info["task_id"] == {"value": TASK_ID}
    assert info["agent_id"] == {"value": "agent-h1"}
    assert info["command"] == {
        "shell": True, "value": "echo hello",
        "environment": {"variables": [{"name": "A", "value": "1"}]},
        "uris": [{"value": "http://x/a.tgz", "executable": False, "extract": True,
                  "cache": False, "output_file": "a.tgz"}],
    }
    resources = {r["name"]: r for r in info["resources"]}  # type: ignore[attr-defined]
    assert resources["cpus"]["scalar"] == {"value": 0.5}
    assert resources["mem"]["scalar"] == {"value": 64.0}
    assert resources["disk"]["allocation_info"] == {"role": "batch"}
    assert info["kill_policy"] == {"grace_period": {"nanoseconds": 2_500_000_000}}
    assert info["labels"] == {"labels": [{"key": "team", "value": "x"}]}
    assert "container" not in info and "max_completion_time" not in info
    json.dumps(info)  # plain JSON, nothing pydantic left in it


def test_args_run_without_shell_and_ports_env() -> None:
    t = TaskTemplate.model_validate({"args": ["/bin/echo", "a b"], "resources": {"ports": 2}})
    info = place(t)
    cmd = info["command"]
    assert cmd["shell"] is False and cmd["value"] == "/bin/echo"  # type: ignore[index]
    assert cmd["arguments"] == ["/bin/echo", "a b"]  # type: ignore[index]
    env = {v["name"]: v["value"] for v in cmd["environment"]["variables"]}  # type: ignore[index]
    assert env == {"PORT0": "31000", "PORT1": "31001", "PORTS": "31000,31001"}


def test_docker_container_with_port_mappings_and_volumes() -> None:
    t = TaskTemplate.model_validate({
        "container": {
            "type": "DOCKER", "image": "busybox:1", "network": "BRIDGE",
            "forcePullImage": True,
            "portMappings": [{"containerPort": 80}, {"containerPort": 53, "hostPort": 31005,
                                                     "protocol": "udp"}],
            "parameters": [{"key": "memory-swap", "value": "0"}],
            "volumes": [{"hostPath": "/data", "containerPath": "/d", "mode": "RO"}],
        },
        "command": "run",
    })
    info = place(t)
    assert info["container"] == {
        "type": "DOCKER",
        "volumes": [{"container_path": "/d", "host_path": "/data", "mode": "RO"}],
        "docker": {
            "image": "busybox:1", "network": "BRIDGE", "force_pull_image": True,
            "port_mappings": [
                {"host_port": 31000, "container_port": 80, "protocol": "tcp"},
                {"host_port": 31005, "container_port": 53, "protocol": "udp"},
            ],
            "parameters": [{"key": "memory-swap", "value": "0"}],
        },
    }
    ports = [r for r in info["resources"] if r["name"] == "ports"]  # type: ignore[attr-defined]
    assert ports[0]["ranges"] == {"range": [{"begin": 31000, "end": 31000},
                                            {"begin": 31005, "end": 31005}]}


def test_mesos_image_and_max_completion_time() -> None:
    t = TaskTemplate.model_validate({"container": {"type": "MESOS", "image": "alpine"}})
    offer = Offer.parse(offer_json("o1", "h1"))
    (a,) = match([offer], [task_request(t, TASK_ID, "g")]).assignments
    info = task_info(t, a, name="hello", extra_env={"DOCKET_BATCH": "x"},
                     max_completion_seconds=30)
    assert info["name"] == "hello"
    assert info["container"] == {
        "type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "alpine"}}}}
    assert info["command"]["shell"] is False and "value" not in info["command"]
    assert info["max_completion_time"] == {"nanoseconds": 30_000_000_000}
    assert info["command"]["environment"] == {
        "variables": [{"name": "DOCKET_BATCH", "value": "x"}]}


@pytest.mark.parametrize("bad", ["", "a/b", "a\\b", ".", "..", "x" * 256, "a\nb", "a\x7fb"])
def test_bad_task_ids_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="rejected by Mesos"):
        check_task_id(bad)


@pytest.mark.parametrize("good", ["x" * 255, "job.default.a.1.0.0", "a b", "é", "..."])
def test_mesos_accepts_these_ids(good: str) -> None:
    check_task_id(good)
