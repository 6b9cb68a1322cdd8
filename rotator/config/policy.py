"""The policy model: what the policy file resolves to, and the keys that set it.

Each key of ``[defaults]`` and ``[[app]]`` is declared once, as a field below: its
name, type, built-in default, check and help (see :mod:`rotator.config.keys`).
``KEYS`` is read back from these fields. A new key is one field here, plus its use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final

from rotator.config import checks
from rotator.config.alerts import AlertsPolicy
from rotator.config.api import ApiPolicy
from rotator.config.hooks import HookPolicy
from rotator.config.keys import Key, declared, key_field, key_spec
from rotator.domain.credentials import CredentialKind
from rotator.domain.retirement import RetireRule
from rotator.domain.rotation import staging_name


class KeyType(StrEnum):
    RSA2048 = "RSA2048"
    RSA3072 = "RSA3072"
    RSA4096 = "RSA4096"
    EC_P256 = "EC_P256"


class KeyVaultFormat(StrEnum):
    PEM = "pem"
    PKCS12 = "pkcs12"
    # A Key Vault certificate object (its key a Key Vault key, its PFX/PEM a backing secret).
    CERTIFICATE = "certificate"


class CertificateContent(StrEnum):
    """What a certificate object's backing secret serves."""

    PKCS12 = "pkcs12"
    PEM = "pem"


class KeySource(StrEnum):
    """Who makes a new certificate's key pair."""

    ROTATOR = "rotator"
    KEYVAULT = "keyvault"


# The key types Key Vault is asked for when it makes the key pair (key_source = "keyvault").
KEYVAULT_KEY_TYPES: Final = (KeyType.RSA2048, KeyType.RSA3072)


