"""Settings from the environment and the per-app policy from a TOML file.

Everything is checked at load time, so a typo in the policy file stops the
service at start-up with a message that names the file, the line, the key and
the fix, instead of surfacing as a failed rotation weeks later.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
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
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from rotator.domain.credentials import CredentialKind
from rotator.domain.rotation import staging_name


class ConfigError(Exception):
    """Configuration that cannot be used; the message says where and what to do."""


# ============================================================================ settings


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
    config_path: Path | None = _env("ROTATOR_CONFIG")
    http_port: int = Field(9464, ge=1, le=65535, validation_alias=AliasChoices("ROTATOR_HTTP_PORT"))
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=AliasChoices("ROTATOR_LOG_FORMAT")
    )
    log_level: str = Field("INFO", validation_alias=AliasChoices("ROTATOR_LOG_LEVEL"))
    env_file: Path | None = _env("ROTATOR_ENV_FILE")
    tenant_id: str | None = _env("AZURE_TENANT_ID")
    client_id: str | None = _env("AZURE_CLIENT_ID")
    client_secret: SecretStr | None = _env("AZURE_CLIENT_SECRET")

    @field_validator("vault_url", "ca_bundle", "config_path", "env_file", mode="before")
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
        if value is not None and not _is_file(value):
            raise ValueError(
                f"file {str(value)!r} does not exist; set it to a PEM CA bundle or unset it")
        return value

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


def _is_file(path: Path) -> bool:
    """Like ``Path.is_file``, but a name the OS refuses (too long, NUL) is just not a file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_text(path: Path) -> str:
    """The file as text; a leading byte-order mark (Windows editors write one) is dropped.

    Raises OSError, or ValueError for a name the OS refuses or bytes that are not UTF-8.
    """
    return path.read_text(encoding="utf-8-sig")


