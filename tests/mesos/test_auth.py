"""The adapter authenticates to a master that requires it (Mesos' HTTP basic framework
authentication): pymesos' SUBSCRIBE and calls and the ack senders' calls all carry the
credentials; wrong ones are one clear error per attempt, retried with a growing delay; and the
secret is never logged. `docket run --framework-secret-file` reads it (secret.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from controller.localmesos import LocalMesos
from controller.mesos.adapter import MemoryFrameworkIdStore, MesosAdapter, MesosConfig
from controller.mesos.backend import LaunchRequest, Subscribed, TaskLaunched
from controller.mesos.secret import SecretFileError, read_secret
from tests.mesos.test_adapter import poll, template, update_of, wait_for

SECRET = "pa55-Zq81-never-logged"


@pytest.fixture
def secured(local_mesos: Callable[..., LocalMesos], tmp_path: Path) -> LocalMesos:
    path = tmp_path / "credentials"
    path.write_text(json.dumps({"credentials": [{"principal": "docket", "secret": SECRET}]}))
    return local_mesos(agents=1, simulate=True, authenticate_frameworks=True,
                       credentials=path)


@pytest.fixture
def adapters() -> Iterator[list[MesosAdapter]]:
    made: list[MesosAdapter] = []
    yield made
    for a in made:
        a.stop()


def start(lm: LocalMesos, made: list[MesosAdapter], secret: str) -> MesosAdapter:
    cfg = MesosConfig(master=lm.master_url, principal="docket", secret=secret,
                      tick_seconds=0.05, reconnect_delay_seconds=0.1)
    assert secret not in repr(cfg)
    adapter = MesosAdapter(cfg, MemoryFrameworkIdStore(), list)
    made.append(adapter)
    adapter.start()
    return adapter


def logged(events: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> str:
    return repr(events) + caplog.text


@pytest.mark.integration
def test_right_secret_subscribes_launches_and_acks(
        secured: LocalMesos, adapters: list[MesosAdapter],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        adapter = start(secured, adapters, SECRET)
        sub = wait_for(adapter, lambda e: isinstance(e, Subscribed))
        assert isinstance(sub, Subscribed)
        fw = secured.master.frameworks[sub.framework_id]
        assert fw.info["principal"] == "docket"
        task_id = "job.default.auth.1.0.0"
        adapter.launch([LaunchRequest(task_id, template("true"))])
        wait_for(adapter, lambda e: isinstance(e, TaskLaunched))
        wait_for(adapter, update_of(task_id, "TASK_FINISHED"))  # acknowledged on the way
        task = secured.master.all_tasks[(sub.framework_id, task_id)]
        poll(lambda: not task.pending)  # the ack senders' calls were accepted (no 401)
    assert SECRET not in logged(events, caplog)


@pytest.mark.integration
def test_wrong_secret_is_a_clear_error_retried_with_backoff(
        secured: LocalMesos, adapters: list[MesosAdapter],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + SECRET
    with structlog.testing.capture_logs() as events:
        began = time.monotonic()
        adapter = start(secured, adapters, wrong)

        def refusals() -> list[dict[str, Any]]:
            return [e for e in events if "refused the framework's credentials" in
                    str(e.get("event"))]

        poll(lambda: len(refusals()) >= 3, timeout=10)
        elapsed = time.monotonic() - began
    assert not adapter.connected and not secured.master.frameworks
    first = refusals()[0]
    assert first["log_level"] == "error" and first["master"] == \
        secured.master_url.removeprefix("http://")
    # restarts wait 0.1 s, then 0.2 s, ...: no tight loop
    assert elapsed >= 0.25 and len(refusals()) <= 4
    assert "Traceback" not in caplog.text and "Thread abort" not in caplog.text
    text = logged(events, caplog)
    assert wrong not in text and SECRET not in text


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert read_secret(path) == SECRET
    path.write_text("\n")
    with pytest.raises(SecretFileError, match=f"{path}: it is empty"):
        read_secret(path)
    with pytest.raises(SecretFileError, match="missing: cannot read it"):
        read_secret(tmp_path / "missing")


def test_docket_run_refuses_an_unreadable_secret_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from controller.cli import run as cli

    for name in [k for k in __import__("os").environ if k.startswith("DOCKET_")]:
        monkeypatch.delenv(name)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    missing = tmp_path / "nope"
    args = parser.parse_args(["--framework-principal", "docket",
                              "--framework-secret-file", str(missing)])
    assert cli.run(args) == 2
    assert f"framework secret file {missing}: cannot read it" in capsys.readouterr().err
    args = parser.parse_args(["--framework-secret-file", str(missing)])
    assert cli.run(args) == 2
    assert "needs --framework-principal" in capsys.readouterr().err
