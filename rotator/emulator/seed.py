"""Deterministic tenant contents: the rotator's identity, the walkthrough apps, and N more.

Same seed, same ids and secrets. Dates are relative to the moment of seeding, so "expires in
12 days" stays true whenever the emulator starts.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from rotator.emulator.model import (
    Application,
    AppRole,
    KeyCredential,
    PasswordCredential,
    ServicePrincipal,
    utcnow,
)
from rotator.emulator.seed_estate import seed_estate
from rotator.emulator.tenant import GRAPH_APP_ID, Tenant, make_secret_text

ROTATOR_NAME = "rotator"
WEB_API_NAME = "mywebapi"
WEB_API_URI = "api://myapis/mywebapi"
# An API whose manifest asks for v2 access tokens (api.requestedAccessTokenVersion = 2);
# mywebapi is left as the portal makes it, so it gets v1 tokens like Graph and Key Vault.
V2_API_NAME = "myv2api"
V2_API_URI = "api://myapis/myv2api"
# rotator's own API (``[api]`` in the policy file), registered the way the walkthrough
# registers its web API, with a client granted each of its app roles.
ROTATOR_API_NAME = "rotator-api"
ROTATOR_API_URI = "api://rotator"
API_READER_NAME = "rotator-api-reader"
API_ADMIN_NAME = "rotator-api-admin"
CLIENT_NAME = "myclient"
NO_CONSENT_CLIENT_NAME = "myclient-noconsent"

_WORDS = (
    "billing", "orders", "payroll", "crm", "reports", "ingest", "search", "mailer",
    "portal", "etl", "backup", "audit", "gateway", "scheduler", "inventory", "hr",
)  # fmt: skip
_LIFETIMES = (90, 180, 365, 730)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


ADMIN_NAME = "tenant-admin"


def seed_tenant(
    apps: int = 20,
    seed: int = 0,
    propagation_seconds: float = 0.0,
    *,
    audit_log: bool = True,
    policy_read: bool = True,
    removal_propagation_seconds: float | None = None,
    graph_consistency_seconds: float = 2.0,
) -> Tenant:
    """``audit_log=False`` withholds ``AuditLog.Read.All`` from the rotator's identity,
    so the credential usage report answers 403 (the fallback to the grace rule);
    ``policy_read=False`` seeds the rotator without ``Policy.Read.All``."""
    # Determinism is the point: same seed, same tenant (live secrets use SystemRandom).
    rng = random.Random(seed)  # noqa: S311
    tenant = Tenant(
        _uuid(rng),
        propagation_seconds=propagation_seconds,
        removal_propagation_seconds=removal_propagation_seconds,
        graph_consistency_seconds=graph_consistency_seconds,
        seed=seed,
    )
    now = utcnow()

    rotator_secret = make_secret_text(rng)
    rotator = tenant.create_app(
        ROTATOR_NAME,
        owned_by_rotator=False,
        secrets=[(rotator_secret, now + timedelta(days=365))],
    )
    tenant.rotator_app_id = rotator.app_id
    tenant.rotator_secret = rotator_secret
    tenant.grant_app_role(rotator.app_id, GRAPH_APP_ID, "Application.ReadWrite.OwnedBy")
    if audit_log:  # the credential usage report (retire_when = "unused")
        tenant.grant_app_role(rotator.app_id, GRAPH_APP_ID, "AuditLog.Read.All")
    tenant.grant_vault_access(rotator.app_id)

    web_api = tenant.create_app(
        WEB_API_NAME,
        owned_by_rotator=False,
        identifier_uris=[WEB_API_URI],
        app_roles=[
            AppRole(_uuid(rng), "Admin", "Admin Role", "Allows any operation on the web api"),
            AppRole(_uuid(rng), "ReadOnly", "Read-Only Role", "Allows read-only access"),
        ],
    )
    for name, consented in ((CLIENT_NAME, True), (NO_CONSENT_CLIENT_NAME, False)):
        secret = make_secret_text(rng)
        client = tenant.create_app(name, secrets=[(secret, now + timedelta(days=180))])
        tenant.grant_app_role(client.app_id, web_api.app_id, "ReadOnly", consented=consented)
        tenant.scenario_secrets[name] = secret

    rotator_sp = tenant.sp_by_app_id(rotator.app_id)
    assert rotator_sp is not None
    _bulk(tenant, rng, apps, rotator_sp.id)
    if policy_read:
        tenant.grant_app_role(rotator.app_id, GRAPH_APP_ID, "Policy.Read.All")
    # Seeded after the bulk apps so that adding it left their ids as they were.
    admin_rng = random.Random(seed ^ 0xAD31)  # noqa: S311
    admin_secret = make_secret_text(admin_rng)
    admin = tenant.create_app(
        ADMIN_NAME,
        owned_by_rotator=False,
        secrets=[(admin_secret, now + timedelta(days=365))],
    )
    tenant.admin_app_id = admin.app_id
    tenant.admin_secret = admin_secret
    for role in ("Application.ReadWrite.All", "Policy.ReadWrite.ApplicationConfiguration"):
        tenant.grant_app_role(admin.app_id, GRAPH_APP_ID, role)
    _personal(tenant, admin_rng)
    # Last, so that every id seeded before it stays as it was.
    v2_api = tenant.create_app(
        V2_API_NAME,
        owned_by_rotator=False,
        identifier_uris=[V2_API_URI],
        app_roles=[AppRole(_uuid(admin_rng), "ReadOnly", "Read-Only Role",
                           "Allows read-only access")],
        access_token_version=2,
    )
    client = tenant.app_by_display_name(CLIENT_NAME)
    tenant.grant_app_role(client.app_id, v2_api.app_id, "ReadOnly")
    seed_estate(tenant, seed)
    # Last of all, from a random stream of its own, so every id seeded before stays.
    _rotator_api(tenant, random.Random(seed ^ 0xA91))  # noqa: S311
    return tenant


def _rotator_api(tenant: Tenant, rng: random.Random) -> None:
    """``api://rotator`` with app roles ReadOnly and Admin, and a client holding each
    (granted with admin consent), whose secrets are in ``tenant.scenario_secrets``."""
    now = utcnow()
    api = tenant.create_app(
        ROTATOR_API_NAME,
        owned_by_rotator=False,
        identifier_uris=[ROTATOR_API_URI],
        app_roles=[
            AppRole(_uuid(rng), "Admin", "Admin Role",
                    "Allows rotating credentials through rotator's API"),
            AppRole(_uuid(rng), "ReadOnly", "Read-Only Role",
                    "Allows reading rotator's inventory, rotations and findings"),
        ],
    )
    for name, role in ((API_READER_NAME, "ReadOnly"), (API_ADMIN_NAME, "Admin")):
        secret = make_secret_text(rng)
        client = tenant.create_app(name, owned_by_rotator=False,
                                   secrets=[(secret, now + timedelta(days=365))])
        tenant.grant_app_role(client.app_id, api.app_id, role)
        tenant.scenario_secrets[name] = secret
    # Granting an app role to a client (admin consent) through Graph needs this.
    tenant.grant_app_role(tenant.admin_app_id, GRAPH_APP_ID, "AppRoleAssignment.ReadWrite.All")


# Apps open to personal Microsoft accounts (at most two secrets each), owned by the rotator:
# (name, signInAudience, end dates of their secrets in days from now).
PERSONAL_APPS = (
    ("personal-full-expired", "AzureADandPersonalMicrosoftAccount", (-10.0, 12.0)),
    ("personal-full-valid", "AzureADandPersonalMicrosoftAccount", (12.0, 200.0)),
    ("personal-msa-only", "PersonalMicrosoftAccount", (12.0,)),
)


def _personal(tenant: Tenant, rng: random.Random) -> None:
    now = utcnow()
    for name, audience, ends in PERSONAL_APPS:
        tenant.create_app(
            name,
            secrets=[(make_secret_text(rng), now + timedelta(days=d)) for d in ends],
            sign_in_audience=audience,
        )


def _bulk(tenant: Tenant, rng: random.Random, count: int, rotator_sp_id: str) -> None:
    """The mass of ordinary apps; built directly because 100,000 of them must take seconds."""
    now = utcnow()
    for index in range(count):
        created = now - timedelta(days=rng.randint(30, 1500))
        app = Application(
            id=_uuid(rng),
            app_id=_uuid(rng),
            display_name=f"app-{index:05d}-{rng.choice(_WORDS)}",
            created=created,
        )
        # Most apps are managed by the rotator; the rest belong to someone else.
        if rng.random() < 0.8:
            app.owners.add(rotator_sp_id)
        for n in range(rng.choice((1, 1, 2, 2, 3))):
            end = now + timedelta(days=rng.uniform(-90, 730))
            app.password_credentials.append(
                PasswordCredential(
                    key_id=_uuid(rng),
                    display_name=f"secret {n + 1}",
                    secret_text=make_secret_text(rng),
                    start=end - timedelta(days=rng.choice(_LIFETIMES)),
                    end=end,
                )
            )
        for n in range(rng.choice((0, 0, 0, 0, 1, 1, 1, 2))):
            end = now + timedelta(days=rng.uniform(-60, 730))
            app.key_credentials.append(
                KeyCredential(
                    key_id=_uuid(rng),
                    display_name=f"CN={app.display_name}-{n + 1}",
                    start=end - timedelta(days=rng.choice(_LIFETIMES)),
                    end=end,
                    thumbprint=rng.getrandbits(160).to_bytes(20, "big"),
                )
            )
        sp = ServicePrincipal(_uuid(rng), app.app_id, app.display_name, created, [app.app_id])
        tenant.insert_seeded(app, sp)
