"""The framework's secret, read from a file (`--framework-secret-file`), never from a flag or
the environment, so that it shows in no process list and no config dump.

The master checks it with HTTP basic authentication (Mesos' `--authenticate_http_frameworks`):
pymesos sends `Authorization: Basic base64(principal:secret)` on every scheduler call, and the
ack senders (acks.py) the same header. The secret itself is never logged: MesosConfig leaves it
out of its repr, and errors name the file, not its content.
"""

from __future__ import annotations

from pathlib import Path


class SecretFileError(ValueError):
    """The secret file cannot be used; the message names the file."""


def read_secret(path: Path | str) -> str:
    """The secret in `path`, without the trailing newline editors add; the whole file
    otherwise (a secret may hold spaces)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SecretFileError(f"framework secret file {path}: cannot read it: {reason}") \
            from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise SecretFileError(f"framework secret file {path}: it is empty")
    return secret
