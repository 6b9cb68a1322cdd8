"""`/api/v1` of a running `rotator serve`, called with real Entra tokens of the emulated
tenant (azure-identity, client credentials for ``api://rotator/.default``), and with every
forged token an attacker would try."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rotator.emulator.pki import make_tls_material
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.seed import API_ADMIN_NAME, ROTATOR_API_NAME, ROTATOR_API_URI, WEB_API_URI
from rotator.emulator.tenant import make_secret_text
from tests.support.api import (
    admin_token,
    alg_none,
    claims_of,
    hs256_with_public_key,
    reader_token,
    seeded_client,
    signed_by_tenant,
    tampered,
    token_for,
    unpublished_key,
)
from tests.support.serve import Served, seed_consumer_secret, serving, wait_for, write_policy

CANARY = "CANARY"


@pytest.fixture(scope="module")
def managed(emu: RunningEmulator) -> tuple[str, str]:
    """A managed app that is not due (so only the API starts its rotation), whose secret
    holds a canary that must never appear in an answer."""
    return _managed_app(emu, "api-managed")


@pytest.fixture(scope="module")
def held(emu: RunningEmulator) -> tuple[str, str]:
    """A managed app whose policy keeps the old secret 24 hours after promote: its
    rotation stays in flight for the whole module."""
    return _managed_app(emu, "api-held")


def _managed_app(emu: RunningEmulator, prefix: str) -> tuple[str, str]:
    value = f"{CANARY}-{uuid.uuid4().hex}"
    app = emu.tenant.create_app(f"{prefix}-{uuid.uuid4().hex[:6]}",
                                secrets=[(value, datetime.now(UTC) + timedelta(days=170))])
    seed_consumer_secret(emu, app, value)
    return app.app_id, value


@pytest.fixture(scope="module")
def served(emu: RunningEmulator, managed: tuple[str, str], held: tuple[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("api")
    policy = write_policy(work / "policy.toml", emu.base_url, [managed[0]],
                          scan_interval_minutes=5, reconcile_interval_seconds=30)
    with policy.open("a") as f:
        f.write(f'[[app]]\napp_id = "{held[0]}"\ngrace_hours = 24\n')
        f.write(f'[api]\naudience = "{ROTATOR_API_URI}"\n')
    # The API answers HTTPS, with a certificate from a CA of the test's own.
    tls = make_tls_material(("127.0.0.1",))
    files = {}
    for name, pem in (("ca", tls.ca_cert_pem), ("cert", tls.server_cert_pem),
                      ("key", tls.server_key_pem)):
        files[name] = work / f"{name}.pem"
        files[name].write_bytes(pem)
    TRUST.update(verify=ssl.create_default_context(cafile=str(files["ca"])))
    env = {"ROTATOR_TLS_CERT_FILE": str(files["cert"]), "ROTATOR_TLS_KEY_FILE": str(files["key"])}
    with serving(emu, f"sqlite:///{work / 'rotator.db'}", policy, work / "serve.log",
                 extra_env=env) as s:
        wait_for(lambda: call(s, "GET", "/readyz").status_code == 200, 60, "the first scan")
        yield s


TRUST: dict[str, Any] = {}


def https(served: Served, path: str) -> str:
    return f"https://127.0.0.1:{served.port}{path}"


def call(served: Served, method: str, path: str, token: str | None = None,
         **kw: Any) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, https(served, path), headers=headers, timeout=30,
                         verify=TRUST["verify"], **kw)


def refused_as_invalid_token(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    return str(response.json()["error_description"])


def test_no_token_is_401_with_a_bearer_challenge(served: Served) -> None:
    response = call(served, "GET", "/api/v1/credentials")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="rotator"'
    assert "api://rotator" in response.json()["error_description"]
    basic = call(served, "GET", "/api/v1/rotations",
                 headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401
    assert 'error="invalid_request"' in basic.headers["WWW-Authenticate"]


def test_a_reader_reads_pages_and_is_refused_a_rotation(
        served: Served, emu: RunningEmulator, managed: tuple[str, str]) -> None:
    token = reader_token(emu)
    assert claims_of(token)["roles"] == ["ReadOnly"]  # granted, with admin consent
    first = call(served, "GET", "/api/v1/credentials?limit=3", token)
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 3 and page["total"] > 3 and page["next"]
    assert page["next"].startswith(https(served, "/api/v1/credentials?"))
    second = httpx.get(page["next"], headers={"Authorization": f"Bearer {token}"}, timeout=30,
                       verify=TRUST["verify"])
    assert second.json()["offset"] == 3
    assert {i["key_id"] for i in page["items"]}.isdisjoint(
        i["key_id"] for i in second.json()["items"])
    mine = call(served, "GET", "/api/v1/credentials?managed=true&source=application", token)
    assert managed[0] in [i["app_id"] for i in mine.json()["items"]]
    assert all(i["managed"] and i["source"] == "application" for i in mine.json()["items"])
    soon = call(served, "GET", "/api/v1/credentials?within_days=30", token).json()["items"]
    assert all(i["days_left"] is None or i["days_left"] <= 30 for i in soon)
    assert call(served, "GET", "/api/v1/rotations?state=in_flight", token).status_code == 200
    assert call(served, "GET", "/api/v1/findings", token).status_code == 200
    bad = call(served, "GET", "/api/v1/rotations?state=sideways", token)
    assert bad.status_code == 400 and "in_flight" in bad.json()["message"]

    refused = call(served, "POST", f"/api/v1/apps/{managed[0]}/rotate", token)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert "Admin" in refused.json()["error_description"]


def test_an_admin_rotates_an_app_and_sees_it_complete(
        served: Served, emu: RunningEmulator, managed: tuple[str, str]) -> None:
    app_id, old_value = managed
    admin_id, _ = seeded_client(emu, API_ADMIN_NAME)
    token = admin_token(emu)
    dry = call(served, "POST", f"/api/v1/apps/{app_id}/rotate", token, json={"dry_run": True})
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    started = call(served, "POST", f"/api/v1/apps/{app_id}/rotate", token,
                   json={"retire_now": True})
    assert started.status_code == 202, started.text
    rotation_id = started.json()["rotation_id"]
    assert started.headers["Location"] == f"/api/v1/rotations/{rotation_id}"

    answers: list[str] = []

    def done() -> bool:
        response = call(served, "GET", f"/api/v1/rotations/{rotation_id}", token)
        answers.append(response.text)
        return bool(response.json()["state"] == "completed")

    wait_for(done, 60, "the rotation to complete", every=0.5)
    final = call(served, "GET", f"/api/v1/rotations/{rotation_id}", token).json()
    plan = next(e for e in final["audit"] if e["step"] == "plan")
    assert plan["details"]["requested_by_client_id"] == admin_id
    assert plan["details"]["requested_by_object_id"] == claims_of(token)["oid"]
    assert emu.tenant.match_secret(emu.tenant.find_app(app_id=app_id), old_value) is None
    for path in ("/api/v1/credentials", "/api/v1/rotations", "/api/v1/findings"):
        answers.append(call(served, "GET", path, token).text)
    # Not the old secret, nor the new one now in the vault, in any answer.
    new_value = emu.tenant.vault.versions(f"rotator-{app_id}")[-1].value
    assert new_value != old_value
    for text in answers:
        assert CANARY not in text and new_value not in text


def test_an_app_in_flight_answers_with_its_rotation(
        served: Served, emu: RunningEmulator, held: tuple[str, str]) -> None:
    token = admin_token(emu)
    first = call(served, "POST", f"/api/v1/apps/{held[0]}/rotate", token)
    assert first.status_code == 202 and first.json()["in_flight"] is False
    rotation_id = first.json()["rotation_id"]
    wait_for(lambda: call(served, "GET", f"/api/v1/rotations/{rotation_id}", token
                          ).json()["state"] == "promoted", 60, "promote")
    again = call(served, "POST", f"/api/v1/apps/{held[0]}/rotate", token)
    assert again.status_code == 202
    assert (again.json()["rotation_id"], again.json()["in_flight"]) == (rotation_id, True)
    listed = call(served, "GET", f"/api/v1/rotations?state=in_flight&app_id={held[0]}",
                  token).json()
    assert [r["id"] for r in listed["items"]] == [rotation_id] and listed["total"] is None
    trail = call(served, "GET", f"/api/v1/rotations/{rotation_id}", token).json()["audit"]
    asked_again = [e for e in trail if e["step"] == "api.rotate"]
    assert len(asked_again) == 1
    assert asked_again[0]["details"]["requested_by_client_id"] == claims_of(token)["appid"]


def test_a_client_granted_a_role_through_graph_gets_in(
        served: Served, emu: RunningEmulator) -> None:
    """What the tenant admin does for a new pipeline: register a client, give it a secret,
    grant it ReadOnly on rotator's API with admin consent (Graph appRoleAssignedTo)."""
    secret = make_secret_text()
    client = emu.tenant.create_app(f"pipeline-{uuid.uuid4().hex[:6]}", owned_by_rotator=False,
                                   secrets=[(secret, datetime.now(UTC) + timedelta(days=30))])
    before = token_for(emu, client.app_id, secret)
    assert "roles" not in claims_of(before)
    assert call(served, "GET", "/api/v1/findings", before).status_code == 403

    admin_id, admin_secret = emu.tenant.admin_app_id, emu.tenant.admin_secret
    graph = token_for(emu, admin_id, admin_secret, "https://graph.microsoft.com/.default")
    api_sp = emu.tenant.sp_by_app_id(emu.tenant.app_by_display_name(ROTATOR_API_NAME).app_id)
    client_sp = emu.tenant.sp_by_app_id(client.app_id)
    assert api_sp is not None and client_sp is not None
    role = next(r for r in emu.tenant.app_roles_of(api_sp) if r.value == "ReadOnly")
    granted = httpx.post(
        f"{emu.base_url}/v1.0/servicePrincipals/{api_sp.id}/appRoleAssignedTo",
        json={"principalId": client_sp.id, "resourceId": api_sp.id, "appRoleId": role.id},
        headers={"Authorization": f"Bearer {graph}"}, timeout=30,
        verify=ssl.create_default_context(cafile=str(emu.ca_file)))
    assert granted.status_code == 201, granted.text
    after = token_for(emu, client.app_id, secret)
    assert claims_of(after)["roles"] == ["ReadOnly"]
    assert call(served, "GET", "/api/v1/findings", after).status_code == 200


