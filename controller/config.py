"""Settings of `docket run`, from flags, `DOCKET_*` environment variables and a YAML file.

Precedence is flags > environment > file > defaults, so an operator can keep a shared file and
override one value for one run. A bad value fails at start with a message naming the setting
and every place it can be set, never later in some thread. The CLI module calls
`add_arguments` and `settings_from_args`; nothing else here knows about argparse.
"""

from __future__ import annotations

import argparse
import contextvars
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from controller.metrics import parse_address

ENV_PREFIX = "DOCKET_"
ONE_WEEK = 7 * 24 * 3600.0

# The file values (and, in tests, the environment) of the Settings being built; a context
# variable because pydantic-settings builds its sources from the class, not from the call.
_sources: contextvars.ContextVar[tuple[Mapping[str, Any], Mapping[str, str] | None] | None] = (
    contextvars.ContextVar("docket_config_sources", default=None))


class ConfigError(ValueError):
    """A setting has a bad value, or the config file cannot be read."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    etcd_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:2379"],
        description="etcd endpoints, host:port, comma-separated")
    key_prefix: str = Field("/docket", description="prefix of every key Docket reads or writes")
    mesos_master: str = Field(
        "http://127.0.0.1:5050",
        description="Mesos master: host:port or http://host:port; masters in HA, tried in "
                    "turn: host1:5050,host2:5050; or their ZooKeeper: zk://host:port/path")
    framework_name: str = Field("docket", min_length=1, description="Mesos framework name")
    framework_role: str = Field("*", min_length=1, description="Mesos role offers come from")
    framework_principal: str | None = Field(None, description="Mesos principal")
    framework_secret_file: Path | None = Field(
        None, description="file holding the secret of framework_principal (HTTP basic "
                          "authentication to the master); the secret itself is never logged")
    framework_user: str | None = Field(
        None, description="user tasks run as on agents (default: the user running Docket)")
    failover_timeout: float = Field(
        ONE_WEEK, gt=0, description="seconds Mesos keeps tasks running while Docket is away")
    metrics_address: str = Field(":9102", description="listen address of /metrics, /healthz, "
                                                      "/readyz")
    resync_seconds: float = Field(300.0, gt=0, description="period of the full resync")
    workers: int = Field(4, ge=1, le=256, description="reconcile worker threads")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="lowest level logged")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON otherwise")
    decline_refuse_seconds: float = Field(
        3600.0, ge=0, description="how long Mesos holds back an offer Docket declined")
    gpu_resources: bool = Field(
        False, description="declare the GPU_RESOURCES capability, so that Mesos offers agents "
                           "with GPUs (needed by tasks that ask for gpus; other tasks may then "
                           "land on GPU agents too)")
    leader_lease_seconds: int = Field(
        15, ge=2, le=3600, description="TTL of the leader lease: a standby takes over this "
                                       "long after a leader dies (etcd's minimum is 2)")
    reconcile_seconds: float = Field(
        600.0, gt=0, description="period of the reconciliation of every task with Mesos "
                                 "(besides the one on each subscription)")

    # --- etcd TLS and authentication (etcdctl's flag names are accepted too) ---------------
    etcd_cacert: str | None = Field(
        None, description="CA certificate file verifying etcd's server certificate "
                          "(also --cacert; implies TLS)")
    etcd_cert: str | None = Field(None, description="client certificate file for etcd "
                                                    "(also --cert; with --key)")
    etcd_key: str | None = Field(None, description="client key file for etcd (also --key)")
    etcd_user: str | None = Field(
        None, repr=False, description="etcd user, name:password or name with "
                                      "--password-file (also --user)")
    etcd_password_file: str | None = Field(
        None, description="file holding the etcd user's password (also --password-file)")

    def etcd_security(self) -> Any:
        """The `controller.store.EtcdSecurity` of these settings (ConfigError if unusable)."""
        return etcd_security(self.etcd_cacert, self.etcd_cert, self.etcd_key, self.etcd_user,
                             self.etcd_password_file)

    @field_validator("etcd_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        return value

    @field_validator("etcd_endpoints")
    @classmethod
    def _check_endpoints(cls, value: list[str]) -> list[str]:
        if not value or any(not e for e in value):
            raise ValueError("needs at least one endpoint and no empty ones")
        for endpoint in value:
            host, sep, port = (endpoint.removeprefix("http://").removeprefix("https://")
                               .rpartition(":"))
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{endpoint!r} is not host:port")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/"):
            raise ValueError("must start with '/' and not end with '/'")
        return value

    @field_validator("mesos_master")
    @classmethod
    def _check_master(cls, value: str) -> str:
        # One master (`host:port` or `http://host:port`, pymesos' and Mesos' tools' forms),
        # a list of masters in HA, or their ZooKeeper group (controller/mesos/masters.py).
        from controller.mesos.masters import normalize

        return normalize(value)

    @field_validator("metrics_address")
    @classmethod
    def _check_metrics_address(cls, value: str) -> str:
        parse_address(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values, env = _sources.get() or ({}, None)
        if env is not None:
            env_settings = InitSettingsSource(settings_cls, _env_values(env))
        return init_settings, env_settings, InitSettingsSource(settings_cls, dict(file_values))


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    upper = {k.upper(): v for k, v in env.items()}
    return {name: upper[f"{ENV_PREFIX}{name.upper()}"] for name in Settings.model_fields
            if f"{ENV_PREFIX}{name.upper()}" in upper}


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config FILE` and one flag per setting. Unset flags stay None, so they never
    hide a value from the environment or the file."""
    parser.add_argument("--config", metavar="FILE", type=Path, default=None,
                        help="YAML file of settings (keys as the flags, '-' or '_')")
    for name, field in Settings.model_fields.items():
        # The flag's own default stays None (see above), so the setting's is spelt out here.
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            default = ",".join(default)
        shown = "" if default is None else f"; default: {default}"
        help_text = f"{field.description} (env {ENV_PREFIX}{name.upper()}{shown})"
        parser.add_argument(_flag(name), *ETCDCTL_FLAGS.get(name, ()), dest=name, default=None,
                            metavar=name.upper(), help=help_text)


