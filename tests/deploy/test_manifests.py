"""deploy/config, deploy/marathon, deploy/systemd: the example config has exactly the
settings of `docket run` and loads; the Marathon app and the systemd unit run `docket run`
with arguments and DOCKET_* variables that the real CLI and settings accept."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from controller.cli.main import build_parser
from controller.config import ENV_PREFIX, Settings, load_settings, settings_from_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG = DEPLOY / "config" / "docket.yaml"
SETTING_VARS = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}


def docket_settings(command: str, env: dict[str, str], **replace: str) -> Settings:
    """Parse a `.../docket run ...` command line as the real CLI does and build its Settings."""
    for old, new in replace.items():
        command = command.replace(old, new)
    argv = shlex.split(command)
    if argv[0] == "exec":
        argv = argv[1:]
    assert Path(argv[0]).name == "docket" and argv[1] == "run", argv
    args = build_parser().parse_args(argv[1:])
    return settings_from_args(args, env=env)


def test_example_config_lists_exactly_the_settings() -> None:
    data = yaml.safe_load(CONFIG.read_text())
    keys = {str(k).replace("-", "_") for k in data}
    assert keys == set(Settings.model_fields), (
        f"missing: {sorted(set(Settings.model_fields) - keys)}, "
        f"unknown: {sorted(keys - set(Settings.model_fields))}")


def test_example_config_loads() -> None:
    settings = load_settings(config_file=CONFIG, env={})
    assert len(settings.etcd_endpoints) == 3
    assert settings.mesos_master.startswith("http")
    assert settings.log_format == "json"
    assert settings.metrics_address == ":9102"


def test_marathon_app_runs_docket_with_valid_settings() -> None:
    app: dict[str, Any] = json.loads((DEPLOY / "marathon" / "docket.json").read_text())
    assert app["id"] == "/docket"
    assert app["instances"] == 1
    assert "docket run" in app["cmd"]
    assert set(app["env"]) <= SETTING_VARS, set(app["env"]) - SETTING_VARS
    settings = docket_settings(app["cmd"], app["env"], **{"$PORT0": "31000"})
    assert settings.metrics_address == ":31000"  # the port Marathon gives it
    assert settings.etcd_endpoints == app["env"]["DOCKET_ETCD_ENDPOINTS"].split(",")

    (check,) = app["healthChecks"]
    assert check["path"] == "/healthz"
    assert check["protocol"] in {"MESOS_HTTP", "HTTP"}
    assert 0 <= check["portIndex"] < len(app["portDefinitions"])
    assert check["gracePeriodSeconds"] > 0


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's syntax: [Section], Key=Value, repeatable keys, '#' and ';' comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {raw!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {raw!r} is not Key=Value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_runs_docket_hardened() -> None:
    unit = unit_file(DEPLOY / "systemd" / "docket.service")
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["User"] == ["docket"]
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["-/etc/docket/docket.env"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes"}.items():
        assert service[key] == [value], key
    (exec_start,) = service["ExecStart"]
    settings = docket_settings(exec_start, {}, **{"/etc/docket/docket.yaml": str(CONFIG)})
    assert settings == load_settings(config_file=CONFIG, env={})
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_env_file_sets_only_docket_settings() -> None:
    env = {}
    for line in (DEPLOY / "systemd" / "docket.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
        elif line.lstrip().startswith("# DOCKET_"):
            key = line.lstrip("# ").partition("=")[0]
            assert key in SETTING_VARS, f"commented example {key} is not a setting"
    assert set(env) <= SETTING_VARS, set(env) - SETTING_VARS
    load_settings(config_file=CONFIG, env=env)


def test_example_policy_is_valid_and_says_what_the_readme_says() -> None:
    from controller.api import decode_policy

    raw = (DEPLOY / "security" / "policy.yaml").read_bytes()
    policy = decode_policy(raw)
    team_a = policy.spec.namespaces["team-a"]
    assert team_a.role == "team-a"
    assert team_a.allowed_images == ["registry.example.com/team-a/*"]
    assert policy.spec.namespaces["team-b"].require_image is True