def default_secret_name(app_id: str) -> str:
    return f"rotator-{app_id.lower()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AppDefaults:
    """The per-app keys that ``[defaults]`` may set, resolved against the built-in defaults."""

    vault_url: str | None = key_field(
        None,
        checks.vault_url,
        help="the Key Vault of the app's consumer and staging secrets, such as "
        "https://myvault.vault.azure.net; where no table sets it, ROTATOR_VAULT_URL",
    )
    renew_before_days: float = key_field(
        30.0,
        checks.positive(unit="days", hi=3650),
        help="rotate when fewer days remain (or once 2/3 of the lifetime has passed)",
    )
    lifetime_days: int = key_field(
        180, checks.whole(1, 3650, unit="days"), help="the lifetime of a new credential"
    )
    grace_hours: float = key_field(
        24.0,
        checks.number(0, 24 * 365, unit="hours"),
        help="how long after promoting the new credential the old one is retired",
    )
    retire_when: RetireRule = key_field(
        RetireRule.GRACE,
        checks.choice(RetireRule),
        help="grace: retire the old credential once grace_hours have passed; unused: also "
        "wait until the credential usage report shows the new one in use since promote and "
        "the old one quiet for quiet_hours (needs AuditLog.Read.All; without it, grace)",
    )
    quiet_hours: float = key_field(
        24.0,
        checks.positive(unit="hours", hi=24 * 365),
        help='retire_when = "unused": how long the old credential must have been unused; '
        "fractions allowed; keep it above the report's lag",
    )
    retire_max_wait_hours: float = key_field(
        168.0,
        checks.positive(unit="hours", hi=24 * 365 * 2),
        help='retire_when = "unused": after this long since promote a held retirement is '
        "alerted (it stays held; rotator rotate --retire-now overrides)",
    )
    verify_scope: str = key_field(
        "https://graph.microsoft.com/.default",
        checks.scope,
        help="the scope of the token requests that prove a new credential; ends in /.default",
    )
    verify_successes: int = key_field(
        3,
        checks.whole(1, 100, unit="successes"),
        help="consecutive successful token requests that prove a new credential",
    )
    verify_timeout_seconds: float = key_field(
        600.0,
        checks.positive(unit="seconds", hi=86_400),
        help="how long verification may wait for a new credential to propagate",
    )
    credential: CredentialKind | None = key_field(
        None,
        checks.credential,
        help="the kind of credential to create, secret or certificate; "
        "unset: the same kind as the credential that is expiring",
    )
    key_type: KeyType = key_field(
        KeyType.RSA2048, checks.choice(KeyType), help="the key pair of a new certificate"
    )
    certificate_subject: str = key_field(
        "CN=rotator", checks.non_empty, help="the subject of a new self-signed certificate"
    )
    key_vault_format: KeyVaultFormat = key_field(
        KeyVaultFormat.PEM,
        checks.choice(KeyVaultFormat),
        help="how a certificate and its key are stored: pem or pkcs12 (a secret), or "
        "certificate (a Key Vault certificate object, what App Service, Application "
        "Gateway, the CSI driver's objectType cert and Microsoft.Identity.Web read)",
    )
    certificate_content_type: CertificateContent = key_field(
        CertificateContent.PKCS12,
        checks.choice(CertificateContent),
        help='with key_vault_format = "certificate": what the certificate\'s backing secret '
        "serves, pkcs12 or pem",
    )
    key_source: KeySource = key_field(
        KeySource.ROTATOR,
        checks.choice(KeySource),
        help="who makes a new certificate's key pair: rotator, or keyvault (Key Vault makes "
        "it and a self-signed certificate; the private key is never generated in rotator; "
        'needs key_vault_format = "certificate" and key_type RSA2048 or RSA3072)',
    )
    expected_roles: tuple[str, ...] = key_field(
        (), checks.roles, help="the app roles a token for a new credential must carry"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPolicy(AppDefaults):
    """Everything rotator needs to know about one managed app, fully resolved.

    Its ``[[app]]`` table over ``[defaults]``: every key of :class:`AppDefaults`, and
    the keys only an app has.
    """

    app_id: str = field(
        metadata=key_spec(checks.app_id, help="the application (client) id; a lower-case GUID")
    )
    secret_name: str = field(
        metadata=key_spec(
            checks.secret_name,
            help="the consumer secret in Key Vault (default rotator-<app_id>); "
            "a new credential is staged in <secret_name>-next",
        )
    )
    # Always set: an app without a Key Vault is refused when the policy is loaded.
    vault_url: str
    # The [[app.hook]] tables, parsed on their own (rotator.config.hooks).
    hooks: tuple[HookPolicy, ...] = ()

    @property
    def staging_secret_name(self) -> str:
        return staging_name(self.secret_name)


@dataclass(frozen=True, slots=True)
class DaemonPolicy:
    """The daemon's keys, set in ``[defaults]``."""

    scan_interval_minutes: float = key_field(
        60.0,
        checks.positive(unit="minutes", hi=7 * 24 * 60),
        help="how often every app registration is scanned",
    )
    full_scan_interval_hours: float = key_field(
        24.0,
        checks.positive(unit="hours", hi=7 * 24),
        help="how often a scan reads every app registration in full; the scans between "
        "read only what changed (Graph delta queries)",
    )
    reconcile_interval_seconds: float = key_field(
        60.0,
        checks.positive(unit="seconds", hi=86_400),
        help="how often due rotations are planned and those in flight driven on",
    )
    max_concurrent_rotations: int = key_field(
        8, checks.whole(1, 1000, unit="rotations"), help="how many rotations run at once"
    )
    graph_writes_per_minute: float = key_field(
        600.0,
        checks.positive(unit="writes per minute", hi=100_000),
        help="Graph writes (addPassword, removePassword, ...) per minute for the whole "
        "deployment: replicas sharing a PostgreSQL database draw from this one budget "
        "together. Keep it below the tenant's budget (3,000 writes / 150 s per app, "
        "18,000 / 5 min per tenant)",
    )
    graph_read_settle_seconds: float = key_field(
        3.0,
        checks.positive(unit="seconds", hi=600),
        help="Graph serves reads from replicas that learn writes late: before rotator "
        "believes a credential or an app is absent, or writes back a certificate list it "
        "just read, it reads again this long after (longer than the lag the directory "
        "usually shows)",
    )
    lease_seconds: float = key_field(
        300.0,
        checks.positive(unit="seconds", hi=86_400),
        help="how long a process owns a rotation it works on before another may take it over",
    )
    step_backoff_seconds: float = key_field(
        5.0,
        checks.positive(unit="seconds", hi=3600),
        help="after a transient failure of a rotation step (throttling, 5xx, network), the "
        "first pause before it is retried; each further failure doubles it, up to "
        "step_backoff_max_seconds (a Retry-After from the service is never shortened)",
    )
    step_backoff_max_seconds: float = key_field(
        300.0,
        checks.positive(unit="seconds", hi=86_400),
        help="the longest pause between retries of a rotation step; at least "
        "step_backoff_seconds",
    )
    step_max_attempts: int = key_field(
        8,
        checks.whole(1, 100, unit="attempts"),
        help="transient failures of one step before a rotation that has not promoted rolls "
        "back (a promoted one keeps retrying: its new credential is already in use)",
    )
    metrics_horizon_days: float | None = key_field(
        None,
        checks.positive(unit="days", hi=3650),
        help="unmanaged credentials get an expiry series of their own on /metrics when "
        "expired or expiring within this many days (the others are only counted); unset: "
        "the largest alert threshold",
    )
    metrics_expired_days: float = key_field(
        30.0,
        checks.number(0, 3650, unit="days"),
        help="an unmanaged credential that expired more than this many days ago gets no "
        "expiry series of its own on /metrics (it stays counted as expired); 0: none does",
    )


@dataclass(frozen=True, slots=True)
class Policy:
    defaults: AppDefaults
    daemon: DaemonPolicy
    apps: Mapping[str, AppPolicy] = field(default_factory=dict)
    source: Path | None = None
    alerts: AlertsPolicy = field(default_factory=AlertsPolicy)
    # The [api] table; None leaves /api/v1 off.
    api: ApiPolicy | None = None

    @property
    def metrics_horizon_days(self) -> float:
        """How far ahead an unmanaged credential's expiry gets a series of its own."""
        if self.daemon.metrics_horizon_days is not None:
            return self.daemon.metrics_horizon_days
        return max(self.alerts.thresholds_days)

    def for_app(self, app_id: str) -> AppPolicy | None:
        return self.apps.get(app_id.strip().lower())

    def secret_env_names(self) -> frozenset[str]:
        """The environment variables the policy names as holding secrets: hook signing
        keys, alert webhook URLs and SMTP passwords."""
        names = {h.secret_env for app in self.apps.values() for h in app.hooks}
        for channel in self.alerts.channels:
            names |= {channel.url_env, channel.password_env}
        return frozenset(n for n in names if n)


def _key_table() -> Mapping[str, Key]:
    shared = declared(AppDefaults, in_defaults=True, in_app=True)
    own = [k for k in declared(AppPolicy, in_app=True) if k.attr not in {s.attr for s in shared}]
    daemon = declared(DaemonPolicy, in_defaults=True)
    return MappingProxyType({k.name: k for k in (*own, *shared, *daemon)})


# The keys of [defaults] and [[app]]: an app's own keys, the shared ones, the daemon's.
KEYS: Final[Mapping[str, Key]] = _key_table()
DEFAULTS_KEYS: Final = tuple(name for name, k in KEYS.items() if k.in_defaults)
APP_KEYS: Final = tuple(name for name, k in KEYS.items() if k.in_app)
