"""Secrets on their way through Mesos: the TaskInfo JSON (Mesos 1.11's SECRET-typed
`Environment.Variable` with a VALUE `Secret`, bytes base64), the embedded master's validation
(common/validation.cpp validateEnvironment, stout's base64 for bytes fields), the agent's
decoded environment and what its `/state` shows of a queued task (JSON::Protobuf)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from controller.api.template import TaskTemplate
from controller.localmesos.agents import task_env
from controller.localmesos.state_json import environment_json
from controller.localmesos.validation import (
    ApiError,
    stout_b64decode,
    validate_call,
    validate_command,
    validate_environment,
)
from controller.mesos.offers import Offer, match
from controller.mesos.taskinfo import task_info, task_request
from tests.mesos.offers_util import offer_json

TASK_ID = "job.team.app.42.0.1"
REF = {"valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}


def place(template: TaskTemplate, **kw: Any) -> dict[str, Any]:
    offer = Offer.parse(offer_json("o1", "h1", ports=[(31000, 31010)]))
    (a,) = match([offer], [task_request(template, TASK_ID, "g")]).assignments
    return task_info(template, a, **kw)


def secret_var(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "type": "SECRET",
            "secret": {"type": "VALUE", "value": {"data": base64.b64encode(data).decode()}}}


def test_secret_env_is_a_secret_typed_variable_plain_ones_stay_as_they_were() -> None:
    t = TaskTemplate.model_validate({"command": "x", "env": {"A": "1", "DB_PASSWORD": REF}})
    info = place(t, secret_env={"DB_PASSWORD": "hunter2"}, extra_env={"DOCKET_X": "y"})
    assert info["command"]["environment"] == {"variables": [
        {"name": "A", "value": "1"}, {"name": "DOCKET_X", "value": "y"},
        secret_var("DB_PASSWORD", b"hunter2")]}
    assert "hunter2" not in str(info)  # only base64 on the wire
    assert validate_environment(info["command"]["environment"]) is None


def test_non_utf8_bytes_survive_the_trip() -> None:
    t = TaskTemplate.model_validate({"command": "x", "env": {"B": REF}})
    value = b"\xff\x00x"[::2]  # b"\xffx": not UTF-8
    info = place(t, secret_env={"B": value.decode("utf-8", "surrogateescape")})
    assert info["command"]["environment"]["variables"] == [secret_var("B", value)]
    assert task_env(info)["B"].encode("utf-8", "surrogateescape") == value


def test_a_secret_without_its_value_or_with_a_nul_cannot_be_launched() -> None:
    t = TaskTemplate.model_validate({"command": "x", "env": {"DB_PASSWORD": REF}})
    with pytest.raises(ValueError, match="secret 'db' key 'password' is not available"):
        place(t)
    with pytest.raises(ValueError, match="NUL"):
        place(t, secret_env={"DB_PASSWORD": "a\0b"})
    # The controller's own variable wins over a template's reference of the same name.
    info = place(t, extra_env={"DB_PASSWORD": "mine"})
    assert info["command"]["environment"]["variables"] == [
        {"name": "DB_PASSWORD", "value": "mine"}]


@pytest.mark.parametrize(("var", "expected"), [
    ({"name": "P", "type": "SECRET"},
     "Environment variable 'P' of type 'SECRET' must have a secret set"),
    ({**secret_var("P", b"x"), "value": "x"},
     "Environment variable 'P' of type 'SECRET' must not have a value set"),
    ({"name": "P", "type": "SECRET", "secret": {"type": "VALUE"}},
     "Environment variable 'P' specifies an invalid secret: Secret of type VALUE must have "
     "the 'value' field set"),
    ({"name": "P", "type": "SECRET", "secret": {"type": "REFERENCE", "reference": {
        "name": "n"}, "value": {"data": ""}}},
     "Environment variable 'P' specifies an invalid secret: Secret 'n' of type REFERENCE "
     "must not have the 'value' field set"),
    (secret_var("P", b"a\0b"), "Environment variable 'P' specifies a secret containing null "
                               "bytes, which is not allowed in the environment"),
    ({"name": "P", "secret": {"type": "VALUE", "value": {"data": "eA=="}}},
     "Environment variable 'P' of type 'VALUE' must have a value set"),
    ({"name": "P", "type": "UNKNOWN", "value": "x"},
     "Environment variable of type 'UNKNOWN' is not allowed"),
])
def test_master_validation_as_mesos_1_11(var: dict[str, Any], expected: str) -> None:
    assert validate_command({"environment": {"variables": [var]}}) == (
        f"Task's `CommandInfo` is invalid: {expected}")


def test_bytes_are_decoded_as_stout_does() -> None:
    assert stout_b64decode("aGk=") == b"hi"
    assert stout_b64decode("aG k\n") == b"hi"  # whitespace skipped, no padding needed
    assert stout_b64decode("aGk=garbage") == b"hi"  # stops at the padding
    assert stout_b64decode("a!") == "Invalid character '!'"


def accept_with(var: dict[str, Any]) -> dict[str, Any]:
    return {"type": "ACCEPT", "framework_id": {"value": "f"}, "accept": {
        "offer_ids": [{"value": "o"}], "operations": [{"type": "LAUNCH", "launch": {
            "task_infos": [{"name": "t", "task_id": {"value": "t"},
                            "agent_id": {"value": "a"}, "command": {
                                "value": "true", "environment": {"variables": [var]}}}]}}]}}


def test_undecodable_or_missing_data_is_refused_at_the_door() -> None:
    with pytest.raises(ApiError) as info:
        validate_call(accept_with({"name": "P", "type": "SECRET", "secret": {
            "type": "VALUE", "value": {"data": "no!"}}}))
    assert info.value.status == 400
    assert "Failed to base64 decode bytes field 'data': Invalid character '!'" in str(
        info.value)
    with pytest.raises(ApiError) as info:
        validate_call(accept_with({"name": "P", "type": "SECRET", "secret": {
            "type": "VALUE", "value": {}}}))
    assert "secret.value.data" in str(info.value)
    validate_call(accept_with(secret_var("P", b"ok")))


def test_the_agent_state_shows_a_queued_environment_as_json_protobuf() -> None:
    env = {"variables": [{"name": "A", "value": "1"},
                         {"name": "P", "type": "SECRET", "secret": {
                             "type": "VALUE", "value": {"data": "aGk"}}}]}
    assert environment_json(env) == {"variables": [
        {"name": "A", "type": "VALUE", "value": "1"},
        # stout re-encodes the decoded bytes: padded.
        {"name": "P", "type": "SECRET", "secret": {"type": "VALUE",
                                                   "value": {"data": "aGk="}}}]}
    assert task_env({"command": {"environment": env}}) == {"A": "1", "P": "hi"}
