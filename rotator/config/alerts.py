"""The ``[alerts]`` table: thresholds, digest, posture rules and the channels."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from rotator.config import checks
from rotator.config.checks import num, show
from rotator.config.files import is_file
from rotator.config.keys import Key, declared, key_field, key_spec
from rotator.config.problems import Problems, check_table_keys, suggest


class ChannelType(StrEnum):
    WEBHOOK = "webhook"
    TEAMS = "teams"
    SLACK = "slack"
    SMTP = "smtp"
    LOG = "log"
    # Mails each app's owners about their own apps (SMTP settings as the smtp channel).
    OWNERS = "owners"


class DigestMode(StrEnum):
    NONE = "none"
    DAILY = "daily"


DEFAULT_ALERT_THRESHOLDS: Final = (30.0, 14.0, 7.0, 1.0)


_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMAIL: Final = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_CHANNEL_NAME: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def _thresholds(value: object) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(
            f"must be a non-empty list of days such as [30, 14, 7, 1], got {show(value)}"
        )
    bad = [v for v in value if not 0 < v <= 3650]
    if bad:
        raise ValueError(
            f"every threshold must be more than 0 and at most 3650 days, got {num(bad[0])}"
        )
    days = [float(v) for v in value]
    if len(set(days)) != len(days):
        raise ValueError("lists a threshold twice; list each number of days once")
    return tuple(sorted(days, reverse=True))


def _env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"must be the name of an environment variable such as ROTATOR_SMTP_PASSWORD, "
            f"got {show(value)}"
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
        raise ValueError(f"must be an e-mail address, got {show(value)}")
    return value.strip()


def _emails(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(
            f'must be a list of e-mail addresses such as ["secops@example.com"], got {show(value)}'
        )
    return tuple(_email(v) for v in value)


def _file(value: object) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a file path, got {show(value)}")
    path = Path(value.strip())
    if not is_file(path):
        raise ValueError(f"file {show(str(path))} does not exist; point it at a PEM CA bundle")
    return path


def _channel_name(value: object) -> str:
    if not isinstance(value, str) or not _CHANNEL_NAME.fullmatch(value):
        raise ValueError(f"must be 1-64 letters, digits, '_', '.', ':' or '-', got {show(value)}")
    return value


_WEB: Final = frozenset({ChannelType.WEBHOOK, ChannelType.TEAMS, ChannelType.SLACK})
_SMTP: Final = frozenset({ChannelType.SMTP, ChannelType.OWNERS})
_TO: Final = frozenset({ChannelType.SMTP})
_OWNERS: Final = frozenset({ChannelType.OWNERS})


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """One ``[[alerts.channel]]``. Secrets are named by environment variable, never held.

    Each field declares its key (see :mod:`rotator.config.keys`); ``only`` names the
    channel types that take it.
    """

    type: ChannelType = field(
        metadata=key_spec(checks.choice(ChannelType),
                          help="webhook, teams, slack, smtp, log or owners")
    )
    name: str = field(
        metadata=key_spec(
            _channel_name,
            help="what the channel's sent-alert records are keyed on; default <type>-<n>",
        )
    )
    thresholds_days: tuple[float, ...] | None = key_field(
        None, _thresholds, help="this channel's expiry thresholds; unset: those of [alerts]"
    )
    timeout_seconds: float = key_field(
        10.0, checks.positive(unit="seconds", hi=300), help="how long one send may take"
    )
    url: str | None = key_field(
        None,
        _webhook_url,
        only=_WEB,
        help="the webhook URL; Slack and Teams webhook URLs are credentials: prefer url_env",
    )
    url_env: str | None = key_field(
        None, _env_name, only=_WEB, help="the environment variable that holds the webhook URL"
    )
    host: str | None = key_field(None, checks.non_empty, only=_SMTP, help="the SMTP server")
    port: int = key_field(
        587, checks.whole(1, 65535, unit="port number"), only=_SMTP, help="the SMTP port"
    )
    starttls: bool = key_field(
        True, checks.flag, only=_SMTP, help="whether to upgrade the connection with STARTTLS"
    )
    username: str | None = key_field(
        None, checks.non_empty, only=_SMTP, help="the SMTP user name; goes with password_env"
    )
    password_env: str | None = key_field(
        None, _env_name, only=_SMTP, help="the environment variable that holds the SMTP password"
    )
    sender: str | None = key_field(
        None, _email, name="from", only=_SMTP, help="the address the e-mail comes from"
    )
    to: tuple[str, ...] = key_field(
        (), _emails, only=_TO, help="the addresses the e-mail goes to"
    )
    fallback: str | None = key_field(
        None, _channel_name, only=_OWNERS,
        help="the channel that gets the alerts about apps with no owner to reach",
    )
    ca_file: Path | None = key_field(
        None, _file, only=_SMTP, help="a PEM CA bundle that verifies the SMTP server"
    )


@dataclass(frozen=True, slots=True)
class AlertsPolicy:
    """The ``[alerts]`` table: expiry thresholds, digest, posture rules and channels.

    Each field but ``channels`` declares its key (see :mod:`rotator.config.keys`).
    """

    thresholds_days: tuple[float, ...] = key_field(
        DEFAULT_ALERT_THRESHOLDS,
        _thresholds,
        help="the days before expiry at which a credential is alerted",
    )
    digest: DigestMode = key_field(
        DigestMode.DAILY,
        checks.choice(DigestMode),
        help="daily: one message per channel and day; none: one message per alert",
    )
    max_lifetime_days: int = key_field(
        365,
        checks.whole(1, 36500, unit="days"),
        help="a credential with a longer lifetime is a posture finding",
    )
    prefer_certificates: bool = key_field(
        False,
        checks.flag,
        help="an app whose newest credential is a client secret is a posture finding",
    )
    retrying_attempts: int = key_field(
        3,
        checks.whole(1, 1000, unit="attempts"),
        help='an active rotation with this many attempts (or a recorded error) is "retrying"',
    )
    lookback_days: float = key_field(
        7.0,
        checks.positive(unit="days", hi=3650),
        help="failed rotations and scans older than this are not alerted (first run, history)",
    )
    include_findings: bool = key_field(
        True, checks.flag, help="whether posture findings are sent with the alerts"
    )
    expected_sp_credentials: tuple[str, ...] = key_field(
        (),
        checks.guids,
        help="app ids or key ids whose credentials on a service principal of an app of this "
        "tenant are known and wanted (no finding)",
    )
    max_send_attempts: int = key_field(
        8,
        checks.whole(1, 1000, unit="attempts"),
        help="how many times an alert is sent to a channel before it is given up",
    )
    # The [[alerts.channel]] tables, parsed on their own.
    channels: tuple[ChannelPolicy, ...] = ()


_ALERTS_TABLE: Final[Mapping[str, Key]] = MappingProxyType(
    {k.name: k for k in declared(AlertsPolicy)}
)
_ALERTS_KEYS: Final = (*_ALERTS_TABLE, "channel")
_CHANNEL_TABLE: Final[Mapping[str, Key]] = MappingProxyType(
    {k.name: k for k in declared(ChannelPolicy)}
)
# The keys each type of channel takes.
_CHANNEL_KEYS: Final[Mapping[ChannelType, tuple[str, ...]]] = MappingProxyType(
    {
        kind: tuple(k.name for k in _CHANNEL_TABLE.values() if k.only is None or kind in k.only)
        for kind in ChannelType
    }
)


def parse_alerts(raw: object, problems: Problems) -> AlertsPolicy:
    lines = problems.lines
    if not isinstance(raw, dict):
        problems.add(lines.key(None, "alerts"), "alerts", "must be a table: write [alerts]")
        return AlertsPolicy()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "channel":
            continue
        line = lines.key("alerts", key)
        known = _ALERTS_TABLE.get(key)
        if known is None:
            problems.add(line, f"[alerts] key {key!r}", "unknown; " + suggest(key, _ALERTS_KEYS))
            continue
        try:
            values[known.attr] = known.check(value)
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
    for index, channel in enumerate(channels):
        if channel.fallback is not None and (
                channel.fallback not in names or channel.fallback == channel.name):
            problems.add(
                lines.key("alerts.channel", "fallback", index),
                f"[[alerts.channel]] {channel.name!r} key 'fallback'",
                f"{channel.fallback!r} is not the name of another channel; name the channel "
                "that gets alerts about apps nobody owns",
            )
    return AlertsPolicy(**values, channels=tuple(channels))


def _parse_channel(
    raw: object, index: int, per_type: dict[ChannelType, int], problems: Problems
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
        kind: ChannelType = _CHANNEL_TABLE["type"].check(raw["type"])
    except ValueError as exc:
        problems.add(lines.key(section, "type", index), f"{label} key 'type'", str(exc))
        return None
    label = f"{label} ({kind})"
    allowed = _CHANNEL_KEYS[kind]
    found = check_table_keys(
        raw, table=_CHANNEL_TABLE, allowed=allowed, problems=problems, section=section,
        index=index, label=label, what=f"{kind} channel",
        secret_keys=("password", "secret", "token"),
        secret_hint="put it in an environment variable and name that variable with password_env",
    )
    if found is None:
        return None
    fields_: dict[str, Any] = found
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
    if kind is ChannelType.OWNERS:
        missing = [k for k, f in (("host", "host"), ("from", "sender")) if f not in fields_]
        if missing:
            problems.add(header, label,
                         f"{', '.join(missing)} missing; an owners channel needs host and from")
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
