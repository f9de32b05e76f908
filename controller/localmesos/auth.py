"""HTTP framework authentication, as a Mesos 1.11 master started with
`--authenticate_http_frameworks --http_framework_authenticators=basic --credentials=FILE`.

What Mesos does, and this module with it:
- The credentials file (src/credentials/credentials.hpp `credentials::read`) is JSON only,
  `{"credentials": [{"principal": ..., "secret": ...}]}` (the `Credentials` message of
  mesos.proto); 1.11 reads no plain-text "principal secret" lines. An empty file is refused
  ("must contain at least one credential"), as is HTTP framework authentication without a
  credentials file (the basic authenticator has nothing to check against).
- Only the scheduler endpoint is in the framework realm, `mesos-master-scheduler`
  (src/master/constants.hpp, master.cpp's routes). libprocess authenticates before the
  handler runs, so an unauthenticated request gets 401 even from a standby master.
- libprocess' basic authenticator (3rdparty/libprocess/src/authenticator.cpp) answers 401
  with `WWW-Authenticate: Basic realm="mesos-master-scheduler"` and no body to a missing
  header, a scheme other than `Basic`, bad base64, a decoded value that does not split on
  ':' into exactly two parts, an unknown principal or a wrong secret.
- An authenticated principal that differs from `FrameworkInfo.principal` is a validation
  error of the Call (src/master/validation.cpp): 400, not 403 (`check_principal`).
  A SUBSCRIBE without a principal gets the authenticated one.

The secrets are held here only; nothing logs them.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REALM = "mesos-master-scheduler"
CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}


class CredentialsError(ValueError):
    """The credentials file cannot be used (the master would exit at start)."""


@dataclass(frozen=True)
class Credentials:
    secrets: dict[str, str] = field(repr=False)

    @classmethod
    def read(cls, path: Path | str) -> Credentials:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(f"Failed to read credentials file '{path}': {exc}") from None
        if not text:
            raise CredentialsError(f"Credentials file '{path}' must contain at least one "
                                   "credential (see --credentials)")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"Invalid json format in '{path}': {exc}") from None
        entries = doc.get("credentials") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise CredentialsError(f"Failed to parse credentials in '{path}': expecting "
                                   "{\"credentials\": [{\"principal\": ..., \"secret\": ...}]}")
        secrets: dict[str, str] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("principal"), str):
                raise CredentialsError(f"Failed to parse credentials in '{path}': every "
                                       "credential needs a string 'principal'")
            secret = entry.get("secret", "")
            if not isinstance(secret, str):
                raise CredentialsError(f"Failed to parse credentials in '{path}': the "
                                       f"secret of '{entry['principal']}' is not a string")
            secrets[entry["principal"]] = secret
        return cls(secrets)

    def authenticate(self, authorization: str | None) -> str | None:
        """The principal the `Authorization` header proves, or None (answer 401)."""
        if authorization is None:
            return None
        parts = authorization.split(" ")
        if len(parts) != 2 or parts[0] != "Basic":
            return None
        try:
            decoded = base64.b64decode(parts[1], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        pair = decoded.split(":")
        if len(pair) != 2 or self.secrets.get(pair[0]) != pair[1] or pair[0] not in self.secrets:
            return None
        return pair[0]


def principal_mismatch(authenticated: str, info: dict[str, Any]) -> str | None:
    """validation.cpp's message when FrameworkInfo names another principal, else None."""
    declared = info.get("principal")
    if declared is None or declared == authenticated:
        return None
    return (f"Authenticated principal '{authenticated}' does not match principal "
            f"'{declared}' set in `FrameworkInfo`")
