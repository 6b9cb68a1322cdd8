"""Process settings from the environment, and from the ``KEY=VALUE`` file it may name."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from rotator.config.errors import ConfigError
from rotator.config.files import is_file, read_error, read_text


def _env(name: str) -> Any:
    """An optional setting read from the environment variable ``name``."""
    return Field(None, validation_alias=AliasChoices(name))


class Settings(BaseSettings):
    """Process settings. ``Settings()`` reads the environment; prefer :func:`load_settings`."""

    model_config = SettingsConfigDict(
        extra="ignore",
        frozen=True,
        # A validation error must never echo a value back (it could be the client secret).
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    authority_host: str = Field(
        "https://login.microsoftonline.com",
        validation_alias=AliasChoices("ROTATOR_AUTHORITY_HOST"),
    )
    graph_url: str = Field(
        "https://graph.microsoft.com/v1.0", validation_alias=AliasChoices("ROTATOR_GRAPH_URL")
    )
    vault_url: str | None = _env("ROTATOR_VAULT_URL")
    ca_bundle: Path | None = _env("ROTATOR_CA_BUNDLE")
    database_url: str = Field(
        "sqlite:///rotator.db", validation_alias=AliasChoices("ROTATOR_DATABASE_URL")
    )
    # password: the URL carries the database password; entra: each connection logs in
    # with an Entra token of the identity below (Azure Database for PostgreSQL).
    database_auth: Literal["password", "entra"] = Field(
        "password", validation_alias=AliasChoices("ROTATOR_DATABASE_AUTH")
    )
    config_path: Path | None = _env("ROTATOR_CONFIG")
    http_port: int = Field(9464, ge=1, le=65535, validation_alias=AliasChoices("ROTATOR_HTTP_PORT"))
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=AliasChoices("ROTATOR_LOG_FORMAT")
    )
    log_level: str = Field("INFO", validation_alias=AliasChoices("ROTATOR_LOG_LEVEL"))
    env_file: Path | None = _env("ROTATOR_ENV_FILE")
    # `rotator serve` answers HTTPS with this certificate chain and key (PEM files).
    tls_cert_file: Path | None = _env("ROTATOR_TLS_CERT_FILE")
    tls_key_file: Path | None = _env("ROTATOR_TLS_KEY_FILE")
    tenant_id: str | None = _env("AZURE_TENANT_ID")
    client_id: str | None = _env("AZURE_CLIENT_ID")
    client_secret: SecretStr | None = _env("AZURE_CLIENT_SECRET")

    @field_validator("vault_url", "ca_bundle", "config_path", "env_file", "tls_cert_file",
                     "tls_key_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("authority_host", "graph_url")
    @classmethod
    def _https_url(cls, value: str, info: ValidationInfo) -> str:
        try:
            parts = urlsplit(value)
            # .port raises on a port that is not a number from 0 to 65535.
            ok = parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
        except ValueError:
            ok = False
        if not ok:
            example = cls.model_fields[info.field_name or ""].default
            raise ValueError(f"must be an https:// URL such as {example}")
        return value.rstrip("/")

    @field_validator("ca_bundle")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not is_file(value):
            raise ValueError(
                f"file {str(value)!r} does not exist; set it to a PEM CA bundle or unset it")
        return value

    @field_validator("tls_cert_file", "tls_key_file")
    @classmethod
    def _pem_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not is_file(value):
            raise ValueError(f"file {str(value)!r} does not exist; set it to a PEM file "
                             "or unset it")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("ROTATOR_TLS_CERT_FILE and ROTATOR_TLS_KEY_FILE go together: "
                             "set both (HTTPS) or neither (HTTP)")
        return self

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]

    def required_tenant_id(self) -> str:
        """The tenant id, for everything that talks to the tenant; a ConfigError without it."""
        if not self.tenant_id:
            raise ConfigError(
                "AZURE_TENANT_ID is not set: rotator needs the tenant id of the apps it manages"
            )
        return self.tenant_id


# Environment names of the settings, in field order (aliases are the single source).
SETTINGS_ENV: Final[Mapping[str, str]] = MappingProxyType(
    {
        name: str(info.validation_alias.choices[0])
        for name, info in Settings.model_fields.items()
        if isinstance(info.validation_alias, AliasChoices)
    }
)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments are skipped, ``export`` is allowed."""
    try:
        text = read_text(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"ROTATOR_ENV_FILE names {path}, which cannot be read ({read_error(exc)}); "
            "point it at an existing KEY=VALUE file or unset it"
        ) from None
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(
                f"ROTATOR_ENV_FILE {path}:{lineno}: expected KEY=VALUE; fix or remove this line"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``environ`` (default: the process environment).

    Values from the file named by ``ROTATOR_ENV_FILE`` fill in what the
    environment does not set; the environment always wins.
    """
    env = dict(os.environ if environ is None else environ)
    env_file = env.get("ROTATOR_ENV_FILE", "").strip()
    if env_file:
        for key, value in read_env_file(Path(env_file)).items():
            if not env.get(key):
                env[key] = value
    data = {alias: env[alias] for alias in SETTINGS_ENV.values() if env.get(alias, "") != ""}
    try:
        # model_validate skips the settings sources, so only ``env`` is consulted.
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in err["loc"])
            # Our validators' own words, without pydantic's "Value error, " in front.
            msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
            problems.append(f"{loc}: {msg}" if loc else msg)
        if len(problems) == 1:
            raise ConfigError(f"invalid settings: {problems[0]}") from None
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None
