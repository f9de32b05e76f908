"""Every check a scheduler call passes before the master acts on it, in one place and in
Mesos 1.11's order, with its messages (src/master/http.cpp `Master::Http::scheduler`,
src/master/validation.cpp, common/validation.cpp).

Mesos checks a call in stages, and so do we: the HTTP layer (`http.py`) checks the request
(method, content type, headers) and hands the parsed JSON to `validate_call` (the Call's
shape, required fields and sub-messages); the master then asks `framework_for_call` whether
the caller is the subscribed framework on its current stream, and, for what needs its state,
`subscribe_refusal`, `validate_offers`, `validate_task` and `dropped_role`. The stages that need
the master's state run under its lock; none of the functions here takes it or changes state.

An ApiError becomes the HTTP answer (status and text); the other checks return Mesos' message
for the master to deliver the way Mesos does (an ERROR event, a TASK_ERROR or TASK_DROPPED
update, or a call dropped with a warning).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from controller.localmesos.models import capability_types, framework_roles
from controller.localmesos.resources import ResourceError, Resources

if TYPE_CHECKING:
    from controller.localmesos.models import Agent, Framework, Offer


class ApiError(Exception):
    """A scheduler call refused before it reaches the master's logic: HTTP status + text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- identifiers and roles -------------------------------------------------------------------
def validate_id(value: str) -> str | None:
    """Mesos' common::validation::validateID: the error message, or None when valid."""
    if not value:
        return "ID must not be empty"
    if len(value) > 255:
        return "ID must not be greater than 255 characters"
    if value in (".", ".."):
        return f"'{value}' is disallowed"
    if any(ord(c) < 32 or ord(c) == 127 or c in "/\\" for c in value):
        return f"'{value}' contains invalid characters"
    return None


def stringify_set(items: set[str]) -> str:
    """A set as stout's stringify writes it in Mesos' messages."""
    return "{ " + ", ".join(sorted(items)) + " }"


def validate_role(role: str) -> str | None:
    """Mesos' roles::validate: the error message, or None when valid."""
    if role == "*":
        return None
    if role.startswith("/"):
        return f"Role '{role}' cannot start with a slash"
    if role.endswith("/"):
        return f"Role '{role}' cannot end with a slash"
    if "//" in role:
        return f"Role '{role}' cannot contain two adjacent slashes"
    components = [c for c in role.split("/") if c]
    if not components:
        return "Role names cannot be the empty string"
    for component in components:
        if component in (".", "..", "*"):
            return f"Role '{role}' cannot include '{component}' as a component"
        if component.startswith("-"):
            return f"Role component '{component}' is invalid because it starts with a dash"
        if any(c in "\t\n\v\f\r \b" for c in component):
            return (f"Role component '{component}' is invalid because it contains backspace "
                    "or whitespace")
    return None


def dropped_role(fw: Framework, roles: list[str]) -> tuple[str, str] | None:
    """Why Mesos drops a whole REVIVE or SUPPRESS (still answered 202): the first of its
    roles that is invalid or not one the framework subscribed with, and the reason."""
    for role in roles:
        error = validate_role(role)
        if error is None and role in fw.roles:
            continue
        return role, error or "not one of the framework's subscribed roles"
    return None


# --- SUBSCRIBE -------------------------------------------------------------------------------
def validate_framework(info: dict[str, Any]) -> str | None:
    """validation.cpp framework::validate of a SUBSCRIBE's FrameworkInfo: the refusal's
    ERROR message, or None."""
    multi_role = "MULTI_ROLE" in capability_types(info)
    roles = [str(r) for r in info.get("roles") or []]
    if multi_role and "role" in info:
        return "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
    if not multi_role and roles:
        return ("'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE "
                "capable")
    if multi_role:
        duplicates = {r for r in roles if roles.count(r) > 1}
        if duplicates:
            return f"'FrameworkInfo.roles' contains duplicate items: {stringify_set(duplicates)}"
        for role in roles:
            error = validate_role(role)
            if error:
                return f"'FrameworkInfo.roles' contains invalid role: {error}"
    else:
        error = validate_role(str(info.get("role", "*")))
        if error:
            return f"'FrameworkInfo.role' is not a valid role: {error}"
    fid = (info.get("id") or {}).get("value")
    if fid:
        error = validate_id(str(fid))
        if error:
            return error
    timeout = info.get("failover_timeout", 0.0)
    if isinstance(timeout, int | float) and not abs(timeout) * 1e9 < 2**63:
        return f"The framework failover_timeout ({timeout:g}) is invalid"
    return None


