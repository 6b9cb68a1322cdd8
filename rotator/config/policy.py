"""The policy model: what the policy file resolves to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from rotator.config.alerts import AlertsPolicy
from rotator.domain.credentials import CredentialKind
from rotator.domain.rotation import staging_name


class KeyType(StrEnum):
    RSA2048 = "RSA2048"
    RSA3072 = "RSA3072"
    RSA4096 = "RSA4096"
    EC_P256 = "EC_P256"


class KeyVaultFormat(StrEnum):
    PEM = "pem"
    PKCS12 = "pkcs12"


def default_secret_name(app_id: str) -> str:
    return f"rotator-{app_id.lower()}"


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


@dataclass(frozen=True, slots=True)
class Policy:
    defaults: AppDefaults
    daemon: DaemonPolicy
    apps: Mapping[str, AppPolicy] = field(default_factory=dict)
    source: Path | None = None
    alerts: AlertsPolicy = field(default_factory=AlertsPolicy)

    def for_app(self, app_id: str) -> AppPolicy | None:
        return self.apps.get(app_id.strip().lower())
