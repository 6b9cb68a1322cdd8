"""What the demo manages: a small table, and how it becomes apps and a policy.

``SCENARIO`` is the table. A :class:`Walkthrough` line is a seeded walkthrough client
(docs/emulator.md) given a secret that ends soon, which its consumers already read
from the vault; a :class:`SeededDue` line picks seeded apps owned by the rotator whose
credential of one kind is due; a :class:`StubbornConsumer` line picks one more seeded
app whose consumer reads its secret once and is never restarted, so rotator holds the
old credential instead of removing it. Another kind of credential is one more line:
``SeededDue("certificate", 2)`` manages two seeded apps whose certificates are due (the
first rotation of each registers its certificate by PATCH, as rotator holds none of
their keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.domain.credentials import AppRegistration, CredentialKind
    from rotator.emulator.runner import RunningEmulator
    from rotator.emulator.tenant import Tenant

GRACE_SECONDS = 8.0
# The walkthrough client's consumer: its old credential goes on evidence, once the usage
# report (which lags by REPORT_LAG_SECONDS in the demo's tenant) shows the consumer moved
# and the old credential quiet for QUIET_SECONDS.
QUIET_SECONDS = 5.0
REPORT_LAG_SECONDS = 2.0
# A seeded tenant in which several rotator-owned apps have secrets that are due.
TENANT_APPS = 30
TENANT_SEED = 3


@dataclass(frozen=True, slots=True)
class Walkthrough:
    """A seeded walkthrough client (docs/emulator.md), given a secret that ends soon."""

    display_name: str
    verify_scope: str
    expected_roles: tuple[str, ...]
    days_left: float = 6.0
    # A consumer process reads its secret once and is restarted by a hook after promote.
    consumer: bool = False


@dataclass(frozen=True, slots=True)
class StubbornConsumer:
    """A seeded app owned by the rotator, given a secret that ends soon, whose consumer
    reads it once and never reloads: no hook restarts it, so the old credential stays in
    use and its retirement is held (retire_when = "unused")."""

    days_left: float = 6.0


@dataclass(frozen=True, slots=True)
class SeededDue:
    """Up to ``count`` seeded apps owned by the rotator whose credential of ``kind`` is due."""

    kind: str  # "secret" | "certificate"
    count: int


ScenarioItem = Walkthrough | StubbornConsumer | SeededDue

SCENARIO: tuple[ScenarioItem, ...] = (
    Walkthrough("myclient", "api://myapis/mywebapi/.default", ("ReadOnly",), consumer=True),
    StubbornConsumer(),
    SeededDue("secret", 3),
)


@dataclass
class DemoApp:
    """An app the demo manages: its consumer secret, why it is due, its policy lines."""

    app_id: str
    name: str
    kind: str
    secret_name: str
    due_reason: str
    extra_policy: dict[str, Any] = field(default_factory=dict)
    consumer: bool = False
    # False: the consumer is never restarted, so its old credential's retirement is held.
    reloads: bool = True
    old_key_id: str | None = None
    # [[app.hook]] tables, each a dict of keys.
    hooks: list[dict[str, Any]] = field(default_factory=list)


def due_noun(apps: Iterable[DemoApp]) -> str:
    """What the managed apps have that is due: "secrets", "certificates" or "credentials"."""
    kinds = {a.kind for a in apps}
    return f"{kinds.pop()}s" if len(kinds) == 1 else "credentials"


def _domain_app(tenant: Tenant, app_id: str) -> AppRegistration:
    from rotator.domain.credentials import AppRegistration, Credential, CredentialKind

    app = tenant.find_app(app_id=app_id)
    creds = [
        Credential(c.key_id, CredentialKind.SECRET, c.display_name, c.start, c.end)
        for c in app.password_credentials
    ] + [
        Credential(k.key_id, CredentialKind.CERTIFICATE, k.display_name, k.start, k.end)
        for k in app.key_credentials
    ]
    return AppRegistration(app.id, app.app_id, app.display_name, tuple(creds))


def _due_reason(tenant: Tenant, app_id: str, kind: CredentialKind, now: datetime) -> str | None:
    from rotator.domain.policies import RenewalRule, Snapshot, rotation_due

    app = _domain_app(tenant, app_id)
    snap = Snapshot(app, kind, RenewalRule(30))
    # Something valid to retire afterwards, so retirement shows.
    if snap.newest(now) is None:
        return None
    verdict = rotation_due(snap, now)
    return verdict.message if verdict else None


def _consumed_secret(tenant: Tenant, object_id: str, days_left: float,
                     now: datetime) -> tuple[str, str]:
    """Give the app one secret that ends in ``days_left`` days and put it in the vault, as
    its consumers have read it all along: (the vault secret's name, the key id)."""
    from rotator.emulator.tenant import make_secret_text

    app = tenant.find_app(object_id=object_id)
    old = list(app.password_credentials)
    fresh = make_secret_text()
    cred = tenant.add_secret(object_id, fresh, now + timedelta(days=days_left),
                             "client secret", start=now - timedelta(days=174))
    for previous in old:
        tenant.remove_password(object_id, previous.key_id)
    secret_name = f"{app.display_name}-secret"
    tenant.vault.set(secret_name, fresh, content_type="text/plain",
                     tags={"app_id": app.app_id, "key_id": cred.key_id}, exp=cred.end)
    return secret_name, cred.key_id


def prepare(emu: RunningEmulator, scenario: Sequence[ScenarioItem]) -> list[DemoApp]:
    """Pick (and for consumed secrets, set up) the apps the demo manages."""
    from rotator.domain.credentials import CredentialKind

    tenant = emu.tenant
    now = datetime.now(UTC)
    rotator_sp = tenant.sp_by_app_id(tenant.rotator_app_id)
    assert rotator_sp is not None
    managed: list[DemoApp] = []
    for item in scenario:
        if isinstance(item, Walkthrough):
            app = tenant.app_by_display_name(item.display_name)
            secret_name, key_id = _consumed_secret(tenant, app.id, item.days_left, now)
            extra: dict[str, Any] = {"verify_scope": item.verify_scope,
                                     "expected_roles": list(item.expected_roles)}
            if item.consumer:
                extra |= {"retire_when": "unused", "quiet_hours": QUIET_SECONDS / 3600}
            managed.append(DemoApp(
                app.app_id, item.display_name, "secret", secret_name,
                f"client secret expires in {item.days_left:g} days", extra,
                consumer=item.consumer, old_key_id=key_id,
            ))
            continue
        if isinstance(item, StubbornConsumer):
            app = next(a for a in tenant.page(0, 10_000)[0]
                       # one of the N seeded apps, not a walkthrough identity
                       if tenant.owns(rotator_sp.id, a) and a.display_name.startswith("app-")
                       and a.password_credentials
                       and not any(m.app_id == a.app_id for m in managed))
            secret_name, key_id = _consumed_secret(tenant, app.id, item.days_left, now)
            managed.append(DemoApp(
                app.app_id, app.display_name, "secret", secret_name,
                f"client secret expires in {item.days_left:g} days",
                {"retire_when": "unused", "quiet_hours": QUIET_SECONDS / 3600},
                consumer=True, reloads=False, old_key_id=key_id,
            ))
            continue
        kind = CredentialKind(item.kind)
        found = 0
        batch, position = tenant.page(0, 10_000)
        while True:
            for app in batch:
                if found >= item.count:
                    break
                if not tenant.owns(rotator_sp.id, app) or app.display_name == "rotator" or any(
                    m.app_id == app.app_id for m in managed
                ):
                    continue
                reason = _due_reason(tenant, app.app_id, kind, now)
                if reason is None:
                    continue
                found += 1
                managed.append(DemoApp(app.app_id, app.display_name, str(kind),
                                       f"{app.display_name}-{kind}", reason,
                                       {"credential": str(kind)}))
            if position is None or found >= item.count:
                break
            batch, position = tenant.page(position, 10_000)
    return managed


def write_policy(path: Path, vault_url: str, apps: Iterable[DemoApp]) -> None:
    def toml(value: Any) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(value)

    lines = [
        "# written by `rotator demo`",
        "[defaults]",
        f"vault_url = {toml(vault_url)}",
        "renew_before_days = 30",
        "lifetime_days = 180",
        f"grace_hours = {GRACE_SECONDS / 3600!r}    # {GRACE_SECONDS:g} s, so retirement shows",
        "verify_successes = 3",
        "verify_timeout_seconds = 40",
        "scan_interval_minutes = 60",
        "reconcile_interval_seconds = 1",
        "lease_seconds = 30",
    ]
    for app in apps:
        lines += ["", "[[app]]", f"app_id = {toml(app.app_id)}",
                  f"secret_name = {toml(app.secret_name)}"]
        lines += [f"{k} = {toml(v)}" for k, v in app.extra_policy.items()]
        for hook in app.hooks:
            lines += ["", "[[app.hook]]"] + [f"{k} = {toml(v)}" for k, v in hook.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