def subscribe_refusal(info: dict[str, Any], suppressed_roles: list[str],
                      removed_frameworks: Container[str]) -> str | None:
    """Why the master refuses a SUBSCRIBE that passed `validate_call` (answered, as in Mesos,
    with a 200 stream holding one ERROR), or None. Mesos' order: the FrameworkInfo, a
    removed framework, then the suppressed roles."""
    refusal = validate_framework(info)
    fid = (info.get("id") or {}).get("value")
    if refusal is None and fid and fid in removed_frameworks:
        refusal = "Framework has been removed"
    unknown = set(suppressed_roles) - set(framework_roles(info))
    if refusal is None and unknown:
        refusal = (f"Suppressed roles {stringify_set(unknown)} are not contained in "
                   "the set of roles")
    return refusal


# --- the caller ------------------------------------------------------------------------------
def framework_for_call(frameworks: dict[str, Framework], framework_id: str,
                       stream_id: str | None) -> Framework:
    """The framework a call other than SUBSCRIBE comes from, checked as http.cpp checks it:
    known, subscribed, and calling with its current stream's Mesos-Stream-Id."""
    fw = frameworks.get(framework_id)
    if fw is None:
        raise ApiError(400, "Framework cannot be found")
    if not fw.connected:
        raise ApiError(403, "Framework is not subscribed")
    if stream_id is None:
        raise ApiError(400, "All non-subscribe calls should include the 'Mesos-Stream-Id' "
                            "header")
    if fw.stream is None or stream_id != fw.stream.stream_id:
        raise ApiError(400, f"The stream ID '{stream_id}' included in this request didn't "
                            f"match the stream ID currently associated with framework ID "
                            f"{framework_id}")
    return fw


# --- ACCEPT: offers and tasks ----------------------------------------------------------------
def validate_offers(offers: dict[str, Offer], fw: Framework,
                    offer_ids: list[str]) -> str | None:
    """validation.cpp offer::validate of an ACCEPT's offers: the error, or None."""
    if not offer_ids:
        return "No offers specified"
    if len(set(offer_ids)) != len(offer_ids):
        return "Duplicate offers in an ACCEPT call"
    agent_id = None
    for offer_id in offer_ids:
        offer = offers.get(offer_id)
        if offer is None:
            return f"Offer {offer_id} is no longer valid"
        if offer.framework_id != fw.framework_id:
            return (f"Offer {offer_id} has invalid framework {offer.framework_id} while "
                    f"framework {fw.framework_id} is expected")
        if agent_id is not None and offer.agent_id != agent_id:
            return "Aggregated offers must belong to one single agent"
        agent_id = offer.agent_id
    return None


def validate_environment(environment: dict[str, Any]) -> str | None:
    """common::validation::validateEnvironment: a variable's value or secret, as its type
    (VALUE by default) wants, and no NUL byte in a secret's value (the environment cannot
    carry one). An unknown type name is an unset optional enum to Mesos' JSON parser, so the
    default."""
    for var in environment.get("variables") or []:
        name = str(var.get("name", ""))
        kind = var.get("type", "VALUE")
        if kind not in ("UNKNOWN", "VALUE", "SECRET"):
            kind = "VALUE"
        if kind == "UNKNOWN":
            return "Environment variable of type 'UNKNOWN' is not allowed"
        if kind == "VALUE":
            if "value" not in var:
                return f"Environment variable '{name}' of type 'VALUE' must have a value set"
            if "secret" in var:
                return (f"Environment variable '{name}' of type 'VALUE' must not have a "
                        "secret set")
            continue
        if "secret" not in var:
            return f"Environment variable '{name}' of type 'SECRET' must have a secret set"
        if "value" in var:
            return (f"Environment variable '{name}' of type 'SECRET' must not have a value "
                    "set")
        error = _validate_secret(var["secret"])
        if error:
            return f"Environment variable '{name}' specifies an invalid secret: {error}"
        if b"\0" in secret_data(var["secret"]):
            return (f"Environment variable '{name}' specifies a secret containing null "
                    "bytes, which is not allowed in the environment")
    return None


def validate_command(command: dict[str, Any]) -> str | None:
    """validation.cpp validateCommandInfo(TaskInfo): the task's environment."""
    error = validate_environment(command.get("environment") or {})
    return f"Task's `CommandInfo` is invalid: {error}" if error else None


