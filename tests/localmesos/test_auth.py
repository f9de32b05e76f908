"""Framework authentication as a Mesos 1.11 master with `--authenticate_http_frameworks` and
the basic authenticator (controller/localmesos/auth.py), and the admin API off by default."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.cli import local_mesos as cli
from controller.localmesos import LocalMesos, LocalMesosConfig
from controller.localmesos.auth import Credentials, CredentialsError

Start = Callable[..., LocalMesos]
SECRET = "s3cr3t-value-9f1c"
REALM = 'Basic realm="mesos-master-scheduler"'


def basic(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": [
        {"principal": "docket", "secret": SECRET}, {"principal": "other", "secret": "x"}]}))
    return path


def post(lm: LocalMesos, body: dict[str, Any] | None, authorization: str | None = None,
         path: str = "/api/v1/scheduler") -> tuple[int, dict[str, str], bytes]:
    host, port = lm.master_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        conn.request("POST", path, json.dumps(body or {}).encode(), headers)
        resp = conn.getresponse()
        # a SUBSCRIBE answered 200 streams: read only what came with the headers
        data = resp.read() if resp.status != 200 else b""
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def subscribe_call(principal: str | None = "docket") -> dict[str, Any]:
    # A failover timeout, so that the framework outlives the connection `post` closes: with
    # none, the master removes it at once, racing the calls a test makes next.
    info: dict[str, Any] = {"user": "root", "name": "t", "failover_timeout": 60}
    if principal is not None:
        info["principal"] = principal
    return {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}


def test_credentials_file_is_mesos_json(tmp_path: Path, credentials: Path) -> None:
    creds = Credentials.read(credentials)
    assert creds.authenticate(basic("docket", SECRET)) == "docket"
    assert SECRET not in repr(creds)
    for bad in (None, basic("docket", "wrong"), basic("nobody", SECRET), "Bearer x",
                "Basic !!notbase64", basic("docket", SECRET + ":extra"), "basic " + basic(
                    "docket", SECRET).split()[1]):
        assert creds.authenticate(bad) is None, bad
    plain = tmp_path / "plain"
    plain.write_text("docket secret\n")  # 1.11 reads JSON only
    empty = tmp_path / "empty"
    empty.write_text("")
    for path, says in ((plain, "Invalid json"), (empty, "at least one credential"),
                       (tmp_path / "missing", "Failed to read")):
        with pytest.raises(CredentialsError, match=says):
            Credentials.read(path)


def test_authentication_needs_credentials() -> None:
    with pytest.raises(CredentialsError, match="mesos-master-scheduler"):
        LocalMesos(LocalMesosConfig(authenticate_frameworks=True))


@pytest.mark.integration
def test_scheduler_api_answers_401_403_and_400_as_mesos(local_mesos: Start,
                                                       credentials: Path) -> None:
    lm = local_mesos(simulate=True, authenticate_frameworks=True, credentials=credentials,
                     enable_faults=False)
    for authorization in (None, basic("docket", "wrong"), basic("nobody", SECRET), "Bearer x"):
        status, headers, body = post(lm, subscribe_call(), authorization)
        assert (status, headers.get("WWW-Authenticate"), body) == (401, REALM, b"")
    # the /master prefix is the same route
    assert post(lm, subscribe_call(), path="/master/api/v1/scheduler")[0] == 401
    # validation.cpp: authenticated as one principal, FrameworkInfo names another
    status, _, body = post(lm, subscribe_call("someone"), basic("docket", SECRET))
    assert status == 400
    assert body.decode() == ("Failed to validate scheduler::Call: Authenticated principal "
                             "'docket' does not match principal 'someone' set in "
                             "`FrameworkInfo`")
    # the admin API is off unless asked for
    status, _, body = post(lm, {}, path="/admin/masters/kill-leader")
    assert status == 403 and b"--enable-faults" in body
    assert lm.masters.nodes[0].running


@pytest.mark.integration
def test_authenticated_subscribe_gets_the_principal(local_mesos: Start,
                                                    credentials: Path) -> None:
    lm = local_mesos(simulate=True, authenticate_frameworks=True, credentials=credentials)
    assert post(lm, subscribe_call(None), basic("other", "x"))[0] == 200
    with lm.master.lock:
        infos = [fw.info for fw in lm.master.frameworks.values()]
    assert [i.get("principal") for i in infos] == ["other"]
    fid = next(iter(lm.master.frameworks))
    # a call of that framework authenticated as another principal: 400 (http.cpp)
    status, _, body = post(lm, {"type": "REVIVE", "framework_id": {"value": fid}},
                           basic("docket", SECRET))
    assert status == 400 and b"does not match principal 'other'" in body


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_cli_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--authenticate-frameworks", "--port", "0", "--agents", "0") == 1
    assert "needs --credentials FILE" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.write_text("")
    assert run_cli("--authenticate-frameworks", "--credentials", str(empty), "--port", "0",
                   "--agents", "0") == 1
    assert "at least one credential" in capsys.readouterr().err
