"""Settings of `docket run`: defaults, precedence flags > env > file > defaults, errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller.config import (
    ONE_WEEK,
    ConfigError,
    Settings,
    add_arguments,
    load_settings,
    settings_from_args,
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    s = load_settings(env={})
    assert s.etcd_endpoints == ["127.0.0.1:2379"]
    assert s.key_prefix == "/docket"
    assert s.mesos_master == "http://127.0.0.1:5050"
    assert s.framework_name == "docket"
    assert s.failover_timeout == ONE_WEEK == 604800
    assert s.metrics_address == ":9102"
    assert s.workers >= 1 and s.resync_seconds > 0


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "docket.yaml"
    cfg.write_text("workers: 2\nresync-seconds: 10\nkey_prefix: /from-file\n"
                   "etcd_endpoints: [a:1, b:2]\nlog_level: debug\n")
    env = {"DOCKET_WORKERS": "5", "DOCKET_RESYNC_SECONDS": "20", "OTHER": "x"}
    s = settings_from_args(parse(["--config", str(cfg), "--workers", "9"]), env=env)
    assert s.workers == 9  # flag beats env and file
    assert s.resync_seconds == 20  # env beats file
    assert s.key_prefix == "/from-file"  # file beats default
    assert s.etcd_endpoints == ["a:1", "b:2"]
    assert s.log_level == "debug"
    assert s.mesos_master == "http://127.0.0.1:5050"  # default


def test_env_list_is_comma_separated_and_config_file_from_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("framework_role: batch\n")
    s = load_settings(env={"DOCKET_ETCD_ENDPOINTS": "h1:2379, h2:2379",
                           "DOCKET_CONFIG": str(cfg)})
    assert s.etcd_endpoints == ["h1:2379", "h2:2379"]
    assert s.framework_role == "batch"


def test_flags_parse_lists_and_numbers() -> None:
    s = settings_from_args(parse(["--etcd-endpoints", "x:1,y:2", "--failover-timeout", "60",
                                  "--mesos-master", "http://m:5050/"]), env={})
    assert s.etcd_endpoints == ["x:1", "y:2"]
    assert s.failover_timeout == 60
    assert s.mesos_master == "http://m:5050"


@pytest.mark.parametrize(("given", "expected"), [
    ("127.0.0.1:5050", "http://127.0.0.1:5050"),
    ("mesos-master:5050/", "http://mesos-master:5050"),
    ("http://mesos-master:5050", "http://mesos-master:5050"),
])
def test_master_as_host_port_means_http(given: str, expected: str) -> None:
    # pymesos and Mesos' own tools accept a bare host:port; so does Docket.
    s = settings_from_args(parse(["--mesos-master", given]), env={})
    assert s.mesos_master == expected


def test_real_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKET_FRAMEWORK_NAME", "docket-test")
    assert load_settings().framework_name == "docket-test"
    assert Settings().framework_name == "docket-test"


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["--workers", "0"], {}, "invalid setting workers (flag --workers)"),
    (["--workers", "many"], {}, "invalid setting workers (flag --workers)"),
    ([], {"DOCKET_RESYNC_SECONDS": "-1"}, "invalid setting resync_seconds (env "
                                          "DOCKET_RESYNC_SECONDS)"),
    ([], {"DOCKET_KEY_PREFIX": "docket/"}, "key_prefix (env DOCKET_KEY_PREFIX): must start"),
    (["--mesos-master", "m"], {}, "mesos_master (flag --mesos-master): must be host:port"),
    (["--mesos-master", "ftp://m:5050"], {}, "must be host:port or an http:// URL"),
    (["--mesos-master", "m:99999"], {}, "must be host:port or an http:// URL"),
    (["--mesos-master", "http://m:5050/api"], {}, "must be host:port or an http:// URL"),
    (["--mesos-master", "https://m:5050"], {}, "TLS to the Mesos master is not supported"),
    ([], {"DOCKET_GPU_RESOURCES": "maybe"}, "gpu_resources (env DOCKET_GPU_RESOURCES)"),
    (["--reconcile-seconds", "0"], {}, "reconcile_seconds (flag --reconcile-seconds)"),
    (["--metrics-address", ":http"], {}, "metrics_address (flag --metrics-address)"),
    (["--etcd-endpoints", "nohost"], {}, "etcd_endpoints (flag --etcd-endpoints): 'nohost'"),
    (["--log-level", "loud"], {}, "invalid setting log_level (flag --log-level)"),
])
def test_bad_values_name_the_setting(argv: list[str], env: dict[str, str],
                                     expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_args(parse(argv), env=env)
    assert expected in str(err.value)


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_settings(config_file=missing, env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config_file=bad, env={})
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("wokers: 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'wokers'"):
        load_settings(config_file=unknown, env={})
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("workers: -2\n")
    with pytest.raises(ConfigError, match=r"invalid setting workers \(config file .*wrong.yaml"):
        load_settings(config_file=wrong, env={})
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(config_file=listed, env={})
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(config_file=empty, env={}).workers == Settings.model_fields[
        "workers"].default


def test_every_setting_has_a_flag() -> None:
    args = parse([])
    for name in Settings.model_fields:
        assert getattr(args, name) is None
