"""The embedded Mesos with secret-typed variables, through its scheduler API: the task's
process gets the decoded value, the master's `/state` and `/tasks` never show it (its Task has
no command), and a secret holding a NUL byte is a TASK_ERROR with Mesos 1.11's message."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.localmesos import LocalMesos
from tests.localmesos.scheduler import RawScheduler, task_info

pytestmark = pytest.mark.integration

VALUE = b"pa55-w0rd for the agent"


@pytest.fixture
def sched(local_mesos: Callable[..., LocalMesos]) -> Iterator[tuple[LocalMesos, RawScheduler]]:
    lm = local_mesos()
    s = RawScheduler(lm.master_url)
    assert s.subscribe()["type"] == "SUBSCRIBED"
    yield lm, s
    s.close()


def secret_task(offer: dict[str, Any], task_id: str, command: str, data: bytes
                ) -> dict[str, Any]:
    info = task_info(offer, task_id, command)
    info["command"]["environment"] = {"variables": [
        {"name": "PLAIN", "value": "p"},
        {"name": "DB_PASSWORD", "type": "SECRET", "secret": {
            "type": "VALUE", "value": {"data": base64.b64encode(data).decode()}}}]}
    return info


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def test_the_task_gets_the_value_and_the_master_shows_none_of_it(
        sched: tuple[LocalMesos, RawScheduler]) -> None:
    lm, s = sched
    (offer, *_) = s.wait_offers()
    # Success proves the value reached the process: the command compares it.
    command = f'[ "$DB_PASSWORD" = "{VALUE.decode()}" ] && [ "$PLAIN" = p ]'
    status, body = s.launch(offer, secret_task(offer, "t1", command, VALUE))
    assert status == 202, body
    done = s.wait_update("t1", "TASK_FINISHED")
    assert done["state"] == "TASK_FINISHED"
    encoded = base64.b64encode(VALUE).decode()
    for path in ("/state", "/tasks", "/frameworks"):
        text = get(lm.master_url + path)
        assert "t1" in text  # the task is there...
        assert VALUE.decode() not in text and encoded not in text  # ...its secret is not
        assert "DB_PASSWORD" not in text


def test_a_nul_byte_is_a_task_error_as_in_mesos(sched: tuple[LocalMesos, RawScheduler]
                                                ) -> None:
    _lm, s = sched
    (offer, *_) = s.wait_offers()
    status, body = s.launch(offer, secret_task(offer, "t2", "true", b"a\0b"))
    assert status == 202, body
    error = s.wait_update("t2")
    assert error["state"] == "TASK_ERROR"
    assert error["message"] == (
        "Task's `CommandInfo` is invalid: Environment variable 'DB_PASSWORD' specifies a "
        "secret containing null bytes, which is not allowed in the environment")
    assert json.dumps(error).count("YQBi") == 0  # base64 of the value is not echoed