# etcd TLS/auth settings: etcdctl's names, accepted besides --etcd-*.
ETCDCTL_FLAGS = {"etcd_cacert": ("--cacert",), "etcd_cert": ("--cert",), "etcd_key": ("--key",),
                 "etcd_user": ("--user",), "etcd_password_file": ("--password-file",)}


def etcd_security(cacert: str | None, cert: str | None, key: str | None, user: str | None,
                  password_file: str | None) -> Any:
    """An EtcdSecurity from etcdctl-style values; ConfigError names what is wrong (never the
    password)."""
    from controller.store.client import EtcdSecurity, split_user

    name, password = (None, None) if user is None else split_user(user)
    if password_file is not None:
        if name is None:
            raise ConfigError("an etcd password file needs a user (--user NAME)")
        try:
            password = Path(password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"etcd password file {password_file}: "
                              f"{exc.strerror or exc}") from None
    if name is not None and password is None:
        raise ConfigError(f"etcd user {name!r} needs a password: --user NAME:PASSWORD "
                          "or --password-file FILE")
    try:
        return EtcdSecurity(ca_cert=cacert, cert=cert, key=key, user=name, password=password)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must be a mapping of setting: value")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in Settings.model_fields:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        out[name] = value
    return out


def load_settings(flags: Mapping[str, Any] | None = None, config_file: Path | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings; `flags` are values given on the command line (None means unset).
    `env` replaces os.environ (tests); the file may also be named by DOCKET_CONFIG."""
    environ = os.environ if env is None else env
    if config_file is None and environ.get(f"{ENV_PREFIX}CONFIG"):
        config_file = Path(environ[f"{ENV_PREFIX}CONFIG"])
    file_values = read_config_file(config_file) if config_file is not None else {}
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    token = _sources.set((file_values, env))
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, given, file_values, config_file)) from None
    finally:
        _sources.reset(token)


def _describe(exc: ValidationError, given: Mapping[str, Any], file_values: Mapping[str, Any],
              config_file: Path | None) -> str:
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        if name in given:
            source = f"flag {_flag(name)}"
        elif name in file_values:
            source = f"config file {config_file}"
        else:
            source = f"env {ENV_PREFIX}{name.upper()}"
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown setting {name!r} ({source})")
            continue
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {name} ({source}): {message}, got {error['input']!r}")
    return "; ".join(lines)


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None
                       ) -> Settings:
    """Settings from arguments parsed by a parser that `add_arguments` set up."""
    flags = {name: getattr(args, name, None) for name in Settings.model_fields}
    return load_settings(flags, getattr(args, "config", None), env)