def secret_data(secret: dict[str, Any]) -> bytes:
    """The bytes of a `Secret.value.data` (b"" when it has none); `validate_call` has
    refused data that does not decode."""
    data = (secret.get("value") or {}).get("data")
    if not isinstance(data, str):
        return b""
    decoded = stout_b64decode(data)
    return decoded if isinstance(decoded, bytes) else b""


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def stout_b64decode(text: str) -> bytes | str:
    """stout's base64::decode (3rdparty/stout/include/stout/base64.hpp), which Mesos' JSON
    parser uses for every `bytes` field: stops at the first '=', skips whitespace, and refuses
    any other character outside the alphabet; a trailing partial group yields what it can.
    The bytes, or the error message."""
    bits = 0
    nbits = 0
    out = bytearray()
    for c in text:
        if c == "=":
            break
        if c.isspace():
            continue
        index = _B64.find(c)
        if index < 0 or not c.isascii():
            return f"Invalid character '{c}'"
        bits = (bits << 6) | index
        nbits += 6
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
    return bytes(out)


def _validate_secret(secret: dict[str, Any]) -> str | None:
    """common::validation::validateSecret (Secret.type defaults to UNKNOWN: nothing to check)."""
    kind = secret.get("type")
    if kind == "REFERENCE":
        if "reference" not in secret:
            return "Secret of type REFERENCE must have the 'reference' field set"
        if "value" in secret:
            name = (secret.get("reference") or {}).get("name", "")
            return f"Secret '{name}' of type REFERENCE must not have the 'value' field set"
    elif kind == "VALUE":
        if "value" not in secret:
            return "Secret of type VALUE must have the 'value' field set"
        if "reference" in secret:
            return "Secret of type VALUE must not have the 'reference' field set"
    return None


def validate_health_check(hc: dict[str, Any]) -> str | None:
    """common::validation::validateHealthCheck of TaskInfo.health_check: its message (the
    master prefixes "Task uses invalid health check: "), or None. The type decides which of
    `command`, `http`, `tcp` must be there; `statuses` and the protocol are not checked (the
    built-in executors ignore `statuses`); the timings must not be negative, and
    `consecutive_failures` is not checked at all (0 kills at the first counted failure)."""
    kind = hc.get("type")
    if kind not in ("UNKNOWN", "COMMAND", "HTTP", "TCP"):
        # Absent, or a name HealthCheck.Type does not have: Mesos' JSON parser leaves an
        # optional enum it cannot resolve unset.
        return "HealthCheck must specify 'type'"
    if kind == "UNKNOWN":
        return "'UNKNOWN' is not a valid health check type"
    if kind == "COMMAND":
        command = hc.get("command")
        if not isinstance(command, dict):
            return "Expecting 'command' to be set for COMMAND health check"
        if "value" not in command:
            what = "'shell command'" if command.get("shell", True) else "'executable path'"
            return f"Command health check must contain {what}"
        error = validate_environment(command.get("environment") or {})
        if error:
            return f"Health check's `CommandInfo` is invalid: {error}"
    elif kind == "HTTP":
        http = hc.get("http")
        if not isinstance(http, dict):
            return "Expecting 'http' to be set for HTTP health check"
        if "scheme" in http and http["scheme"] not in ("http", "https"):
            return f"Unsupported HTTP health check scheme: '{http['scheme']}'"
        if "path" in http and not str(http["path"]).startswith("/"):
            return f"The path '{http['path']}' of HTTP health check must start with '/'"
    elif not isinstance(hc.get("tcp"), dict):
        return "Expecting 'tcp' to be set for TCP health check"
    for name in ("delay_seconds", "grace_period_seconds", "interval_seconds",
                 "timeout_seconds"):
        value = hc.get(name)
        if value is not None and _as_float(value) < 0.0:
            return f"Expecting '{name}' to be non-negative"
    return None