def _read_error(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"it is not UTF-8 text: byte {exc.start} is {exc.object[exc.start]:#04x}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments are skipped, ``export`` is allowed."""
    try:
        text = _read_text(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"ROTATOR_ENV_FILE names {path}, which cannot be read ({_read_error(exc)}); "
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
            problems.append(f"{loc}: {msg}")
        if len(problems) == 1:
            raise ConfigError(f"invalid settings: {problems[0]}") from None
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None


# ============================================================================ policy


class KeyType(StrEnum):
    RSA2048 = "RSA2048"
    RSA3072 = "RSA3072"
    RSA4096 = "RSA4096"
    EC_P256 = "EC_P256"


class KeyVaultFormat(StrEnum):
    PEM = "pem"
    PKCS12 = "pkcs12"


@dataclass(frozen=True, slots=True)
class AppPolicy:
    """Everything rotator needs to know about one managed app, fully resolved."""

    app_id: str  # lower-case GUID
    vault_url: str
    secret_name: str
    renew_before_days: float
    lifetime_days: int
    grace_hours: float
    verify_scope: str
    verify_successes: int
    verify_timeout_seconds: float
    # None: the same kind as the credential that is expiring.
    credential: CredentialKind | None
    key_type: KeyType
    certificate_subject: str
    key_vault_format: KeyVaultFormat
    expected_roles: tuple[str, ...] = ()

    @property
    def staging_secret_name(self) -> str:
        return staging_name(self.secret_name)


@dataclass(frozen=True, slots=True)
class AppDefaults:
    """The ``[defaults]`` table resolved against the built-in defaults."""

    vault_url: str | None
    renew_before_days: float
    lifetime_days: int
    grace_hours: float
    verify_scope: str
    verify_successes: int
    verify_timeout_seconds: float
    credential: CredentialKind | None
    key_type: KeyType
    certificate_subject: str
    key_vault_format: KeyVaultFormat
    expected_roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DaemonPolicy:
    scan_interval_minutes: float = 60
    reconcile_interval_seconds: float = 60
    max_concurrent_rotations: int = 8
    # Graph writes (addPassword, removePassword, ...) per minute, per process: keep it
    # below the tenant's budget (3,000 writes / 150 s per app, 18,000 / 5 min per tenant)
    # divided by the number of replicas.
    graph_writes_per_minute: float = 600
    # How long a process owns a rotation it works on before another may take it over.
    lease_seconds: float = 300


class ChannelType(StrEnum):
    WEBHOOK = "webhook"
    TEAMS = "teams"
    SLACK = "slack"
    SMTP = "smtp"
    LOG = "log"


class DigestMode(StrEnum):
    NONE = "none"
    DAILY = "daily"


DEFAULT_ALERT_THRESHOLDS: Final = (30.0, 14.0, 7.0, 1.0)


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """One ``[[alerts.channel]]``. Secrets are named by environment variable, never held."""

    type: ChannelType
    name: str
    # None: the ``[alerts]`` thresholds apply.
    thresholds_days: tuple[float, ...] | None = None
    timeout_seconds: float = 10.0
    # webhook, teams, slack: the URL, or the environment variable that holds it
    # (Slack and Teams webhook URLs are credentials: prefer url_env).
    url: str | None = None
    url_env: str | None = None
    # smtp
    host: str | None = None
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password_env: str | None = None
    sender: str | None = None
    to: tuple[str, ...] = ()
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class AlertsPolicy:
    """The ``[alerts]`` table: expiry thresholds, digest, posture rules and channels."""

    thresholds_days: tuple[float, ...] = DEFAULT_ALERT_THRESHOLDS
    digest: DigestMode = DigestMode.DAILY
    max_lifetime_days: int = 365
    prefer_certificates: bool = False
    # An active rotation with this many attempts (or a recorded error) is "retrying".
    retrying_attempts: int = 3
    # Failed rotations and scans older than this are not alerted (first run, history).
    lookback_days: float = 7.0
    include_findings: bool = True
    max_send_attempts: int = 8
    channels: tuple[ChannelPolicy, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    defaults: AppDefaults
    daemon: DaemonPolicy
    apps: Mapping[str, AppPolicy] = field(default_factory=dict)
    source: Path | None = None
    alerts: AlertsPolicy = field(default_factory=AlertsPolicy)

    def for_app(self, app_id: str) -> AppPolicy | None:
        return self.apps.get(app_id.strip().lower())

    @property
    def managed_app_ids(self) -> frozenset[str]:
        return frozenset(self.apps)


# ---------------------------------------------------------------- key table

_SECRET_NAME: Final = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_SECRET_NAME: Final = 127


def default_secret_name(app_id: str) -> str:
    return f"rotator-{app_id.lower()}"


@dataclass(frozen=True, slots=True)
class _Key:
    """One policy key: where it may appear, its built-in default and its check."""

    check: Callable[[object], Any]  # returns the parsed value or raises ValueError(hint)
    default: Any
    in_defaults: bool = True
    in_app: bool = True


def _num(value: float) -> str:
    """A number for a message; TOML integers can be too big for float or for str."""
    if isinstance(value, int):
        return _show_int(value)
    return f"{value:g}"


def _show_int(value: int) -> str:
    if abs(value) < 10**18:
        return str(value)
    return f"{'-' if value < 0 else ''}a {value.bit_length()}-bit integer"


def _number(lo: float, hi: float, *, unit: str) -> Callable[[object], float]:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number of {unit}, got {_show(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g} {unit}, got {_num(value)}")
        return float(value)

    return check


def _whole(lo: int, hi: int, *, unit: str) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number of {unit}, got {_show(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi} {unit}, got {_num(value)}")
        return value

    return check


def _positive(*, unit: str, hi: float) -> Callable[[object], float]:
    def check(value: object) -> float:
        result = _number(0, hi, unit=unit)(value)
        if result <= 0:
            raise ValueError(f"must be more than 0 {unit}, got {result:g}")
        return result

    return check


def _choice(enum: type[StrEnum]) -> Callable[[object], Any]:
    options = [e.value for e in enum]

    def check(value: object) -> Any:
        if isinstance(value, str):
            for member in enum:
                if member.value.lower() == value.strip().lower():
                    return member
        raise ValueError(f"must be one of {', '.join(options)}, got {_show(value)}")

    return check


def _scope(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a scope string, got {_show(value)}")
    if not value.endswith("/.default"):
        base = value.strip().rstrip("/")
        # Only a clean one-line value makes a useful suggestion; anything else would
        # spill control characters into the message.
        fix = (f"{base}/.default" if base.isprintable() and " " not in base and base
               else "api://<application id>/.default")
        raise ValueError(
            f"client-credentials scopes must end in /.default, got {value!r}; use e.g. {fix}"
        )
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {_show(value)}")
    return value.strip()


def _vault_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a URL string, got {_show(value)}")
    return check_vault_url(value)


_HOST_LABEL: Final = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_VAULT_HINT: Final = "must be an https:// Key Vault URL such as https://myvault.vault.azure.net"


def check_vault_url(value: str) -> str:
    """The vault's address, normalised: ``https://host[:port]``, host in lower case.

    One spelling per vault matters: two apps must not share a secret, and the SDK
    would send a path, query or credentials in the URL on to every request.
    """
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{_VAULT_HINT}, got {_show(value)}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not _valid_host(host) or port == 0:
        raise ValueError(f"{_VAULT_HINT}, got {_show(value)}")
    bracketed = f"[{host}]" if ":" in host else host
    address = f"https://{bracketed}" + (f":{port}" if port not in (None, 443) else "")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{_VAULT_HINT}, without a user name or password (rotator authenticates with "
            f"its own identity); use {address}"
        )
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(
            f"{_VAULT_HINT}: just the vault's address, without a path, query or fragment, "
            f"got {_show(value)}; use {address}"
        )
    return address


def _valid_host(host: str) -> bool:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(host) and all(_HOST_LABEL.fullmatch(label) for label in host.split("."))


def _secret_name(value: object) -> str:
    if not isinstance(value, str) or not _SECRET_NAME.fullmatch(value):
        raise ValueError(
            f"must be 1-{MAX_SECRET_NAME} letters, digits and dashes (Key Vault's rule), "
            f"got {_show(value)}"
        )
    staging = staging_name(value)
    if len(staging) > MAX_SECRET_NAME:
        raise ValueError(
            f"is {len(value)} characters; its staging secret {staging[:20]}…-next would exceed "
            f"{MAX_SECRET_NAME}, so use at most {MAX_SECRET_NAME - len(staging) + len(value)}"
        )
    return value


def _roles(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(r, str) and r.strip() for r in value):
        raise ValueError(f'must be a list of role names such as ["ReadOnly"], got {_show(value)}')
    return tuple(r.strip() for r in value)


_GUID: Final = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _app_id(value: object) -> str:
    if isinstance(value, str) and _GUID.fullmatch(value.strip()):
        return value.strip().lower()
    raise ValueError(
        "must be the application (client) id, a GUID like "
        f"00000000-0000-0000-0000-000000000000, got {_show(value)}"
    )


def _credential(value: object) -> CredentialKind:
    result: CredentialKind = _choice(CredentialKind)(value)
    return result


_SHOW_MAX: Final = 120


def _show(value: object) -> str:
    """A value for a message: its type and a repr kept short."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"int {_show_int(value)}"
    try:
        text = repr(value)
    except ValueError:  # a nested integer with more digits than str() allows
        text = "…"
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 1] + "…"
    return text if isinstance(value, str) else f"{type(value).__name__} {text}"


KEYS: Final[Mapping[str, _Key]] = MappingProxyType(
    {
        "app_id": _Key(_app_id, None, in_defaults=False),
        "secret_name": _Key(_secret_name, None, in_defaults=False),
        "vault_url": _Key(_vault_url, None),
        "renew_before_days": _Key(_positive(unit="days", hi=3650), 30.0),
        "lifetime_days": _Key(_whole(1, 3650, unit="days"), 180),
        "grace_hours": _Key(_number(0, 24 * 365, unit="hours"), 24.0),
        "verify_scope": _Key(_scope, "https://graph.microsoft.com/.default"),
        "verify_successes": _Key(_whole(1, 100, unit="successes"), 3),
        "verify_timeout_seconds": _Key(_positive(unit="seconds", hi=86_400), 600.0),
        "credential": _Key(_credential, None),
        "key_type": _Key(_choice(KeyType), KeyType.RSA2048),
        "certificate_subject": _Key(_text, "CN=rotator"),
        "key_vault_format": _Key(_choice(KeyVaultFormat), KeyVaultFormat.PEM),
        "expected_roles": _Key(_roles, ()),
        "scan_interval_minutes": _Key(
            _positive(unit="minutes", hi=7 * 24 * 60), 60.0, in_app=False
        ),
        "reconcile_interval_seconds": _Key(
            _positive(unit="seconds", hi=86_400), 60.0, in_app=False
        ),
        "max_concurrent_rotations": _Key(_whole(1, 1000, unit="rotations"), 8, in_app=False),
        "graph_writes_per_minute": _Key(
            _positive(unit="writes per minute", hi=100_000), 600.0, in_app=False
        ),
        "lease_seconds": _Key(_positive(unit="seconds", hi=86_400), 300.0, in_app=False),
    }
)
_DEFAULTS_KEYS: Final = tuple(k for k, spec in KEYS.items() if spec.in_defaults)
_APP_KEYS: Final = tuple(k for k, spec in KEYS.items() if spec.in_app)
_TOP_KEYS: Final = ("defaults", "app", "alerts")


# ---------------------------------------------------------------- locating lines


class _Lines:
    """Finds the line of a table or key in the policy text, for error messages."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        # (line number, table name, is array-of-tables) for every header.
        self._headers: list[tuple[int, str, bool]] = []
        for no, line in enumerate(self._lines, start=1):
            m = self._HEADER.match(line)
            if m:
                self._headers.append((no, m.group(1).strip().strip("\"'"), "[[" in line))

    def section(self, name: str, index: int = 0) -> tuple[int | None, int | None]:
        """(header line, line where the section ends) of the ``index``-th ``name`` table."""
        found = [i for i, (_, n, _) in enumerate(self._headers) if n == name]
        if index >= len(found):
            return None, None
        i = found[index]
        start = self._headers[i][0]
        end = self._headers[i + 1][0] if i + 1 < len(self._headers) else len(self._lines) + 1
        return start, end

    def key(self, section: str | None, key: str, index: int = 0) -> int | None:
        if section is None:
            start, end = 0, (self._headers[0][0] if self._headers else len(self._lines) + 1)
        else:
            header, stop = self.section(section, index)
            if header is None or stop is None:
                return None
            start, end = header, stop
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for no in range(start + 1 if section else 1, end):
            if pattern.match(self._lines[no - 1]):
                return no
        return start if section else None


# ---------------------------------------------------------------- loading


class _Problems:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)
        self.items: list[str] = []

    def add(self, line: int | None, where: str, message: str) -> None:
        loc = f"{self.path}:{line}" if line else str(self.path)
        self.items.append(f"{loc}: {where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            head = "1 problem" if count == 1 else f"{count} problems"
            raise ConfigError(f"policy file {self.path}: {head}:\n  " + "\n  ".join(self.items))


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known keys: " + ", ".join(allowed)


def empty_policy(settings: Settings | None = None) -> Policy:
    vault = settings.vault_url if settings is not None else None
    return Policy(
        defaults=_builtin_defaults(vault), daemon=DaemonPolicy(), apps=MappingProxyType({})
    )


def _builtin_defaults(vault_url: str | None) -> AppDefaults:
    values = {k: KEYS[k].default for k in _DEFAULTS_KEYS if KEYS[k].in_app}
    values["vault_url"] = vault_url
    return AppDefaults(**values)


def load_policy(path: str | os.PathLike[str] | None, settings: Settings) -> Policy:
    """The policy in the TOML file at ``path``; no path means nothing is managed."""
    if path is None or str(path) == "":
        policy = empty_policy(settings)
        if settings.vault_url is not None:
            try:
                check_vault_url(settings.vault_url)
            except ValueError as exc:
                raise ConfigError(f"ROTATOR_VAULT_URL {exc}") from None
        return policy
    file = Path(path)
    try:
        text = _read_text(file)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"policy file {file} cannot be read ({_read_error(exc)}); set ROTATOR_CONFIG to the "
            "path of a readable TOML policy file, or unset it to manage no apps"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"policy file {file} is not valid TOML: {exc}; fix the syntax there"
        ) from None
    except ValueError:
        # tomllib lets int() refuse a number with more digits than Python converts.
        long_number = re.search(r"\d{4301}", text)
        where = (
            f" (at line {text.count(chr(10), 0, long_number.start()) + 1})" if long_number else ""
        )
        raise ConfigError(
            f"policy file {file} is not valid TOML: a number has too many digits{where}; "
            "no setting needs more than a few, fix the number there"
        ) from None
    return _parse(file, text, data, settings)


def _parse(file: Path, text: str, data: Mapping[str, Any], settings: Settings) -> Policy:
    problems = _Problems(file, text)
    lines = problems.lines

    for key, value in data.items():
        if key not in _TOP_KEYS:
            hint = (
                "unknown; the file has a [defaults] table, [[app]] tables and an [alerts] "
                "table; " + _suggest(key, _TOP_KEYS)
            )
            if isinstance(value, dict) and value and all(k in _DEFAULTS_KEYS for k in value):
                # e.g. a [daemon] table: its settings are real, they just live in [defaults].
                hint = f"unknown; {', '.join(value)} belong in [defaults]: move them there"
            problems.add(
                lines.key(None, key) or lines.section(key)[0], f"top-level key {key!r}", hint
            )

    # ---- [defaults]
    raw_defaults = data.get("defaults", {})
    resolved: dict[str, Any] = {k: KEYS[k].default for k in _DEFAULTS_KEYS}
    # Defaults that were set but are wrong: reported once, where they are set, and not
    # again for every app that inherits them.
    broken: set[str] = set()
    env_vault = settings.vault_url
    if env_vault is not None:
        try:
            resolved["vault_url"] = check_vault_url(env_vault)
        except ValueError as exc:
            problems.add(None, "ROTATOR_VAULT_URL", str(exc))
            broken.add("vault_url")
    if not isinstance(raw_defaults, dict):
        problems.add(lines.key(None, "defaults"), "defaults", "must be a table: write [defaults]")
        raw_defaults = {}
    for key, value in raw_defaults.items():
        line = lines.key("defaults", key)
        if key not in KEYS:
            problems.add(
                line, f"[defaults] key {key!r}", "unknown; " + _suggest(key, _DEFAULTS_KEYS)
            )
            continue
        if not KEYS[key].in_defaults:
            problems.add(
                line, f"[defaults] key {key!r}", "is per app; move it into an [[app]] table"
            )
            continue
        try:
            resolved[key] = KEYS[key].check(value)
            broken.discard(key)
        except ValueError as exc:
            problems.add(line, f"[defaults] key {key!r}", str(exc))
            broken.add(key)
    lifetimes_known = not {"renew_before_days", "lifetime_days"} & broken
    if lifetimes_known and resolved["renew_before_days"] >= resolved["lifetime_days"]:
        problems.add(
            lines.key("defaults", "renew_before_days"),
            "[defaults] key 'renew_before_days'",
            f"must be less than lifetime_days ({resolved['lifetime_days']}), or every new "
            "credential would be due at once; lower it or raise lifetime_days",
        )
    defaults = AppDefaults(**{k: resolved[k] for k in _DEFAULTS_KEYS if KEYS[k].in_app})
    daemon = DaemonPolicy(**{k: resolved[k] for k in _DEFAULTS_KEYS if not KEYS[k].in_app})

    # ---- [[app]]
    raw_apps = data.get("app", [])
    if not isinstance(raw_apps, list):
        problems.add(
            lines.section("app")[0], "app", "must be an array of tables: write [[app]] per app"
        )
        raw_apps = []
    apps: dict[str, AppPolicy] = {}
    app_lines: dict[str, int | None] = {}
    # (vault, lower-case secret name) -> (app id, "secret" or "staging secret", name)
    secret_owner: dict[tuple[str, str], tuple[str, str, str]] = {}
    for index, raw in enumerate(raw_apps):
        header = lines.section("app", index)[0]
        label = f"[[app]] #{index + 1}"
        if not isinstance(raw, dict):
            problems.add(header, label, "must be a table")
            continue
        raw_id = raw.get("app_id")
        if isinstance(raw_id, str) and _GUID.fullmatch(raw_id.strip()):
            # Checked before the rest so a duplicate shows even when both copies have errors.
            norm_id = raw_id.strip().lower()
            if norm_id in app_lines:
                problems.add(
                    lines.key("app", "app_id", index),
                    f"{label} key 'app_id'",
                    f"{norm_id} is already configured at line {app_lines[norm_id]}; "
                    "merge the two [[app]] tables into one",
                )
                continue
            app_lines[norm_id] = header
        app = _parse_app(raw, index, label, defaults, broken, problems)
        if app is None:
            continue
        # Key Vault names ignore case, and each app also writes "<name>-next": an app whose
        # staging secret is another app's secret would hand that app's consumers an
        # unproven credential of the wrong app.
        mine = ((app.secret_name, "secret"), (app.staging_secret_name, "staging secret"))
        clash = next(
            ((n, role, secret_owner[(app.vault_url, n.lower())]) for n, role in mine
             if (app.vault_url, n.lower()) in secret_owner),
            None,
        )
        if clash is not None:
            name, role, (owner, their_role, theirs) = clash
            spelt = f" (spelt {theirs!r}; Key Vault names ignore case)" if theirs != name else ""
            problems.add(
                lines.key("app", "secret_name", index),
                f"{label} key 'secret_name'",
                f"its {role} {name!r} in {app.vault_url} is already the {their_role} of app "
                f"{owner}{spelt}; give each app its own secret_name",
            )
            continue
        for name, role in mine:
            secret_owner[(app.vault_url, name.lower())] = (app.app_id, role, name)
        apps[app.app_id] = app
    alerts = _parse_alerts(data.get("alerts", {}), problems)
    problems.raise_if_any()
    return Policy(
        defaults=defaults, daemon=daemon, apps=MappingProxyType(apps), source=file, alerts=alerts
    )


def _parse_app(
    raw: Mapping[str, Any],
    index: int,
    label: str,
    defaults: AppDefaults,
    broken_defaults: set[str],
    problems: _Problems,
) -> AppPolicy | None:
    lines = problems.lines
    header = lines.section("app", index)[0]
    values: dict[str, Any] = {
        k: getattr(defaults, k) for k in _APP_KEYS if k not in ("app_id", "secret_name")
    }
    ok = True
    for key, value in raw.items():
        line = lines.key("app", key, index)
        if key not in KEYS:
            problems.add(line, f"{label} key {key!r}", "unknown; " + _suggest(key, _APP_KEYS))
            ok = False
            continue
        if not KEYS[key].in_app:
            problems.add(
                line, f"{label} key {key!r}", "applies to the daemon; move it into [defaults]"
            )
            ok = False
            continue
        try:
            values[key] = KEYS[key].check(value)
        except ValueError as exc:
            problems.add(line, f"{label} key {key!r}", str(exc))
            ok = False
    if "app_id" not in raw:
        problems.add(header, label, 'app_id is missing; add app_id = "<application (client) id>"')
        return None
    if not ok:
        return None
    app_id: str = values["app_id"]
    label = f"{label} ({app_id})"
    if {k for k in broken_defaults if k not in raw}:
        return None  # it inherits a default that is wrong, which is already reported
    if values["vault_url"] is None:
        problems.add(
            header,
            f"{label} key 'vault_url'",
            "no Key Vault is configured; set vault_url here or in [defaults], "
            "or set ROTATOR_VAULT_URL",
        )
        return None
    if values["renew_before_days"] >= values["lifetime_days"]:
        where = "renew_before_days" if "renew_before_days" in raw else "lifetime_days"
        problems.add(
            lines.key("app", where, index),
            f"{label} key {where!r}",
            f"renew_before_days ({values['renew_before_days']:g}) must be less than "
            f"lifetime_days ({values['lifetime_days']}); lower one or raise the other",
        )
        return None
    values.setdefault("secret_name", default_secret_name(app_id))
    return AppPolicy(**values)


# ---------------------------------------------------------------- [alerts]

_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMAIL: Final = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_CHANNEL_NAME: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_ALERTS_KEYS: Final = (
    "thresholds_days",
    "digest",
    "max_lifetime_days",
    "prefer_certificates",
    "retrying_attempts",
    "lookback_days",
    "include_findings",
    "max_send_attempts",
    "channel",
)
_CHANNEL_COMMON: Final = ("type", "name", "thresholds_days", "timeout_seconds")
_CHANNEL_KEYS: Final[Mapping[ChannelType, tuple[str, ...]]] = MappingProxyType(
    {
        ChannelType.WEBHOOK: (*_CHANNEL_COMMON, "url", "url_env"),
        ChannelType.TEAMS: (*_CHANNEL_COMMON, "url", "url_env"),
        ChannelType.SLACK: (*_CHANNEL_COMMON, "url", "url_env"),
        ChannelType.SMTP: (
            *_CHANNEL_COMMON,
            "host",
            "port",
            "starttls",
            "username",
            "password_env",
            "from",
            "to",
            "ca_file",
        ),
        ChannelType.LOG: _CHANNEL_COMMON,
    }
)


def _thresholds(value: object) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(
            f"must be a non-empty list of days such as [30, 14, 7, 1], got {_show(value)}"
        )
    bad = [v for v in value if not 0 < v <= 3650]
    if bad:
        raise ValueError(
            f"every threshold must be more than 0 and at most 3650 days, got {_num(bad[0])}"
        )
    days = [float(v) for v in value]
    if len(set(days)) != len(days):
        raise ValueError("lists a threshold twice; list each number of days once")
    return tuple(sorted(days, reverse=True))


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_show(value)}")
    return value


def _env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"must be the name of an environment variable such as ROTATOR_SMTP_PASSWORD, "
            f"got {_show(value)}"
        )
    return value


def _webhook_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a URL string, got {type(value).__name__}")
    refusal = "must be an https:// URL (plain http only to a loopback address)"
    try:
        parts = urlsplit(value.strip())
        _ = parts.port  # raises on a port that is not a number from 0 to 65535
    except ValueError:
        raise ValueError(refusal) from None
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return value.strip()
    if parts.scheme == "http" and host in _LOOPBACK:
        return value.strip()
    # The URL itself is not echoed: a Slack or Teams webhook URL is a credential.
    raise ValueError(refusal)


def _email(value: object) -> str:
    if not isinstance(value, str) or not _EMAIL.fullmatch(value.strip()):
        raise ValueError(f"must be an e-mail address, got {_show(value)}")
    return value.strip()


def _emails(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(
            f'must be a list of e-mail addresses such as ["secops@example.com"], got {_show(value)}'
        )
    return tuple(_email(v) for v in value)


def _file(value: object) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a file path, got {_show(value)}")
    path = Path(value.strip())
    if not _is_file(path):
        raise ValueError(f"file {_show(str(path))} does not exist; point it at a PEM CA bundle")
    return path


def _channel_name(value: object) -> str:
    if not isinstance(value, str) or not _CHANNEL_NAME.fullmatch(value):
        raise ValueError(f"must be 1-64 letters, digits, '_', '.', ':' or '-', got {_show(value)}")
    return value


_CHANNEL_CHECKS: Final[Mapping[str, tuple[str, Callable[[object], Any]]]] = MappingProxyType(
    {
        # policy key -> (ChannelPolicy field, check)
        "name": ("name", _channel_name),
        "thresholds_days": ("thresholds_days", _thresholds),
        "timeout_seconds": ("timeout_seconds", _positive(unit="seconds", hi=300)),
        "url": ("url", _webhook_url),
        "url_env": ("url_env", _env_name),
        "host": ("host", _text),
        "port": ("port", _whole(1, 65535, unit="port number")),
        "starttls": ("starttls", _flag),
        "username": ("username", _text),
        "password_env": ("password_env", _env_name),
        "from": ("sender", _email),
        "to": ("to", _emails),
        "ca_file": ("ca_file", _file),
    }
)

_ALERTS_CHECKS: Final[Mapping[str, Callable[[object], Any]]] = MappingProxyType(
    {
        "thresholds_days": _thresholds,
        "digest": _choice(DigestMode),
        "max_lifetime_days": _whole(1, 36500, unit="days"),
        "prefer_certificates": _flag,
        "retrying_attempts": _whole(1, 1000, unit="attempts"),
        "lookback_days": _positive(unit="days", hi=3650),
        "include_findings": _flag,
        "max_send_attempts": _whole(1, 1000, unit="attempts"),
    }
)


def _parse_alerts(raw: object, problems: _Problems) -> AlertsPolicy:
    lines = problems.lines
    if not isinstance(raw, dict):
        problems.add(lines.key(None, "alerts"), "alerts", "must be a table: write [alerts]")
        return AlertsPolicy()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "channel":
            continue
        line = lines.key("alerts", key)
        check = _ALERTS_CHECKS.get(key)
        if check is None:
            problems.add(line, f"[alerts] key {key!r}", "unknown; " + _suggest(key, _ALERTS_KEYS))
            continue
        try:
            values[key] = check(value)
        except ValueError as exc:
            problems.add(line, f"[alerts] key {key!r}", str(exc))
    raw_channels = raw.get("channel", [])
    if not isinstance(raw_channels, list):
        problems.add(
            lines.key("alerts", "channel"),
            "[alerts] key 'channel'",
            "must be an array of tables: write [[alerts.channel]] per channel",
        )
        raw_channels = []
    channels: list[ChannelPolicy] = []
    names: dict[str, int | None] = {}
    per_type: dict[ChannelType, int] = {}
    for index, raw_channel in enumerate(raw_channels):
        channel = _parse_channel(raw_channel, index, per_type, problems)
        if channel is None:
            continue
        header = lines.section("alerts.channel", index)[0]
        if channel.name in names:
            problems.add(
                lines.key("alerts.channel", "name", index),
                f"[[alerts.channel]] #{index + 1} key 'name'",
                f"{channel.name!r} is already the name of the channel at line "
                f"{names[channel.name]}; give each channel its own name",
            )
            continue
        names[channel.name] = header
        channels.append(channel)
    return AlertsPolicy(**values, channels=tuple(channels))


def _parse_channel(
    raw: object, index: int, per_type: dict[ChannelType, int], problems: _Problems
) -> ChannelPolicy | None:
    lines = problems.lines
    section = "alerts.channel"
    header = lines.section(section, index)[0]
    label = f"[[alerts.channel]] #{index + 1}"
    if not isinstance(raw, dict):
        problems.add(header, label, "must be a table")
        return None
    if "type" not in raw:
        problems.add(
            header, label, 'type is missing; add type = "webhook" (or teams, slack, smtp, log)'
        )
        return None
    try:
        kind: ChannelType = _choice(ChannelType)(raw["type"])
    except ValueError as exc:
        problems.add(lines.key(section, "type", index), f"{label} key 'type'", str(exc))
        return None
    label = f"{label} ({kind})"
    allowed = _CHANNEL_KEYS[kind]
    fields_: dict[str, Any] = {}
    ok = True
    for key, value in raw.items():
        if key == "type":
            continue
        line = lines.key(section, key, index)
        if key in ("password", "secret", "token"):
            problems.add(
                line,
                f"{label} key {key!r}",
                "secrets never go in the policy file; put it in an environment variable "
                "and name that variable with password_env",
            )
            ok = False
            continue
        if key not in allowed:
            problems.add(
                line, f"{label} key {key!r}", f"not a {kind} channel key; " + _suggest(key, allowed)
            )
            ok = False
            continue
        target, check = _CHANNEL_CHECKS[key]
        try:
            fields_[target] = check(value)
        except ValueError as exc:
            problems.add(line, f"{label} key {key!r}", str(exc))
            ok = False
    if not ok:
        return None
    per_type[kind] = per_type.get(kind, 0) + 1
    fields_.setdefault("name", f"{kind.value}-{per_type[kind]}")
    web = kind in (ChannelType.WEBHOOK, ChannelType.TEAMS, ChannelType.SLACK)
    if web and ("url" in fields_) == ("url_env" in fields_):
        problems.add(
            header,
            label,
            "needs exactly one of url or url_env (the environment variable holding the "
            "URL; prefer it, a webhook URL is a credential)",
        )
        return None
    if kind is ChannelType.SMTP:
        missing = [
            k for k, f in (("host", "host"), ("from", "sender"), ("to", "to")) if f not in fields_
        ]
        if missing:
            problems.add(
                header,
                label,
                f"{', '.join(missing)} missing; an smtp channel needs host, from and to",
            )
            return None
        if ("username" in fields_) != ("password_env" in fields_):
            problems.add(
                header, label, "username and password_env go together; set both or neither"
            )
            return None
    return ChannelPolicy(type=kind, **fields_)
