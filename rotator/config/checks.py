"""Checks of one value from the policy file.

Each takes what TOML gave and returns the value to use, or raises ``ValueError`` with
the rest of a sentence that starts with the key's name: what is wrong and the fix.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from rotator.domain.credentials import CredentialKind
from rotator.domain.rotation import staging_name

# ---------------------------------------------------------------- for messages

_SHOW_MAX: Final = 120


def show(value: object) -> str:
    """A value for a message: its type and a repr kept short."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"int {show_int(value)}"
    try:
        text = repr(value)
    except ValueError:  # a nested integer with more digits than str() allows
        text = "…"
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 1] + "…"
    return text if isinstance(value, str) else f"{type(value).__name__} {text}"


def show_int(value: int) -> str:
    if abs(value) < 10**18:
        return str(value)
    return f"{'-' if value < 0 else ''}a {value.bit_length()}-bit integer"


def num(value: float) -> str:
    """A number for a message; TOML integers can be too big for float or for str."""
    if isinstance(value, int):
        return show_int(value)
    return f"{value:g}"


# ---------------------------------------------------------------- kinds of value


def number(lo: float, hi: float, *, unit: str) -> Callable[[object], float]:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number of {unit}, got {show(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g} {unit}, got {num(value)}")
        return float(value)

    return check


def whole(lo: int, hi: int, *, unit: str) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number of {unit}, got {show(value)}")
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi} {unit}, got {num(value)}")
        return value

    return check


def positive(*, unit: str, hi: float) -> Callable[[object], float]:
    def check(value: object) -> float:
        result = number(0, hi, unit=unit)(value)
        if result <= 0:
            raise ValueError(f"must be more than 0 {unit}, got {result:g}")
        return result

    return check


def choice(enum: type[StrEnum]) -> Callable[[object], Any]:
    options = [e.value for e in enum]

    def check(value: object) -> Any:
        if isinstance(value, str):
            for member in enum:
                if member.value.lower() == value.strip().lower():
                    return member
        raise ValueError(f"must be one of {', '.join(options)}, got {show(value)}")

    return check


def non_empty(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {show(value)}")
    return value.strip()


def flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {show(value)}")
    return value


# ---------------------------------------------------------------- the app keys' own

GUID: Final = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def app_id(value: object) -> str:
    if isinstance(value, str) and GUID.fullmatch(value.strip()):
        return value.strip().lower()
    raise ValueError(
        "must be the application (client) id, a GUID like "
        f"00000000-0000-0000-0000-000000000000, got {show(value)}"
    )


_SECRET_NAME: Final = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_SECRET_NAME: Final = 127


def secret_name(value: object) -> str:
    if not isinstance(value, str) or not _SECRET_NAME.fullmatch(value):
        raise ValueError(
            f"must be 1-{MAX_SECRET_NAME} letters, digits and dashes (Key Vault's rule), "
            f"got {show(value)}"
        )
    staging = staging_name(value)
    if len(staging) > MAX_SECRET_NAME:
        raise ValueError(
            f"is {len(value)} characters; its staging secret {staging[:20]}…-next would exceed "
            f"{MAX_SECRET_NAME}, so use at most {MAX_SECRET_NAME - len(staging) + len(value)}"
        )
    return value


def vault_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a URL string, got {show(value)}")
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
        raise ValueError(f"{_VAULT_HINT}, got {show(value)}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not _valid_host(host) or port == 0:
        raise ValueError(f"{_VAULT_HINT}, got {show(value)}")
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
            f"got {show(value)}; use {address}"
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


def scope(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a scope string, got {show(value)}")
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


def credential(value: object) -> CredentialKind:
    result: CredentialKind = choice(CredentialKind)(value)
    return result


def guids(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, str) and GUID.fullmatch(v.strip()) for v in value):
        raise ValueError(
            "must be a list of GUIDs (application ids or credential key ids) such as "
            f'["00000000-0000-0000-0000-000000000000"], got {show(value)}')
    return tuple(v.strip().lower() for v in value)


def roles(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(r, str) and r.strip() for r in value):
        raise ValueError(f'must be a list of role names such as ["ReadOnly"], got {show(value)}')
    return tuple(r.strip() for r in value)
