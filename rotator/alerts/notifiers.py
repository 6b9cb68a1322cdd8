"""Channels that deliver a :class:`Message`: JSON webhook, Slack, Teams, SMTP e-mail, the log.

Every failure is a :class:`NotifierError` whose text is safe to show and store:
it names the host, never the URL (a Slack or Teams webhook URL is a
credential) and never a password.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import structlog

from rotator.alerts.compose import message_text
from rotator.alerts.formats import email_message, slack_payload, teams_payload, webhook_payload
from rotator.config import ChannelPolicy, ChannelType
from rotator.domain.alerts import Message

log = structlog.get_logger("rotator.alerts")


class NotifierError(Exception):
    """A channel refused or could not be reached; the message is safe to show."""


class Notifier(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def thresholds_days(self) -> tuple[float, ...] | None:
        """``None``: the ``[alerts]`` thresholds."""
        ...

    @property
    def timeout_seconds(self) -> float: ...

    async def send(self, message: Message) -> None:
        """Deliver or raise :class:`NotifierError`."""
        ...


class _Base:
    def __init__(self, channel: ChannelPolicy) -> None:
        self._channel = channel

    @property
    def name(self) -> str:
        return self._channel.name

    @property
    def type(self) -> str:
        return str(self._channel.type)

    @property
    def thresholds_days(self) -> tuple[float, ...] | None:
        return self._channel.thresholds_days

    @property
    def timeout_seconds(self) -> float:
        return self._channel.timeout_seconds


def _from_env(environ: Mapping[str, str], name: str, what: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise NotifierError(f"environment variable {name} ({what}) is not set")
    return value


class WebhookNotifier(_Base):
    """POSTs JSON to a URL: the generic webhook, Slack or Teams (by ``channel.type``)."""

    _FORMATS: Mapping[ChannelType, Callable[[Message], dict[str, Any]]] = {
        ChannelType.WEBHOOK: webhook_payload,
        ChannelType.SLACK: slack_payload,
        ChannelType.TEAMS: teams_payload,
    }

    def __init__(
        self,
        channel: ChannelPolicy,
        environ: Mapping[str, str] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(channel)
        self._environ = os.environ if environ is None else environ
        self._transport = transport

    def _url(self) -> str:
        if self._channel.url:
            return self._channel.url
        assert self._channel.url_env is not None
        return _from_env(self._environ, self._channel.url_env, "the webhook URL")

    def payload(self, message: Message) -> dict[str, Any]:
        return self._FORMATS[self._channel.type](message)

    async def send(self, message: Message) -> None:
        url = self._url()
        host = urlsplit(url).hostname or "?"
        body = self.payload(message)
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_seconds, transport=self._transport, follow_redirects=False
            ) as client:
                response = await client.post(url, json=body)
        except httpx.TimeoutException:
            raise NotifierError(
                f"{self.type} {host}: no answer within {self.timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise NotifierError(
                f"{self.type} {host}: {type(exc).__name__} ({_reason(exc)})"
            ) from None
        if response.status_code >= 300:
            raise NotifierError(
                f"{self.type} {host}: HTTP {response.status_code} {response.reason_phrase}: "
                f"{response.text[:200]!r}"
            )


def _reason(exc: BaseException) -> str:
    # httpx messages can carry the URL; name the OS-level cause instead.
    seen: set[int] = set()
    inner: BaseException | None = exc
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        if isinstance(inner, ConnectionResetError):
            return "connection reset"
        if isinstance(inner, socket.gaierror):
            return "host name not found"
        inner = inner.__cause__ or inner.__context__
    return "connection failed"


class SmtpNotifier(_Base):
    """E-mail through an SMTP relay: STARTTLS (verified) and login when configured."""

    def __init__(self, channel: ChannelPolicy, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(channel)
        self._environ = os.environ if environ is None else environ

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self._channel.ca_file is not None:
            ctx.load_verify_locations(cafile=str(self._channel.ca_file))
        return ctx

    def _send_blocking(self, message: Message) -> None:
        ch = self._channel
        assert ch.host is not None and ch.sender is not None
        password = (
            _from_env(self._environ, ch.password_env, "the SMTP password")
            if ch.password_env
            else None
        )
        mail = email_message(message, ch.sender, ch.to)
        with smtplib.SMTP(ch.host, ch.port, timeout=self.timeout_seconds) as smtp:
            smtp.ehlo()
            if ch.starttls:
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if ch.username and password is not None:
                smtp.login(ch.username, password)
            smtp.send_message(mail, from_addr=ch.sender, to_addrs=list(ch.to))

    async def send(self, message: Message) -> None:
        host = f"{self._channel.host}:{self._channel.port}"
        try:
            await asyncio.to_thread(self._send_blocking, message)
        except NotifierError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifierError(
                f"smtp {host}: login refused ({exc.smtp_code}); check username and "
                f"{self._channel.password_env}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise NotifierError(
                f"smtp {host}: {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
            ) from None
        except smtplib.SMTPRecipientsRefused:
            raise NotifierError(f"smtp {host}: every recipient was refused") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise NotifierError(f"smtp {host}: {exc}") from None
        except smtplib.SMTPException as exc:
            raise NotifierError(f"smtp {host}: {type(exc).__name__}") from None
        except TimeoutError:
            raise NotifierError(
                f"smtp {host}: no answer within {self.timeout_seconds:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise NotifierError(f"smtp {host}: TLS failed ({exc.reason or exc})") from None
        except OSError as exc:
            raise NotifierError(f"smtp {host}: {exc.strerror or type(exc).__name__}") from None


def _smtp_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:200]


class LogNotifier(_Base):
    """Writes the alerts to rotator's structured log (one event per alert)."""

    async def send(self, message: Message) -> None:
        for alert in message.alerts:
            log.warning(
                "alert",
                channel=self.name,
                alert_key=alert.key,
                severity=str(alert.severity),
                kind=str(alert.kind),
                subject=alert.subject,
                digest=message.digest,
                test=message.test,
            )
        if message.notes:
            log.warning("alert_notes", channel=self.name, notes=list(message.notes))


def build_notifiers(
    channels: Sequence[ChannelPolicy], environ: Mapping[str, str] | None = None
) -> list[Notifier]:
    out: list[Notifier] = []
    for channel in channels:
        if channel.type is ChannelType.OWNERS:
            continue  # one SmtpNotifier per owner, made by the alert pass from the inventory
        if channel.type is ChannelType.SMTP:
            out.append(SmtpNotifier(channel, environ))
        elif channel.type is ChannelType.LOG:
            out.append(LogNotifier(channel))
        else:
            out.append(WebhookNotifier(channel, environ))
    return out


__all__ = [
    "LogNotifier",
    "Notifier",
    "NotifierError",
    "SmtpNotifier",
    "WebhookNotifier",
    "build_notifiers",
    "message_text",
]
