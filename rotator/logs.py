"""structlog set-up: one line per event, JSON when stderr is not a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from rotator.domain.secret_value import SecretValue

_SENSITIVE_KEYS = frozenset({"secret", "secret_text", "secrettext", "value", "password",
                             "client_secret", "private_key", "pem", "pfx"})


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: a SecretValue or a field named like material never prints."""
    for key in list(event):
        value = event[key]
        if isinstance(value, SecretValue) or key.lower() in _SENSITIVE_KEYS:
            event[key] = "***"
    return event


def configure(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    stream = stream or sys.stderr
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        # Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
        else structlog.dev.ConsoleRenderer(
            colors=stream.isatty() and "NO_COLOR" not in os.environ)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper()) if isinstance(level, str) else level
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # The Azure SDKs log request details at INFO; keep them to warnings.
    for name in ("azure", "msal", "httpx", "kiota_http"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # azure-identity warns on every refused token request; during verify refusals are
    # expected (propagation) and the engine reports them itself, in its own words.
    logging.getLogger("azure.identity").setLevel(logging.CRITICAL)
