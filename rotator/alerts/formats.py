"""Each channel's wire format for a :class:`Message`. Pure.

- generic webhook: rotator's own JSON (``schema`` ``rotator.alerts/v1``);
- Slack incoming webhook: ``{"text", "blocks"}`` (``text`` is the fallback for
  notifications; section blocks carry mrkdwn, at most 3,000 characters each);
- Microsoft Teams: a ``message`` with an Adaptive Card attachment, which both
  the Workflows "When a Teams webhook request is received" trigger (which
  accepts Adaptive Cards only) and the older incoming webhooks take;
- e-mail: a plain-text ``EmailMessage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from rotator.alerts.compose import digest_sections, message_text
from rotator.domain.alerts import Alert, Message, Severity

SCHEMA = "rotator.alerts/v1"
SLACK_TEXT_LIMIT = 3000
SLACK_MAX_BLOCKS = 50
_EMOJI = {Severity.CRITICAL: ":red_circle:", Severity.WARNING: ":warning:",
          Severity.INFO: ":information_source:"}
_TEAMS_COLOR = {Severity.CRITICAL: "Attention", Severity.WARNING: "Warning",
                Severity.INFO: "Default"}


def _sections(message: Message) -> list[tuple[str, list[Alert]]]:
    if message.digest:
        return digest_sections(message.alerts)
    return [("", list(message.alerts))]


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "key": alert.key,
        "kind": str(alert.kind),
        "severity": str(alert.severity),
        "subject": alert.subject,
        "app_id": alert.app_id,
        "details": dict(alert.details),
    }


def webhook_payload(message: Message) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "title": message.title,
        "test": message.test,
        "digest": message.digest,
        "generated_at": message.generated_at.astimezone(UTC).isoformat(),
        "notes": list(message.notes),
        "alerts": [alert_json(a) for a in message.alerts],
        "omitted": message.omitted,
        "text": message_text(message),
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _chunks(lines: Sequence[str], limit: int) -> list[str]:
    out: list[str] = []
    current = ""
    for line in lines:
        line = line[: limit - 1]
        if current and len(current) + 1 + len(line) > limit:
            out.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def slack_payload(message: Message) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}}
    ]
    for note in message.notes:
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": f":warning: *{_slack_escape(note)}*"}})
    for title, items in _sections(message):
        lines = [f"*{_slack_escape(title)}* ({len(items)})"] if title else []
        lines += [f"{_EMOJI[a.severity]} {_slack_escape(a.subject)}" for a in items]
        for chunk in _chunks(lines, SLACK_TEXT_LIMIT):
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    if message.omitted:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"... and {message.omitted} more (see `rotator report`)"}
        ]})
    if len(blocks) > SLACK_MAX_BLOCKS:
        dropped = len(blocks) - (SLACK_MAX_BLOCKS - 1)
        blocks = blocks[: SLACK_MAX_BLOCKS - 1]
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"{dropped} more section(s) left out"}
        ]})
    fallback = message.title
    if len(message.alerts) == 1:
        fallback = f"{message.title}: {message.alerts[0].subject}"
    return {"text": fallback[:SLACK_TEXT_LIMIT], "blocks": blocks}


def teams_payload(message: Message) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium",
         "wrap": True}
    ]
    for note in message.notes:
        body.append({"type": "TextBlock", "text": note, "color": "Warning", "wrap": True})
    for title, items in _sections(message):
        if title:
            body.append({"type": "TextBlock", "text": f"{title} ({len(items)})",
                         "weight": "Bolder", "separator": True, "wrap": True})
        body.extend(
            {"type": "TextBlock", "text": a.subject, "color": _TEAMS_COLOR[a.severity],
             "wrap": True}
            for a in items
        )
    if message.omitted:
        body.append({"type": "TextBlock", "text": f"... and {message.omitted} more",
                     "isSubtle": True, "wrap": True})
    return {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
            },
        }],
    }


def email_message(message: Message, sender: str, to: Sequence[str]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = format_datetime(message.generated_at.astimezone(UTC))
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    mail["X-Rotator-Alerts"] = str(len(message.alerts))
    mail.set_content(message_text(message))
    return mail
