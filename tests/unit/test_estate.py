"""The wider estate in the pure core: parsing service principals, inventory rows of SAML
signing certificates, the findings and expiry alerts they raise."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator.adapters.graph_json import AppParseError, parse_application, parse_service_principal
from rotator.alerts.findings import FindingKind, PostureRules, credential_findings
from rotator.alerts.thresholds import expiry_alerts
from rotator.domain.credentials import CredentialSource
from rotator.domain.records import InventoryRow
from rotator.engine.plan import apps_from_inventory

NOW = datetime(2026, 11, 28, tzinfo=UTC)
HOME = str(uuid.uuid4())
THUMB_OLD, THUMB_NEW = "AA" * 20, "BB" * 20


def _id() -> str:
    return str(uuid.uuid4())


def _end(days: float) -> str:
    return (NOW + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(thumb: str, usage: str, days: float) -> dict[str, Any]:
    return {"keyId": _id(), "customKeyIdentifier": thumb, "displayName": "CN=SSO",
            "startDateTime": _end(days - 1000), "endDateTime": _end(days),
            "type": "AsymmetricX509Cert", "usage": usage, "key": None}


def _password(days: float, thumb: str | None = None) -> dict[str, Any]:
    return {"keyId": _id(), "customKeyIdentifier": thumb, "displayName": None, "hint": "abc",
            "startDateTime": _end(days - 100), "endDateTime": _end(days), "secretText": None}


def _user(mail: str | None, upn: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.user", "id": _id(), "mail": mail,
            "userPrincipalName": upn}


def saml_sp(owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": _id(), "appId": _id(), "displayName": "saml-wiki",
        "appOwnerOrganizationId": _id(), "preferredSingleSignOnMode": "saml",
        "preferredTokenSigningKeyThumbprint": THUMB_NEW.lower(),
        "keyCredentials": [_key(THUMB_OLD, "Sign", 5), _key(THUMB_OLD, "Verify", 5),
                           _key(THUMB_NEW, "Sign", 900), _key(THUMB_NEW, "Verify", 900)],
        "passwordCredentials": [_password(5, THUMB_OLD), _password(900, THUMB_NEW)],
    }
    if owners is not None:
        body["owners"] = owners
    return body


def rows_of(raw: dict[str, Any], *, foreign: bool = True, sp: bool = True
            ) -> list[InventoryRow]:
    holder = parse_service_principal(raw) if sp else parse_application(raw)
    return [InventoryRow.from_credential(holder, c, managed=True, foreign_app=foreign)
            for c in holder.credentials]


def test_saml_pairs_are_read_with_the_one_that_signs() -> None:
    rows = rows_of(saml_sp([_user("dave@x.example", "dave@x.example"),
                            _user(None, "erin@x.example"),
                            {"@odata.type": "#microsoft.graph.servicePrincipal", "id": _id()}]))
    assert {r.source for r in rows} == {CredentialSource.SERVICE_PRINCIPAL}
    assert not any(r.managed for r in rows)  # never rotated, whatever the policy says
    signing = {(r.thumbprint, r.usage, r.kind.value): r.signing_active for r in rows}
    assert signing[(THUMB_NEW, "Sign", "certificate")] is True
    assert signing[(THUMB_OLD, "Verify", "certificate")] is False
    assert signing[(THUMB_NEW, "Sign", "secret")] is True  # the private key's password
    assert rows[0].owners == ("dave@x.example", "erin@x.example")


def test_only_the_signing_key_of_the_active_certificate_raises_expiry_alerts() -> None:
    raw = saml_sp()
    raw["preferredTokenSigningKeyThumbprint"] = THUMB_OLD
    alerts = expiry_alerts(rows_of(raw), [30, 14, 7], NOW)
    assert len(alerts) == 1
    assert "SAML token-signing certificate" in alerts[0].subject
    assert "never rotates" in alerts[0].subject
    # Once the new certificate signs, the old one ending takes nothing down.
    assert expiry_alerts(rows_of(saml_sp()), [30, 14, 7], NOW) == []


def test_owners_missing_from_the_listing_are_unknown_not_none() -> None:
    assert rows_of(saml_sp())[0].owners is None
    with pytest.raises(AppParseError, match="owners"):
        parse_service_principal({**saml_sp(), "owners": "alice"})


def _sp_with_secret(*, foreign: bool, owners: list[dict[str, Any]]) -> list[InventoryRow]:
    raw = {"id": _id(), "appId": _id(), "displayName": "holder",
           "appOwnerOrganizationId": HOME, "passwordCredentials": [_password(40)],
           "keyCredentials": [], "owners": owners}
    return rows_of(raw, foreign=foreign)


def test_estate_findings() -> None:
    own = _sp_with_secret(foreign=False, owners=[_user("a@x.example", "a@x.example")])
    foreign = _sp_with_secret(foreign=True, owners=[])
    saml = rows_of(saml_sp([]))
    found = credential_findings([*own, *foreign, *saml], PostureRules(), NOW)
    kinds = {(f.kind, f.app_id) for f in found}
    assert (FindingKind.SP_CREDENTIAL_ON_OWN_APP, own[0].app_id) in kinds
    assert (FindingKind.FOREIGN_SP_SECRET, foreign[0].app_id) in kinds
    assert (FindingKind.NO_OWNER, foreign[0].app_id) in kinds
    assert (FindingKind.NO_OWNER, saml[0].app_id) in kinds
    assert (FindingKind.NO_OWNER, own[0].app_id) not in kinds
    # SAML passwords are no rogue secrets, and a signing certificate is no lifetime problem.
    assert not {k for k, a in kinds if a == saml[0].app_id} - {FindingKind.NO_OWNER}
    own_finding = next(f for f in found if f.kind is FindingKind.SP_CREDENTIAL_ON_OWN_APP)
    assert own_finding.severity == "critical"
    expected = PostureRules(expected_sp_credentials=frozenset({own[0].app_id}))
    assert FindingKind.SP_CREDENTIAL_ON_OWN_APP not in {
        f.kind for f in credential_findings(own, expected, NOW)}


def test_the_engine_never_plans_from_a_service_principal_credential() -> None:
    app_raw = {"id": _id(), "appId": _id(), "displayName": "app",
               "passwordCredentials": [_password(10)], "keyCredentials": []}
    app_rows = rows_of(app_raw, sp=False)
    sp_rows = _sp_with_secret(foreign=False, owners=[])
    sp_rows = [InventoryRow(**{**{f: getattr(r, f) for f in r.__slots__},  # type: ignore[attr-defined]
                               "app_id": app_rows[0].app_id, "managed": True}) for r in sp_rows]
    planned = apps_from_inventory([*sp_rows, *app_rows])
    (app,) = planned.values()
    assert app.object_id == app_rows[0].object_id
    assert [c.key_id for c in app.credentials] == [app_rows[0].key_id]


def test_owners_rotator_may_not_read_are_unknown_not_absent() -> None:
    """Without User.Read.All Graph shows user owners as bare objects: the app has owners
    rotator cannot reach, which is not the same as having none (no "no owner" finding)."""
    from rotator.adapters.graph_json import parse_owners

    user = "#microsoft.graph.user"
    bare = {"@odata.type": user, "id": _id()}
    seen = {"@odata.type": user, "id": _id(), "mail": "ops@example.com"}
    sp = {"@odata.type": "#microsoft.graph.servicePrincipal", "id": _id()}
    assert parse_owners({"owners": [bare]}) is None
    assert parse_owners({"owners": [bare, seen]}) == ("ops@example.com",)
    assert parse_owners({"owners": [sp]}) == ()
    assert parse_owners({"owners": []}) == ()
    assert parse_owners({}) is None
