"""A failed Mesos call is logged without its request body: pymesos' error for a non-2xx answer
ends with the whole JSON body, and an ACCEPT's carries SECRET environment values (base64)."""

from __future__ import annotations

import base64
import json

from controller.mesos.adapter import call_error


def test_a_failed_accept_is_logged_without_its_body() -> None:
    value = base64.b64encode(b"s3cret-value").decode()
    body = {"type": "ACCEPT", "accept": {"operations": [{"launch": {"task_infos": [{
        "command": {"environment": {"variables": [{
            "name": "DB_PASSWORD", "type": "SECRET",
            "secret": {"type": "VALUE", "value": {"data": value}}}]}}}]}}]}}
    # As pymesos' MesosSchedulerDriver._send raises it.
    exc = RuntimeError(f"Failed to send request 307: {b''}\n{json.dumps(body)}")
    logged = call_error(exc)
    assert logged == "Failed to send request 307: b''"
    assert value not in logged and "s3cret" not in logged
