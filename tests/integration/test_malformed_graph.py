"""Malformed and surprising Graph answers, read through the real Graph adapter.

The SDK stack is the production one (msgraph-sdk's request adapter, azure-identity
against the emulator's token endpoint); only the bodies of the application reads
come from :mod:`tests.integration.crafted_graph`. What a user expects:

- one app Graph describes badly is skipped and named in the scan's errors (scan
  ``partial``), the rest of the tenant is still recorded, and the bad app keeps
  its last known inventory;
- a page that cannot be read fails the scan with a message that says so, and a
  failed scan prunes nothing;
- a rotation whose app cannot be read is refused before anything is written.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rotator.adapters import graph as graph_adapter
from rotator.adapters.db import SqlStore
from rotator.bootstrap import engine_deps, load, open_store
from rotator.domain.credentials import CredentialKind
from rotator.domain.records import InventoryRow, ScanStatus
from rotator.emulator.runner import RunningEmulator, start_emulator
from rotator.engine.context import EngineDeps
from rotator.engine.scan import ScanReport, scan
from rotator.engine.start import RotationRefused, plan_rotation
from rotator.ports import DirectoryError
from tests.integration.crafted_graph import CraftedGraph, Raw, crafted_graph
from tests.support.emulated import consumer_latest, make_app, rotator_env, run_rotator, write_policy

END = "2027-01-01T00:00:00Z"
END_AT = datetime(2027, 1, 1, tzinfo=UTC)

App = dict[str, Any]


def guid() -> str:
    return str(uuid.uuid4())


def cred(**fields: Any) -> dict[str, Any]:
    return {"keyId": guid(), "displayName": "x", "startDateTime": "2025-01-01T00:00:00Z",
            "endDateTime": END, "hint": "abc", "customKeyIdentifier": None, **fields}


def cert(**fields: Any) -> dict[str, Any]:
    return {"keyId": guid(), "displayName": "CN=x", "startDateTime": "2025-01-01T00:00:00Z",
            "endDateTime": END, "type": "AsymmetricX509Cert", "usage": "Verify",
            "customKeyIdentifier": "0123456789ABCDEF0123456789ABCDEF01234567", **fields}


def app(*secrets: dict[str, Any], certs: tuple[dict[str, Any], ...] = (), **fields: Any) -> App:
    return {"id": guid(), "appId": guid(), "displayName": "an app",
            "passwordCredentials": list(secrets) if secrets else [cred()],
            "keyCredentials": list(certs), **fields}


def page(*apps: object, **fields: Any) -> dict[str, Any]:
    return {"@odata.context": "https://graph/v1.0/$metadata#applications", "value": list(apps),
            **fields}


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def graph(emu: RunningEmulator) -> Iterator[CraftedGraph]:
    with crafted_graph(emu) as g:
        yield g


@pytest.fixture(autouse=True)
def _fresh(graph: CraftedGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    graph.reset()
    # A broken page is asked again before the scan fails (tests/integration/
    # test_scan_retries.py covers how); here only the outcome counts, not the waiting.
    monkeypatch.setattr(graph_adapter, "PAGE_RETRY_SECONDS", 0.01)


@pytest.fixture
def stores() -> Iterator[list[SqlStore]]:
    opened: list[SqlStore] = []
    yield opened
    for s in opened:
        s.close()


@pytest.fixture
def store(emu: RunningEmulator, graph: CraftedGraph, database_url: str,
          stores: list[SqlStore]) -> SqlStore:
    s = open_store(load({**graph.env(emu), "ROTATOR_DATABASE_URL": database_url}).settings)
    stores.append(s)
    return s


@pytest.fixture
def sqlite_store(emu: RunningEmulator, graph: CraftedGraph, tmp_path: Path,
                 stores: list[SqlStore]) -> SqlStore:
    url = f"sqlite:///{tmp_path / 'only-sqlite.db'}"
    s = open_store(load({**graph.env(emu), "ROTATOR_DATABASE_URL": url}).settings)
    stores.append(s)
    return s


@pytest.fixture
def deps_for(emu: RunningEmulator, graph: CraftedGraph, tmp_path: Path
             ) -> Callable[[SqlStore], Any]:
    """EngineDeps over the real SDKs with Graph served by the crafted server."""
    def make(store: SqlStore, policy: Path | None = None) -> Any:
        # The store is handed in; this URL is never opened.
        env = {**graph.env(emu), "ROTATOR_DATABASE_URL": "sqlite://"}
        if policy is not None:
            env["ROTATOR_CONFIG"] = str(policy)

        async def no_wait(_: float) -> None:
            return None

        return engine_deps(load(env), store, sleep=no_wait)
    return make


async def run_scan(deps_for: Callable[[SqlStore], Any], store: SqlStore) -> ScanReport:
    deps_cm: Any = deps_for(store)
    async with deps_cm as deps:
        # A scan that never ends is a failure too (a paging loop, say).
        return await asyncio.wait_for(scan(deps), 30)


def rows_of(store: SqlStore, app_id: str) -> list[InventoryRow]:
    return store.inventory(app_id=app_id)


def errors_of(report: ScanReport) -> dict[str | None, str]:
    return dict(report.errors)


# ------------------------------------------------------------------ the control


async def test_a_well_formed_tenant_of_two_pages_scans_clean(
    tmp_path: Path, stores: list[SqlStore],
) -> None:
    """What the emulator answers, shaped like Graph, passes the strict reading untouched."""
    with start_emulator(apps=1100, seed=5, workdir=tmp_path / "emu") as big:
        env = {**big.env, "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'control.db'}"}
        loaded = load(env)
        store = open_store(loaded.settings)
        stores.append(store)
        async with engine_deps(loaded, store) as deps:
            report = await asyncio.wait_for(scan(deps), 60)

    assert report.status == "succeeded" and report.errors == [] and report.error is None
    assert report.apps_seen > 999  # more than one page
    assert report.credentials_seen == len(store.inventory())


# ------------------------------------------------------------------ one bad app


def _del(*path: str | int) -> Callable[[App], None]:
    def mutate(a: App) -> None:
        target: Any = a
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
    return mutate


def _set(value: Any, *path: str | int) -> Callable[[App], None]:
    def mutate(a: App) -> None:
        target: Any = a
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return mutate


def _dup_key(a: App) -> None:
    a["passwordCredentials"].append(cred(keyId=a["passwordCredentials"][0]["keyId"].upper()))


def _dup_key_across_kinds(a: App) -> None:
    a["keyCredentials"].append(cert(keyId=a["passwordCredentials"][0]["keyId"]))


# (case, how the app is spoilt, words the reported error must hold)
BAD_APPS: list[tuple[str, Callable[[App], None], tuple[str, ...]]] = [
    ("no appId", _del("appId"), ("appId",)),
    ("appId null", _set(None, "appId"), ("appId",)),
    ("appId not a GUID", _set("a" * 100, "appId"), ("appId", "GUID")),
    ("no id", _del("id"), ("id",)),
    ("id null", _set(None, "id"), ("id",)),
    ("id a number", _set(12345, "id"), ("id",)),
    ("displayName a number", _set(42, "displayName"), ("displayName",)),
    ("no passwordCredentials", _del("passwordCredentials"), ("passwordCredentials",)),
    ("passwordCredentials null", _set(None, "passwordCredentials"), ("passwordCredentials",)),
    ("passwordCredentials a string", _set("x", "passwordCredentials"),
     ("passwordCredentials",)),
    ("no keyCredentials", _del("keyCredentials"), ("keyCredentials",)),
    ("credential not an object", _set(["x"], "passwordCredentials"), ("passwordCredentials",)),
    ("no keyId", _del("passwordCredentials", 0, "keyId"), ("keyId",)),
    ("keyId null", _set(None, "passwordCredentials", 0, "keyId"), ("keyId",)),
    ("keyId not a GUID", _set("k1", "passwordCredentials", 0, "keyId"), ("keyId", "GUID")),
    ("no endDateTime", _del("passwordCredentials", 0, "endDateTime"), ("endDateTime",)),
    ("endDateTime null", _set(None, "passwordCredentials", 0, "endDateTime"),
     ("endDateTime",)),
    ("endDateTime a number", _set(12345, "passwordCredentials", 0, "endDateTime"),
     ("endDateTime",)),
    ("endDateTime garbage", _set("not-a-date", "passwordCredentials", 0, "endDateTime"),
     ("endDateTime", "not-a-date")),
    ("endDateTime past year 9999 in UTC",
     _set("9999-12-31T23:59:59-05:00", "passwordCredentials", 0, "endDateTime"),
     ("endDateTime", "range")),
    ("startDateTime garbage", _set("yesterday", "passwordCredentials", 0, "startDateTime"),
     ("startDateTime",)),
    ("credential displayName a number", _set(7, "passwordCredentials", 0, "displayName"),
     ("displayName",)),
    ("duplicated keyId", _dup_key, ("duplicated keyId",)),
    ("duplicated keyId across kinds", _dup_key_across_kinds, ("duplicated keyId",)),
    # Longer than the inventory columns: PostgreSQL refuses the whole batch.
    ("hint too long", _set("h" * 65, "passwordCredentials", 0, "hint"), ("hint",)),
    ("customKeyIdentifier too long",
     lambda a: a["keyCredentials"].append(cert(customKeyIdentifier="Q" * 400)),
     ("customKeyIdentifier",)),
]


@pytest.mark.parametrize(("spoil", "words"), [(s, w) for _, s, w in BAD_APPS],
                         ids=[c for c, _, _ in BAD_APPS])
async def test_one_bad_app_is_skipped_and_named(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
    spoil: Callable[[App], None], words: tuple[str, ...],
) -> None:
    before, after = app(), app(certs=(cert(),))
    bad = app()
    spoil(bad)
    graph.pages = [page(before, bad, after)]

    report = await run_scan(deps_for, store)

    assert report.status == "partial" and report.error is None
    assert report.apps_seen == 2 and report.credentials_seen == 3
    assert len(report.errors) == 1
    raw_id, message = report.errors[0]
    bad_id = bad.get("id")
    assert raw_id == (str(bad_id) if bad_id is not None else None)
    if bad_id is None:
        assert bad["appId"] in message  # without an object id, the app id names it
    for word in words:
        assert word in message
    assert len(message) < 300  # a bad value is quoted, not dumped
    for good in (before, after):
        assert {r.key_id for r in rows_of(store, good["appId"])} == {
            c["keyId"] for c in good["passwordCredentials"] + good["keyCredentials"]}
    if isinstance(bad.get("appId"), str) and len(bad["appId"]) <= 64:
        assert rows_of(store, bad["appId"]) == []
    last = store.last_scan()
    assert last is not None and last.status is ScanStatus.PARTIAL
    assert [e.raw_id for e in last.errors] == [raw_id]


async def test_missing_credentials_keep_the_last_known_inventory(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
) -> None:
    """Absent credential lists mean "not told", not "none": expiry must stay visible."""
    known, other = app(), app()
    graph.pages = [page(known, other)]
    first = await run_scan(deps_for, store)
    assert first.status == "succeeded"

    unknown = {k: v for k, v in known.items() if k != "passwordCredentials"}
    graph.pages = [page(unknown, other)]
    second = await run_scan(deps_for, store)

    assert second.status == "partial"
    assert list(errors_of(second)) == [known["id"]]
    assert [r.key_id for r in rows_of(store, known["appId"])] == [
        known["passwordCredentials"][0]["keyId"]]


async def test_values_graph_may_leave_out_are_tolerated(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
) -> None:
    secret = cred(displayName=None, hint=None, customKeyIdentifier=None, secretText=None,
                  futureField={"nested": [1, 2]})
    del secret["startDateTime"]
    certificate = cert(displayName=None, customKeyIdentifier=None, key=None)
    odd = app(secret, certs=(certificate,), displayName=None,
              **{"@odata.type": "#microsoft.graph.application", "tags": None,
                 "brandNewProperty": True})
    odd["id"], odd["appId"] = odd["id"].upper(), odd["appId"].upper()
    graph.pages = [page(odd, unknownPageField=1)]

    report = await run_scan(deps_for, store)

    assert report.status == "succeeded" and report.errors == []
    rows = {r.key_id: r for r in rows_of(store, odd["appId"])}
    assert set(rows) == {secret["keyId"], certificate["keyId"]}
    s, c = rows[secret["keyId"]], rows[certificate["keyId"]]
    assert s.app_id == odd["appId"].lower() and s.object_id == odd["id"].lower()
    assert s.app_display_name == "" and s.display_name is None and s.hint is None
    assert s.start_at is None and s.end_at == END_AT and s.kind is CredentialKind.SECRET
    assert c.kind is CredentialKind.CERTIFICATE and c.thumbprint is None


async def test_dates_become_the_exact_utc_instant(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
) -> None:
    expected = {
        "2027-01-01T10:00:00+02:00": datetime(2027, 1, 1, 8, tzinfo=UTC),
        "2027-01-01T10:00:00": datetime(2027, 1, 1, 10, tzinfo=UTC),  # Graph means UTC
        "2027-01-01T10:00:00.1234567Z": datetime(2027, 1, 1, 10, 0, 0, 123456, tzinfo=UTC),
        "2027-01-01T10:00:00.1234567+02:00": datetime(2027, 1, 1, 8, 0, 0, 123456, tzinfo=UTC),
        "2027-01-01T00:30:00-05:30": datetime(2027, 1, 1, 6, tzinfo=UTC),
        "2026-12-31T23:00:00-01:00": datetime(2027, 1, 1, 0, tzinfo=UTC),
        "2027-01-01T10:00:00Z": datetime(2027, 1, 1, 10, tzinfo=UTC),
    }
    creds = {text: cred(endDateTime=text, startDateTime=text) for text in expected}
    a = app(*creds.values())
    graph.pages = [page(a)]

    report = await run_scan(deps_for, store)

    assert report.status == "succeeded"
    rows = {r.key_id: r for r in rows_of(store, a["appId"])}
    for text, instant in expected.items():
        row = rows[creds[text]["keyId"]]
        assert row.end_at == instant and row.start_at == instant, text
        assert row.end_at is not None and row.end_at.utcoffset() == timedelta(0)


# ------------------------------------------------------------------ duplicates, size


async def test_the_same_app_on_two_pages_is_counted_once(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
) -> None:
    twice, other = app(cred(), cred()), app()
    graph.pages = [page(twice, other), page(copy.deepcopy(twice))]

    report = await run_scan(deps_for, store)

    assert report.status == "succeeded" and report.errors == []
    assert report.apps_seen == 2 and report.credentials_seen == 3
    assert len(rows_of(store, twice["appId"])) == 2


async def test_one_app_id_on_two_objects_is_reported(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
) -> None:
    first = app()
    impostor = app(cred(keyId=first["passwordCredentials"][0]["keyId"]), appId=first["appId"])
    graph.pages = [page(first), page(impostor)]

    report = await run_scan(deps_for, store)

    assert report.status == "partial"
    assert list(errors_of(report)) == [impostor["id"]]
    assert first["id"] in errors_of(report)[impostor["id"]]
    assert [r.object_id for r in rows_of(store, first["appId"])] == [first["id"]]


async def test_a_key_id_shared_by_two_apps_is_recorded_for_both(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
) -> None:
    shared = guid()
    one, two = app(cred(keyId=shared)), app(cred(keyId=shared))
    graph.pages = [page(one, two)]

    report = await run_scan(deps_for, store)

    assert report.status == "succeeded"
    assert [r.key_id for r in rows_of(store, one["appId"])] == [shared]
    assert [r.key_id for r in rows_of(store, two["appId"])] == [shared]


def test_record_inventory_takes_repeated_keys_in_and_across_batches(store: SqlStore) -> None:
    app_id, key = guid(), guid()
    scan_id = store.start_scan(datetime.now(UTC))
    small = SqlStore(store.engine, batch_size=2)

    def row(end_day: int, spelling: str = app_id) -> InventoryRow:
        return InventoryRow(app_id=spelling, key_id=key, object_id=guid(), app_display_name="d",
                            kind=CredentialKind.SECRET, display_name=None, start_at=None,
                            end_at=datetime(2027, 1, end_day, tzinfo=UTC))

    rows = [row(1), row(2, app_id.upper()), row(3), row(4), row(5)]
    small.record_inventory(scan_id, rows, datetime.now(UTC))

    stored = rows_of(store, app_id)
    assert [(r.key_id, r.end_at) for r in stored] == [(key, datetime(2027, 1, 5, tzinfo=UTC))]


async def test_a_page_of_999_apps_and_an_app_with_2000_credentials(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
) -> None:
    big = app(*(cred() for _ in range(2000)))
    first = page(big, *(app() for _ in range(998)))
    last = app()
    graph.pages = [first, page(copy.deepcopy(big), last)]

    report = await run_scan(deps_for, store)

    assert report.status == "succeeded"
    assert report.apps_seen == 1000 and report.credentials_seen == 2000 + 998 + 1
    assert len(rows_of(store, big["appId"])) == 2000
    assert len(rows_of(store, last["appId"])) == 1


# ------------------------------------------------------------------ broken pages


@pytest.mark.parametrize(("second", "words"), [
    (Raw(b"<html><body>Service Unavailable</body></html>"), ("page 2", "not JSON")),
    (Raw(b'{"value": [{"id": "', "application/json"), ("page 2", "not JSON")),
    (Raw(b"", "application/json"), ("page 2", "no body")),
    (Raw(b"[1, 2]", "application/json"), ("page 2", "unexpected JSON")),
    (Raw(b"<html>Bad Gateway</html>", status=502), ("page 2", "502")),
    ({"@odata.context": "x"}, ("page 2", "value")),
    ({"value": None}, ("page 2", "value")),
    ({"value": "x"}, ("page 2", "value")),
], ids=["html", "truncated-json", "empty-body", "json-array", "502", "no-value", "value-null",
        "value-string"])
async def test_an_unreadable_next_page_fails_the_scan_and_prunes_nothing(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
    second: object, words: tuple[str, ...],
) -> None:
    seen, later = app(), app()
    graph.pages = [page(seen, later)]
    assert (await run_scan(deps_for, store)).status == "succeeded"

    graph.reset()
    graph.pages = [page(seen), second]
    report = await run_scan(deps_for, store)

    assert report.status == "failed" and report.error is not None
    for word in words:
        assert word in report.error
    # A failed scan must not make the apps it never reached look gone.
    assert len(rows_of(store, later["appId"])) == 1
    last = store.last_scan()
    assert last is not None and last.status is ScanStatus.FAILED and last.error == report.error
    assert [(r.method, r.query.endswith("page1")) for r in graph.received][-1] == ("GET", True)


async def test_empty_pages(
    deps_for: Callable[[SqlStore], Any], store: SqlStore, graph: CraftedGraph,
) -> None:
    a = app()
    graph.pages = [page(), page(), page(a)]
    report = await run_scan(deps_for, store)
    assert report.status == "succeeded" and report.apps_seen == 1

    graph.reset()
    graph.pages = [page()]
    report = await run_scan(deps_for, store)
    assert report.status == "succeeded" and report.apps_seen == 0 and report.errors == []


@pytest.mark.parametrize("link", ["loop", 123, "applications?$skiptoken=page1",
                                  "https://elsewhere.invalid/v1.0/applications"],
                         ids=["loop", "number", "relative", "other-host"])
async def test_a_bad_next_link_fails_the_scan(
    deps_for: Callable[[SqlStore], Any], sqlite_store: SqlStore, graph: CraftedGraph, link: object,
) -> None:
    first = page(app(), **{"@odata.nextLink": graph.page_url(0) if link == "loop" else link})
    graph.pages = [first, page(app())]

    report = await run_scan(deps_for, sqlite_store)

    assert report.status == "failed"
    assert report.error is not None and "nextLink" in report.error
    # Pages only: the scan first asks for delta links, which this crafted Graph lacks.
    assert len([r for r in graph.received if not r.path.endswith("/delta")]) <= 2


async def test_an_inventory_write_that_fails_is_recorded_as_a_failed_scan(
    deps_for: Callable[[SqlStore], Any], sqlite_store: SqlStore, graph: CraftedGraph,
) -> None:
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TRIGGER refuse BEFORE INSERT ON credentials "
            "BEGIN SELECT RAISE(ABORT, 'database refuses the row'); END"))
    graph.pages = [page(app())]

    report = await run_scan(deps_for, sqlite_store)

    assert report.status == "failed"
    assert report.error is not None and "database refuses the row" in report.error
    last = sqlite_store.last_scan()
    assert last is not None and last.status is ScanStatus.FAILED


# ------------------------------------------------------------------ the real CLI


def _cli_env(emu: RunningEmulator, graph: CraftedGraph, tmp_path: Path,
             policy: Path | None = None) -> dict[str, str]:
    return rotator_env(emu, f"sqlite:///{tmp_path / 'cli.db'}", policy,
                       ROTATOR_GRAPH_URL=graph.base_url, ROTATOR_CA_BUNDLE=str(graph.ca_bundle))


def test_cli_scan_reports_the_unreadable_app(emu: RunningEmulator, graph: CraftedGraph,
                                             tmp_path: Path) -> None:
    good = app(cred(endDateTime="2027-01-01T10:00:00+02:00"))
    bad = app()
    del bad["passwordCredentials"][0]["endDateTime"]
    graph.pages = [page(good), page(bad)]

    run = run_rotator(["scan", "--json"], _cli_env(emu, graph, tmp_path), timeout=120)

    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    out = json.loads(run.stdout)
    assert out["scan"]["status"] == "partial" and out["scan"]["apps"] == 1
    [unreadable] = out["scan"]["unreadable"]
    assert unreadable["id"] == bad["id"] and "endDateTime" in unreadable["error"]
    assert [(c["app_id"], c["end_date_time"]) for c in out["credentials"]] == [
        (good["appId"], "2027-01-01T08:00:00Z")]
    assert "scan partial" in run.stderr and "1 app(s) could not be read" in run.stderr


def test_cli_scan_with_a_broken_next_page_fails(emu: RunningEmulator, graph: CraftedGraph,
                                                tmp_path: Path) -> None:
    graph.pages = [page(app()), Raw(b"<html>upstream timed out</html>")]

    run = run_rotator(["scan"], _cli_env(emu, graph, tmp_path), timeout=120)

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "the scan failed" in run.stderr and "page 2" in run.stderr
    assert "not JSON" in run.stderr and "this list is not complete" in run.stderr


def test_cli_rotate_refuses_an_app_graph_returns_as_broken_json(
    emu: RunningEmulator, graph: CraftedGraph, tmp_path: Path,
) -> None:
    managed = make_app(emu)
    graph.apps[managed.app_id] = Raw(
        b'{"id": "' + managed.object_id.encode() + b'", "appId": ', "application/json")
    policy = write_policy(tmp_path / "policy.toml", [managed])
    env = _cli_env(emu, graph, tmp_path, policy)

    run = run_rotator(["rotate", "--app", managed.app_id, "--retire-now", "--json"], env,
                      timeout=120)

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert f"could not read app {managed.app_id}" in run.stderr and "not JSON" in run.stderr
    assert managed.old_secret not in run.stderr + run.stdout
    store = SqlStore.from_url(env["ROTATOR_DATABASE_URL"])
    try:
        assert store.list_rotations(app_id=managed.app_id) == []
    finally:
        store.close()
    assert [p.key_id for p in emu.tenant.passwords(managed.app_id)] == [managed.old_key_id]
    assert consumer_latest(emu, managed) is None
    assert graph.writes() == []
    reads = [r for r in graph.received if "appId=" in r.path]
    assert len(reads) >= 2 and all(r.authorized for r in reads)  # retried: it may be a glitch


# ------------------------------------------------------------------ rotation reads


@pytest.fixture
async def managed_deps(emu: RunningEmulator, deps_for: Callable[..., Any],
                       sqlite_store: SqlStore, tmp_path: Path
                       ) -> AsyncIterator[tuple[EngineDeps, Any]]:
    managed = make_app(emu)
    policy = write_policy(tmp_path / "policy.toml", [managed])
    async with deps_for(sqlite_store, policy) as deps:
        yield deps, managed


def _app_reads(graph: CraftedGraph) -> int:
    return sum(1 for r in graph.received if "appId=" in r.path)


async def test_plan_refuses_an_app_graph_describes_badly(
    managed_deps: tuple[EngineDeps, Any], graph: CraftedGraph, emu: RunningEmulator,
) -> None:
    deps, managed = managed_deps
    graph.apps[managed.app_id] = {
        "id": managed.object_id, "appId": managed.app_id, "displayName": "x",
        "passwordCredentials": [{"keyId": managed.old_key_id}], "keyCredentials": []}

    with pytest.raises(RotationRefused) as refused:
        await plan_rotation(deps, managed.app_id)

    assert "endDateTime" in str(refused.value) and managed.app_id in str(refused.value)
    assert _app_reads(graph) == 1  # the same answer would come back: no point retrying
    assert deps.store.list_rotations(app_id=managed.app_id) == []
    assert graph.writes() == []


async def test_plan_refuses_when_graph_answers_with_another_app(
    managed_deps: tuple[EngineDeps, Any], graph: CraftedGraph,
) -> None:
    deps, managed = managed_deps
    stranger = app()
    graph.apps[managed.app_id] = stranger

    with pytest.raises(RotationRefused) as refused:
        await plan_rotation(deps, managed.app_id)

    assert managed.app_id in str(refused.value) and stranger["appId"] in str(refused.value)
    assert graph.writes() == []


async def test_plan_does_not_mistake_an_empty_body_for_a_missing_app(
    managed_deps: tuple[EngineDeps, Any], graph: CraftedGraph,
) -> None:
    deps, managed = managed_deps
    graph.apps[managed.app_id] = Raw(b"", "application/json")

    with pytest.raises(RotationRefused) as refused:
        await plan_rotation(deps, managed.app_id)

    message = str(refused.value)
    assert "no app registration" not in message and "empty" in message
    assert graph.writes() == []


@pytest.mark.parametrize(("entry", "words"), [
    ({"keyId": "k1"}, ("keyId",)),
    ({"keyId": "KEY", "key": "%%% not base64 %%%"}, ("key",)),
    ({"keyId": "KEY", "endDateTime": "0001-01-01T00:00:00+01:00"}, ("endDateTime",)),
], ids=["keyId-not-a-guid", "key-not-base64", "date-out-of-range"])
async def test_key_credentials_that_could_not_be_written_back_are_refused_on_read(
    managed_deps: tuple[EngineDeps, Any], graph: CraftedGraph, entry: dict[str, Any],
    words: tuple[str, ...],
) -> None:
    """``PATCH keyCredentials`` writes back what was read; refuse it at the read."""
    deps, managed = managed_deps
    good = cert(key="AAEC")
    bad = {**cert(), **entry}
    if bad["keyId"] == "KEY":
        bad["keyId"] = guid()
    graph.objects[managed.object_id] = {"id": managed.object_id, "keyCredentials": [good, bad]}

    with pytest.raises(DirectoryError) as refused:
        await deps.directory.list_key_credentials(managed.object_id)

    for word in words:
        assert word in str(refused.value)
