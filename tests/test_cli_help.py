"""Every `docket` subcommand's `--help` shows the defaults of its options."""

from __future__ import annotations

import argparse

import pytest

from controller.cli.main import build_parser
from controller.config import Settings


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _help(command: str) -> str:
    # A wide terminal, so that no value is wrapped across lines.
    return _subparsers()[command].format_help().replace("\n" + " " * 24, " ")


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_with_a_default_shows_it(command: str) -> None:
    parser = _subparsers()[command]
    text = _help(command)
    text = text[text.index("options:"):]  # not the usage line
    for action in parser._actions:
        default = action.default
        if (not action.option_strings or default is None or default is False
                or default == argparse.SUPPRESS or default == []):
            continue
        flag = action.option_strings[-1]
        line = text[text.index(flag):]
        line = line[:line.index("\n  -") if "\n  -" in line else len(line)]
        assert "default" in line, f"docket {command} {flag}: no default in --help: {line!r}"


def test_run_help_shows_each_settings_default() -> None:
    text = " ".join(_help("run").split())
    assert "default: 127.0.0.1:2379" in text
    assert "default: http://127.0.0.1:5050" in text
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if default is None or isinstance(default, list):
            continue
        assert f"default: {default})" in text, f"docket run --{name}: default {default!r} missing"


def test_local_mesos_help_shows_numeric_defaults() -> None:
    text = " ".join(_help("local-mesos").split())
    assert "Master port (default: 5050)" in text
    assert "GPUs per agent (default: 0.0)" in text
