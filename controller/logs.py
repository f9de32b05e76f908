"""structlog configuration and the loggers that tag lines with the object they are about.

Named `logs`, not `logging`, so that `import logging` inside this package still means the
standard library. Output is JSON lines when stdout is not a terminal (collected by a log
shipper) and key=value on a terminal (read by a human); timestamps are ISO 8601 UTC. Every line
about an object carries kind, namespace and name, and task_id where there is one.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]
LEVELS = ("debug", "info", "warning", "error", "critical")


def configure(level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process. `fmt="auto"` picks console on a terminal."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    out = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(out),
        # Caching would freeze the first configuration into loggers made at import time.
        cache_logger_on_first_use=False,
    )


def object_logger(kind: str, namespace: str, name: str, *,
                  task_id: str | None = None, **extra: Any) -> Any:
    """A logger whose every line names the object (and the task, if given)."""
    bound: dict[str, Any] = {"kind": kind, "namespace": namespace, "name": name, **extra}
    if task_id is not None:
        bound["task_id"] = task_id
    return structlog.get_logger("docket").bind(**bound)


def task_logger(logger: Any, task_id: str) -> Any:
    """`logger` with the task id bound too."""
    return logger.bind(task_id=task_id)
