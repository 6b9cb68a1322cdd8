"""The keys of ``[defaults]`` and ``[[app]]``: where each may appear, its default, its check."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from rotator.config import checks
from rotator.config.policy import KeyType, KeyVaultFormat


@dataclass(frozen=True, slots=True)
class Key:
    """One policy key: where it may appear, its built-in default and its check."""

    check: Callable[[object], Any]  # returns the parsed value or raises ValueError(hint)
    default: Any
    in_defaults: bool = True
    in_app: bool = True


KEYS: Final[Mapping[str, Key]] = MappingProxyType(
    {
        "app_id": Key(checks.app_id, None, in_defaults=False),
        "secret_name": Key(checks.secret_name, None, in_defaults=False),
        "vault_url": Key(checks.vault_url, None),
        "renew_before_days": Key(checks.positive(unit="days", hi=3650), 30.0),
        "lifetime_days": Key(checks.whole(1, 3650, unit="days"), 180),
        "grace_hours": Key(checks.number(0, 24 * 365, unit="hours"), 24.0),
        "verify_scope": Key(checks.scope, "https://graph.microsoft.com/.default"),
        "verify_successes": Key(checks.whole(1, 100, unit="successes"), 3),
        "verify_timeout_seconds": Key(checks.positive(unit="seconds", hi=86_400), 600.0),
        "credential": Key(checks.credential, None),
        "key_type": Key(checks.choice(KeyType), KeyType.RSA2048),
        "certificate_subject": Key(checks.non_empty, "CN=rotator"),
        "key_vault_format": Key(checks.choice(KeyVaultFormat), KeyVaultFormat.PEM),
        "expected_roles": Key(checks.roles, ()),
        "scan_interval_minutes": Key(
            checks.positive(unit="minutes", hi=7 * 24 * 60), 60.0, in_app=False
        ),
        "reconcile_interval_seconds": Key(
            checks.positive(unit="seconds", hi=86_400), 60.0, in_app=False
        ),
        "max_concurrent_rotations": Key(checks.whole(1, 1000, unit="rotations"), 8, in_app=False),
        "graph_writes_per_minute": Key(
            checks.positive(unit="writes per minute", hi=100_000), 600.0, in_app=False
        ),
        "lease_seconds": Key(checks.positive(unit="seconds", hi=86_400), 300.0, in_app=False),
    }
)
DEFAULTS_KEYS: Final = tuple(k for k, spec in KEYS.items() if spec.in_defaults)
APP_KEYS: Final = tuple(k for k, spec in KEYS.items() if spec.in_app)
