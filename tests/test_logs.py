"""Log output: JSON lines off a terminal, key=value on one, object fields on every line."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest
import structlog

from controller.logs import configure, object_logger, task_logger


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure("info", "auto", stream=out)
    log = object_logger("Job", "default", "hello")
    task_logger(log, "job.default.hello.7.0.0").info("launched", cpus=0.1)
    line = json.loads(out.getvalue().strip())
    assert line["event"] == "launched"
    assert line["level"] == "info"
    assert (line["kind"], line["namespace"], line["name"]) == ("Job", "default", "hello")
    assert line["task_id"] == "job.default.hello.7.0.0"
    assert line["cpus"] == 0.1
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]


def test_console_on_a_terminal() -> None:
    out = Tty()
    configure("info", "auto", stream=out)
    object_logger("Job", "ns", "x", task_id="t1").info("hello")
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # drop the terminal colours
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert "hello" in text and "kind=Job" in text and "task_id=t1" in text


def test_console_forced_without_colours() -> None:
    out = io.StringIO()
    configure("debug", "console", stream=out)
    object_logger("Job", "ns", "x").debug("plain")
    assert "\x1b[" not in out.getvalue()
    assert "kind=Job" in out.getvalue() and "plain" in out.getvalue()


def test_level_filters() -> None:
    out = io.StringIO()
    configure("warning", "json", stream=out)
    log = structlog.get_logger("docket")
    log.info("hidden")
    log.warning("shown")
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["shown"]


def test_bad_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level 'loud'"):
        configure("loud")