def _as_float(value: Any) -> float:
    """A proto double as Mesos' JSON parser reads it (a number, or a number in a string)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # the call was refused before this (`validate_call`)


def validate_task(fw: Framework, agent: Agent, role: str, info: dict[str, Any],
                  available: Resources) -> tuple[str | None, Resources]:
    """Mesos' task validation, in its order (validation.cpp: validateTask, then
    validateExecutor): the first error found, or the resources the task needs."""
    task_id = (info.get("task_id") or {}).get("value", "")
    error = validate_id(task_id)
    if error:
        return f"Task has an invalid TaskID: {error}", Resources()
    if task_id in fw.tasks:
        return f"Task has duplicate ID: {task_id}", Resources()
    if task_id in fw.unreachable_tasks:
        return f"Task reuses the ID of an unreachable task: {task_id}", Resources()
    agent_id = (info.get("agent_id") or {}).get("value")
    if agent_id != agent.agent_id:
        return (f"Task uses invalid agent {agent_id} while agent {agent.agent_id} is "
                "expected"), Resources()
    grace = (((info.get("kill_policy") or {}).get("grace_period") or {})
             .get("nanoseconds", 0))
    if grace < 0:
        return "Task's 'kill_policy.grace_period' must be non-negative", Resources()
    mct = (info.get("max_completion_time") or {}).get("nanoseconds", 0)
    if mct < 0:
        return "Task's `max_completion_time` must be non-negative", Resources()
    if "health_check" in info:
        error = validate_health_check(info["health_check"])
        if error:
            return f"Task uses invalid health check: {error}", Resources()
    if not info.get("resources"):
        return "Task uses no resources", Resources()
    try:
        wanted = Resources.from_json(info.get("resources"))
    except ResourceError as exc:
        return f"Task uses invalid resources: {exc}", Resources()
    if isinstance(info.get("command"), dict):
        error = validate_command(info["command"])
        if error:
            return error, Resources()
    if ("executor" in info) == ("command" in info):
        return ("Task should have at least one (but not both) of CommandInfo or "
                "ExecutorInfo present"), Resources()
    if "executor" in info:
        return "Custom executors are not supported by this embedded Mesos", Resources()
    if not available.contains(wanted):
        return (f"Total resources {wanted.allocated_string(role)} required by task and "
                f"its executor is more than available "
                f"{available.allocated_string(role)}"), Resources()
    return None, wanted


# --- the Call itself -------------------------------------------------------------------------
CALL_TYPES = {
    "UNKNOWN", "SUBSCRIBE", "TEARDOWN", "ACCEPT", "DECLINE", "ACCEPT_INVERSE_OFFERS",
    "DECLINE_INVERSE_OFFERS", "REVIVE", "KILL", "SHUTDOWN", "ACKNOWLEDGE",
    "ACKNOWLEDGE_OPERATION_STATUS", "RECONCILE", "RECONCILE_OPERATIONS", "MESSAGE", "REQUEST",
    "SUPPRESS", "UPDATE_FRAMEWORK",
}
# The sub-message each call type must carry (validation.cpp).
SUB_MESSAGE = {
    "SUBSCRIBE": "subscribe", "ACCEPT": "accept", "DECLINE": "decline",
    "ACCEPT_INVERSE_OFFERS": "accept_inverse_offers",
    "DECLINE_INVERSE_OFFERS": "decline_inverse_offers", "KILL": "kill",
    "SHUTDOWN": "shutdown", "ACKNOWLEDGE": "acknowledge",
    "ACKNOWLEDGE_OPERATION_STATUS": "acknowledge_operation_status", "RECONCILE": "reconcile",
    "RECONCILE_OPERATIONS": "reconcile_operations", "MESSAGE": "message", "REQUEST": "request",
    "UPDATE_FRAMEWORK": "update_framework",
}


def _complete_ack(call: dict[str, Any]) -> bool:
    """The common ACKNOWLEDGE, checked without the general walk below."""
    if len(call) != 3 or "type" not in call:
        return False
    fid, ack = call.get("framework_id"), call.get("acknowledge")
    if not isinstance(fid, dict) or "value" not in fid or not isinstance(ack, dict) \
            or "uuid" not in ack:
        return False
    agent, task = ack.get("agent_id"), ack.get("task_id")
    return isinstance(agent, dict) and "value" in agent and isinstance(task, dict) \
        and "value" in task


def _missing_required(call: dict[str, Any]) -> list[str]:
    """Required proto2 fields a call lacks (Mesos: 'Not initialized: ...')."""
    if _complete_ack(call):
        return []
    missing = []

    def need(obj: Any, path: str, *fields: str) -> None:
        if not isinstance(obj, dict):
            return
        for f in fields:
            if f not in obj:
                missing.append(f"{path}.{f}" if path else f)

    def ids(obj: Any, path: str, *fields: str) -> None:
        if isinstance(obj, dict):
            for f in fields:
                if f in obj:
                    need(obj[f], f"{path}.{f}" if path else f, "value")

    ids(call, "", "framework_id")
    sub = call.get("subscribe")
    if isinstance(sub, dict):
        need(sub, "subscribe", "framework_info")
        fi = sub.get("framework_info")
        need(fi, "subscribe.framework_info", "user", "name")
        ids(fi, "subscribe.framework_info", "id")
    kill = call.get("kill")
    need(kill, "kill", "task_id")
    ids(kill, "kill", "task_id", "agent_id")
    ack = call.get("acknowledge")
    need(ack, "acknowledge", "agent_id", "task_id", "uuid")
    ids(ack, "acknowledge", "agent_id", "task_id")
    for i, t in enumerate((call.get("reconcile") or {}).get("tasks") or []):
        need(t, f"reconcile.tasks[{i}]", "task_id")
    msg = call.get("message")
    need(msg, "message", "agent_id", "executor_id", "data")
    shut = call.get("shutdown")
    need(shut, "shutdown", "executor_id", "agent_id")
    accept = call.get("accept")
    if isinstance(accept, dict):
        for i, op in enumerate(accept.get("operations") or []):
            if op.get("type") == "LAUNCH":
                for j, t in enumerate((op.get("launch") or {}).get("task_infos") or []):
                    path = f"accept.operations[{i}].launch.task_infos[{j}]"
                    need(t, path, "name", "task_id", "agent_id")
                    command = t.get("command") if isinstance(t, dict) else None
                    env = (command or {}).get("environment") if isinstance(command, dict) \
                        else None
                    for k, var in enumerate((env or {}).get("variables") or []
                                            if isinstance(env, dict) else []):
                        var_path = f"{path}.command.environment.variables[{k}]"
                        need(var, var_path, "name")
                        secret = var.get("secret") if isinstance(var, dict) else None
                        if isinstance(secret, dict):
                            need(secret.get("reference"), f"{var_path}.secret.reference",
                                 "name")
                            need(secret.get("value"), f"{var_path}.secret.value", "data")
                    hc = t.get("health_check") if isinstance(t, dict) else None
                    if isinstance(hc, dict):
                        need(hc.get("http"), f"{path}.health_check.http", "port")
                        need(hc.get("tcp"), f"{path}.health_check.tcp", "port")
                        variables = ((hc.get("command") or {}).get("environment")
                                     or {}).get("variables") or []
                        for k, var in enumerate(variables):
                            need(var, f"{path}.health_check.command.environment"
                                      f".variables[{k}]", "name")
    return missing


# The message-typed fields of a Call, as far as the master reads them: {field: sub-schema}
# for a message, [sub-schema] for a repeated message, str for a string, [str] for repeated
# strings. Mesos' JSON-to-protobuf conversion refuses a value of the wrong JSON type (400).
_ID: dict[str, Any] = {"value": str}
_NUMBER = "number"  # a proto number: a JSON number, or a string holding one
_BYTES = "bytes"  # a proto bytes field: a string, base64 as stout decodes it
_ENVIRONMENT: dict[str, Any] = {"variables": [{
    "name": str, "value": str,
    "secret": {"reference": {"name": str, "key": str}, "value": {"data": _BYTES}}}]}
_HEALTH_CHECK: dict[str, Any] = {
    "delay_seconds": _NUMBER, "interval_seconds": _NUMBER, "timeout_seconds": _NUMBER,
    "consecutive_failures": _NUMBER, "grace_period_seconds": _NUMBER,
    "http": {"scheme": str, "path": str, "port": _NUMBER, "statuses": [_NUMBER]},
    "tcp": {"port": _NUMBER},
    "command": {"value": str, "arguments": [str],
                "environment": _ENVIRONMENT},
}
_CALL_SCHEMA: dict[str, Any] = {
    "framework_id": _ID,
    "subscribe": {"framework_info": {"id": _ID, "user": str, "name": str, "role": str,
                                     "roles": [str], "principal": str, "hostname": str,
                                     "capabilities": [{}]},
                  "suppressed_roles": [str]},
    "accept": {"offer_ids": [_ID], "operations": [{"launch": {"task_infos": [
        {"name": str, "task_id": _ID, "agent_id": _ID, "resources": [{"name": str}],
         "command": {"value": str, "environment": _ENVIRONMENT},
         "health_check": _HEALTH_CHECK}]}}], "filters": {}},
    "decline": {"offer_ids": [_ID], "filters": {}},
    "revive": {"roles": [str]},
    "suppress": {"roles": [str]},
    "kill": {"task_id": _ID, "agent_id": _ID, "kill_policy": {"grace_period": {}}},
    "shutdown": {"executor_id": _ID, "agent_id": _ID},
    "acknowledge": {"agent_id": _ID, "task_id": _ID, "uuid": str},
    "reconcile": {"tasks": [{"task_id": _ID, "agent_id": _ID}]},
    "message": {"agent_id": _ID, "executor_id": _ID, "data": str},
    "request": {},
}


def _shape_error(value: Any, schema: Any, path: str) -> str | None:
    if schema is str:
        return None if isinstance(value, str) else f"Expecting a string for '{path}'"
    if schema == _BYTES:
        if not isinstance(value, str):
            return f"Expecting a string for '{path}'"
        decoded = stout_b64decode(value)
        if isinstance(decoded, str):
            return f"Failed to base64 decode bytes field '{path.rsplit('.', 1)[-1]}': {decoded}"
        return None
    if schema == _NUMBER:
        # stout's parser takes a number, or a string that parses as one.
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return f"Expecting a number for '{path}'"
        if isinstance(value, str) and math.isnan(_as_float(value)):
            return f"Failed to parse '{value}' as a JSON number for '{path}'"
        return None
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"Expecting a JSON array for '{path}'"
        for i, item in enumerate(value):
            error = _shape_error(item, schema[0], f"{path}[{i}]")
            if error:
                return error
        return None
    if not isinstance(value, dict):
        return f"Expecting a JSON object for '{path}'"
    for name, sub in schema.items():
        if name in value:
            error = _shape_error(value[name], sub, f"{path}.{name}" if path else name)
            if error:
                return error
    return None


def validate_call(call: Any) -> dict[str, Any]:
    """Parse-level and semantic validation as Mesos does it; raises ApiError(400/501)."""
    if not isinstance(call, dict):
        raise ApiError(400, "Failed to convert JSON into Call protobuf: Expecting a JSON object")
    shape = _shape_error(call, _CALL_SCHEMA, "")
    if shape:
        raise ApiError(400, f"Failed to convert JSON into Call protobuf: {shape}")
    kind = call.get("type")
    if kind is not None and kind not in CALL_TYPES:
        raise ApiError(400, "Failed to convert JSON into Call protobuf: Failed to find enum "
                            f"for '{kind}'")
    missing = _missing_required(call)
    if missing:
        raise ApiError(400, "Failed to validate scheduler::Call: Not initialized: "
                            + ", ".join(missing))
    if kind is None:
        raise ApiError(400, "Failed to validate scheduler::Call: Expecting 'type' to be present")
    if kind == "SUBSCRIBE":
        if "subscribe" not in call:
            raise ApiError(400, "Failed to validate scheduler::Call: Expecting 'subscribe' to "
                                "be present")
        info_id = (call["subscribe"]["framework_info"].get("id") or {}).get("value")
        call_id = (call.get("framework_id") or {}).get("value")
        if info_id != call_id:
            raise ApiError(400, "Failed to validate scheduler::Call: 'framework_id' differs "
                                "from 'subscribe.framework_info.id'")
        return call
    if "framework_id" not in call:
        raise ApiError(400, "Failed to validate scheduler::Call: Expecting 'framework_id' to "
                            "be present")
    sub = SUB_MESSAGE.get(kind)
    if sub and sub not in call:
        raise ApiError(400, f"Failed to validate scheduler::Call: Expecting '{sub}' to be "
                            "present")
    if kind == "ACKNOWLEDGE":
        try:
            raw = base64.b64decode(call["acknowledge"]["uuid"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ApiError(400, "Failed to convert JSON into Call protobuf: Failed to parse "
                                "'acknowledge.uuid' as base64") from None
        # stout's UUID::fromBytes: 16 bytes whose version nibble boost knows (1 to 5).
        if len(raw) != 16 or not 1 <= raw[6] >> 4 <= 5:
            raise ApiError(400, "Failed to validate scheduler::Call: Not a valid UUID")
    if kind == "UPDATE_FRAMEWORK":
        # Well formed, but this embedded Mesos does not implement it (before the caller is
        # looked at, as it always was).
        raise ApiError(501, "UPDATE_FRAMEWORK is not supported by this embedded Mesos")
    return call
