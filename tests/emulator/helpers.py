"""Helpers for the emulator tests: token requests, certificates, proofs of possession."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator
from tests.support.certs import Cert, make_cert

__all__ = ["Cert", "make_cert"]  # shared with other test directories through tests.support


def token_for(
    http: httpx.Client, emu: RunningEmulator, client_id: str, secret: str, scope: str
) -> httpx.Response:
    return http.post(
        f"/{emu.tenant.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
    )


def claims_of(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def rotator_credential(emu: RunningEmulator) -> Any:
    env = emu.env
    return sdk_clients.async_secret_credential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority_host=env["ROTATOR_AUTHORITY_HOST"],
        ca_bundle=env["ROTATOR_CA_BUNDLE"],
    )


def admin_credential(emu: RunningEmulator) -> Any:
    """The seeded tenant administrator (Application.ReadWrite.All, Policy.ReadWrite...)."""
    env = emu.env
    return sdk_clients.async_secret_credential(
        env["AZURE_TENANT_ID"],
        env["EMULATOR_ADMIN_CLIENT_ID"],
        env["EMULATOR_ADMIN_CLIENT_SECRET"],
        authority_host=env["ROTATOR_AUTHORITY_HOST"],
        ca_bundle=env["ROTATOR_CA_BUNDLE"],
    )


def make_proof(
    cert: Cert,
    object_id: str,
    *,
    lifetime: int = 600,
    aud: str = "00000002-0000-0000-c000-000000000000",
) -> str:
    now = int(time.time())
    return jwt.encode(
        {"aud": aud, "iss": object_id, "nbf": now, "exp": now + lifetime},
        cert.key,
        algorithm="RS256",
        headers={"x5t": cert.x5t},
    )


def padded(token: str) -> str:
    """The same JWS with ``=`` padding put back on each base64url segment."""
    return ".".join(part + "=" * (-len(part) % 4) for part in token.split("."))
