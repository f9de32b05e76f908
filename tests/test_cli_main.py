"""The `docket` entry point: help, version and subcommand discovery."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controller.cli.main import main


def test_version_prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("docket 0.")


def test_no_subcommand_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: docket" in capsys.readouterr().err


@pytest.mark.integration
def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli.main", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "docket" in out.stdout
