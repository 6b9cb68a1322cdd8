"""The seeded estate beside app registrations: users who own apps, SAML SSO service
principals with their token-signing certificates, service principals of multi-tenant
apps registered elsewhere, secrets added on service principals, federated credentials.

Seeded after everything else, from a random source of its own, so the ids and dates of
the rest of the tenant are what they were before it existed.
"""

from __future__ import annotations

import random
from datetime import timedelta

from rotator.emulator.model import utcnow
from rotator.emulator.pki import placeholder_cert_der
from rotator.emulator.tenant import GRAPH_APP_ID, Tenant, make_secret_text

# (name, mail); a user without mail is reached through the user principal name.
USERS = (("alice", True), ("bob", True), ("carol", True), ("dave", True), ("erin", False))
# Gallery SAML apps: (name, owner, [(days the certificate has left, preferred)]).
SAML_APPS: tuple[tuple[str, str | None, tuple[tuple[float, bool], ...]], ...] = (
    ("saml-expenses", "carol", ((25.0, True),)),
    ("saml-wiki", "dave", ((6.0, False), (1000.0, True))),
    ("saml-travel", None, ((12.0, True),)),
)
# Multi-tenant apps of other tenants, with a secret added here: (name, owner, days left).
FOREIGN_APPS: tuple[tuple[str, str | None, float], ...] = (
    ("partner-sync", "bob", 40.0),
    ("vendor-analytics", None, 9.0),
)
# Apps of this tenant with a secret on their service principal:
# (name, owner, days left of the app's own secret or None, days left of the SP's secret).
SP_SECRET_APPS: tuple[tuple[str, str, float | None, float], ...] = (
    ("billing-legacy", "alice", 200.0, 300.0),
    ("reports-bridge", "carol", None, 15.0),
)
# Apps with a federated credential: (name, owner, days left of a secret still held or None).
FEDERATED_APPS: tuple[tuple[str, str, float | None], ...] = (
    ("gh-deploy", "dave", 100.0),
    ("aks-workload", "alice", None),
)
OTHER_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OWNERLESS_SHARE = 0.25  # of the bulk apps


def sp_secret_name(name: str) -> str:
    """Where the value of a seeded service principal secret is kept for tests."""
    return f"{name} (service principal)"


def seed_estate(tenant: Tenant, seed: int) -> None:
    rng = random.Random(seed ^ 0xE57A7E)  # noqa: S311
    now = utcnow()
    users = {
        name: tenant.create_user(
            name.capitalize(), f"{name}@{tenant.domain}",
            f"{name}@{tenant.domain}" if has_mail else None).id
        for name, has_mail in USERS
    }

    def owned(name: str | None) -> list[str]:
        return [users[name]] if name else []

    # The bulk apps: most have one or two owners, some none.
    people = list(users.values())[:4]
    for app in tenant.apps_in_order():
        if app.display_name.startswith("app-") and rng.random() >= OWNERLESS_SHARE:
            app.owners.update(rng.sample(people, rng.choice((1, 1, 2))))
    for name, owner in (("myclient", "alice"), ("mywebapi", "bob")):
        tenant.app_by_display_name(name).owners.update(owned(owner))

    for saml_name, saml_owner, certs in SAML_APPS:
        sp = tenant.create_foreign_sp(
            tenant.register_foreign_app(saml_name, OTHER_TENANT).app_id)
        sp.preferred_single_sign_on_mode = "saml"
        sp.owners.update(owned(saml_owner))
        for days, preferred in certs:
            end = now + timedelta(days=days)
            der = placeholder_cert_der(f"CN=Microsoft Azure Federated SSO Certificate {saml_name}",
                                       end - timedelta(days=3 * 365), end)
            tenant.add_token_signing_certificate(
                sp.id, der, "CN=Microsoft Azure Federated SSO Certificate", prefer=preferred)

    for foreign_name, foreign_owner, secret_days in FOREIGN_APPS:
        sp = tenant.create_foreign_sp(
            tenant.register_foreign_app(foreign_name, OTHER_TENANT).app_id)
        sp.owners.update(owned(foreign_owner))
        value = make_secret_text(rng)
        tenant.sp_add_password(sp.id, "added in this tenant", now + timedelta(days=secret_days),
                               value=value)
        tenant.scenario_secrets[sp_secret_name(foreign_name)] = value

    for own_name, own_owner, app_days, sp_days in SP_SECRET_APPS:
        secrets = [] if app_days is None else [(make_secret_text(rng),
                                                now + timedelta(days=app_days))]
        app = tenant.create_app(own_name, owned_by_rotator=False, owners=owned(own_owner),
                                secrets=secrets)
        own_sp = tenant.sp_by_app_id(app.app_id)
        assert own_sp is not None
        value = make_secret_text(rng)
        tenant.sp_add_password(own_sp.id, None, now + timedelta(days=sp_days), value=value)
        tenant.scenario_secrets[sp_secret_name(own_name)] = value

    for fed_name, fed_owner, fed_days in FEDERATED_APPS:
        secrets = [] if fed_days is None else [(make_secret_text(rng),
                                                now + timedelta(days=fed_days))]
        app = tenant.create_app(fed_name, owned_by_rotator=False, owners=owned(fed_owner),
                                secrets=secrets)
        tenant.add_federated_credential(
            app.id, f"{fed_name}-main", "https://token.actions.githubusercontent.com",
            f"repo:example/{fed_name}:ref:refs/heads/main")

    tenant.grant_app_role(tenant.rotator_app_id, GRAPH_APP_ID, "User.Read.All")
    tenant.grant_app_role(tenant.admin_app_id, GRAPH_APP_ID, "User.ReadWrite.All")
