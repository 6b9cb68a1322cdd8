"""A scan of the whole estate through the real SDKs: app registrations and service
principals, SAML signing certificates, owners; a failed service principal listing
makes the scan partial; nothing on a service principal is ever rotated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rotator.adapters.db import SqlStore
from rotator.alerts.findings import FindingKind, PostureRules, credential_findings
from rotator.bootstrap import engine_deps, load, open_store
from rotator.domain.credentials import CredentialKind, CredentialSource
from rotator.domain.records import InventoryRow, ScanStatus
from rotator.emulator.runner import RunningEmulator
from rotator.engine.plan import apps_from_inventory
from rotator.engine.scan import ScanReport, scan


@pytest.fixture
def store(emu: RunningEmulator, database_url: str) -> Iterator[SqlStore]:
    s = open_store(load({**emu.env, "ROTATOR_DATABASE_URL": database_url}).settings)
    yield s
    s.close()


async def _scan(emu: RunningEmulator, store: SqlStore, *, full: bool = False) -> ScanReport:
    async with engine_deps(load({**emu.env, "ROTATOR_DATABASE_URL": "sqlite://"}),
                           store) as deps:
        return await asyncio.wait_for(scan(deps, full=full), 120)


def _rows(store: SqlStore, emu: RunningEmulator, name: str) -> list[InventoryRow]:
    sp = next(s for s in emu.tenant._sps.values() if s.display_name == name)
    return store.inventory(app_id=sp.app_id)


async def test_both_sources_saml_pairs_and_owners(emu: RunningEmulator, store: SqlStore
                                                  ) -> None:
    report = await _scan(emu, store)
    assert report.status is ScanStatus.SUCCEEDED, report.errors
    assert report.service_principals_seen >= emu.tenant.app_count()
    domain = emu.tenant.domain

    wiki = _rows(store, emu, "saml-wiki")
    assert {r.source for r in wiki} == {CredentialSource.SERVICE_PRINCIPAL}
    keys = [r for r in wiki if r.kind is CredentialKind.CERTIFICATE]
    assert sorted(r.usage or "" for r in keys) == ["Sign", "Sign", "Verify", "Verify"]
    by_thumb: dict[str | None, set[bool | None]] = {}
    for r in wiki:
        by_thumb.setdefault(r.thumbprint, set()).add(r.signing_active)
    assert sorted(by_thumb.values(), key=str) == [{False}, {True}]  # one pair signs
    active = next(r for r in keys if r.signing_active)
    assert active.days_left(active.seen_at or active.end_at) > 300  # type: ignore[arg-type, operator]
    # The password of a signing certificate is part of it, not a secret.
    assert {r.usage for r in wiki if r.kind is CredentialKind.SECRET} == {"Sign"}
    assert all(r.owners == (f"dave@{domain}",) and not r.managed for r in wiki)
    assert all(r.sp_object_id and r.object_id == r.sp_object_id for r in wiki)

    (partner,) = _rows(store, emu, "partner-sync")
    assert partner.foreign_app and partner.usage == "secret"
    assert partner.owners == (f"bob@{domain}",)
    (vendor,) = _rows(store, emu, "vendor-analytics")
    assert vendor.owners == ()  # known to have nobody

    billing = _rows(store, emu, "billing-legacy")
    sources = sorted(str(r.source) for r in billing)
    assert sources == ["application", "servicePrincipal"]
    on_sp = next(r for r in billing if r.on_service_principal)
    assert not on_sp.foreign_app and on_sp.usage == "secret"
    # Owners of the app registration and of the service principal are kept apart.
    assert next(r for r in billing if not r.on_service_principal).owners == (
        f"alice@{domain}",)
    assert on_sp.owners == ()

    # The engine plans rotations from app registration rows only.
    planned = apps_from_inventory(store.inventory())
    sp_ids = {r.sp_object_id for r in store.inventory() if r.on_service_principal}
    assert not {a.object_id for a in planned.values()} & sp_ids
    assert emu.tenant.app_by_display_name("billing-legacy").app_id in planned
    assert partner.app_id not in planned


async def test_a_failed_service_principal_listing_makes_the_scan_partial(
    emu: RunningEmulator, store: SqlStore
) -> None:
    first = await _scan(emu, store, full=True)
    assert first.status is ScanStatus.SUCCEEDED
    before = {r.key_id for r in _rows(store, emu, "partner-sync")}
    emu.faults.update({"error_rates": {"graph.servicePrincipals": {"403": 1.0}}})
    report = await _scan(emu, store, full=True)  # a full listing, not the changes
    assert report.status is ScanStatus.PARTIAL
    assert any("service principals" in e for _, e in report.errors)
    assert report.apps_seen == first.apps_seen
    # The service principals' credentials keep their last known rows.
    assert {r.key_id for r in _rows(store, emu, "partner-sync")} == before
    billing = _rows(store, emu, "billing-legacy")
    assert sorted(str(r.source) for r in billing) == ["application", "servicePrincipal"]


async def test_apps_with_a_federated_credential_and_a_secret_are_found(
    emu: RunningEmulator, store: SqlStore
) -> None:
    emu.faults.reset_counters()
    report = await _scan(emu, store, full=True)  # the count is of a full listing
    assert report.status is ScanStatus.SUCCEEDED, report.errors
    (deploy,) = _rows(store, emu, "gh-deploy")  # a federated credential and a secret
    assert deploy.federated is True and deploy.kind is CredentialKind.SECRET
    assert not any(r.federated for r in _rows(store, emu, "billing-legacy"))
    assert _rows(store, emu, "aks-workload") == []  # federated, nothing else to hold
    findings = [f for f in credential_findings(store.inventory(), PostureRules(),
                                               datetime.now(UTC))
                if f.kind is FindingKind.FEDERATED_WITH_SECRET]
    assert [(f.app_id, f.app_name) for f in findings] == [(deploy.app_id, "gh-deploy")]
    assert deploy.key_id in findings[0].message
    # One advanced query, not one request per app (the seeded tenant needs one page).
    assert emu.faults.count_of("graph.list", 200) == 2