def test_forged_and_foreign_tokens_are_refused(served: Served, emu: RunningEmulator) -> None:
    real = admin_token(emu)
    assert call(served, "GET", "/api/v1/credentials", real).status_code == 200
    now = int(time.time())
    other_tenant = str(uuid.uuid4())
    forged = {
        "expired": signed_by_tenant(emu, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "not yet valid": signed_by_tenant(emu, nbf=now + 3600, exp=now + 7200),
        # A real token of the tenant, for another API (the walkthrough's web API).
        "wrong audience": _token_for_web_api(emu),
        "wrong tenant": signed_by_tenant(
            emu, tid=other_tenant, iss=f"https://sts.windows.net/{other_tenant}/"),
        "issuer of another tenant": signed_by_tenant(
            emu, iss=f"https://sts.windows.net/{other_tenant}/"),
        "tid of another tenant": signed_by_tenant(emu, tid=other_tenant),
        "no tid": signed_by_tenant(emu, tid=None),
        "alg none": alg_none(real),
        "HS256 keyed with the public key": hs256_with_public_key(emu, real),
        "tampered payload": tampered(real, roles=["Admin", "ReadOnly", "Owner"],
                                     appid=str(uuid.uuid4())),
        "a key the tenant never published": unpublished_key(real),
        "an unpublished key under a published kid": unpublished_key(
            real, kid=emu.state.tokens._key.kid),
        "not a JWT": "not-a-token",
    }
    for what, token in forged.items():
        response = call(served, "POST", "/api/v1/apps/" + str(uuid.uuid4()) + "/rotate", token)
        description = refused_as_invalid_token(response)
        assert description, what
    assert "expired" in refused_as_invalid_token(
        call(served, "GET", "/api/v1/findings", forged["expired"]))
    assert "audience" in refused_as_invalid_token(
        call(served, "GET", "/api/v1/findings", forged["wrong audience"]))


def _token_for_web_api(emu: RunningEmulator) -> str:
    """A genuine token of this tenant, for another API: the walkthrough's myclient asking
    for the web API it holds ReadOnly on."""
    from rotator.emulator.seed import CLIENT_NAME

    token = token_for(emu, *seeded_client(emu, CLIENT_NAME), scope=f"{WEB_API_URI}/.default")
    assert claims_of(token)["aud"] == WEB_API_URI
    return token


def test_plain_http_is_not_answered(served: Served) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(served.url("/api/v1/openapi.json"), timeout=5)


def test_openapi_document_lists_the_endpoints(served: Served) -> None:
    doc = call(served, "GET", "/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/v1/credentials", "/api/v1/rotations", "/api/v1/rotations/{rotation_id}",
        "/api/v1/findings", "/api/v1/apps/{app_id}/rotate"}

