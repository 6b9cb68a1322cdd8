"""Callers of rotator's API: real tokens from the emulated tenant through azure-identity,
and the forged ones an attacker would try."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rotator.adapters.sdk_clients import sync_secret_credential
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.seed import API_ADMIN_NAME, API_READER_NAME, ROTATOR_API_URI

API_SCOPE = f"{ROTATOR_API_URI}/.default"


def token_for(emu: RunningEmulator, client_id: str, secret: str, scope: str = API_SCOPE) -> str:
    """A client-credentials access token, asked for the way a pipeline would."""
    credential = sync_secret_credential(
        emu.tenant.tenant_id, client_id, secret, authority_host=emu.base_url,
        ca_bundle=str(emu.ca_file))
    try:
        return credential.get_token(scope).token
    finally:
        credential.close()


def seeded_client(emu: RunningEmulator, name: str) -> tuple[str, str]:
    """(client id, secret) of a client the emulator seeds."""
    return emu.tenant.app_by_display_name(name).app_id, emu.tenant.scenario_secrets[name]


def reader_token(emu: RunningEmulator) -> str:
    return token_for(emu, *seeded_client(emu, API_READER_NAME))


def admin_token(emu: RunningEmulator) -> str:
    return token_for(emu, *seeded_client(emu, API_ADMIN_NAME))


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def signed_by_tenant(emu: RunningEmulator, **changes: Any) -> str:
    """A token signed with the tenant's real key, with claims changed (or removed, with
    None): what only a broken issuer would make, to prove each check on its own."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": ROTATOR_API_URI, "iss": f"https://sts.windows.net/{emu.tenant.tenant_id}/",
        "iat": now, "nbf": now, "exp": now + 3600, "appid": str(uuid.uuid4()),
        "appidacr": "1", "oid": str(uuid.uuid4()), "tid": emu.tenant.tenant_id,
        "roles": ["Admin", "ReadOnly"], "ver": "1.0",
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    key = emu.state.tokens._key  # the key the tenant signs with now
    return jwt.encode(claims, key.private_key, algorithm="RS256",
                      headers={"kid": key.kid, "x5t": key.kid, "typ": "JWT"})


def alg_none(token: str) -> str:
    """The token's claims under ``alg: none`` and no signature."""
    header = {"typ": "JWT", "alg": "none", "kid": jwt.get_unverified_header(token)["kid"]}
    return f"{_segment(header)}.{_segment(claims_of(token))}."


def hs256_with_public_key(emu: RunningEmulator, token: str) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the tenant's public key."""
    key = emu.state.tokens._key
    pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"typ": "JWT", "alg": "HS256", "kid": key.kid}
    signing_input = f"{_segment(header)}.{_segment(claims_of(token))}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed and its signature kept."""
    head, _payload, sig = token.split(".")
    return f"{head}.{_segment({**claims_of(token), **changes})}.{sig}"


def unpublished_key(token: str, *, kid: str | None = None) -> str:
    """The token's claims signed by a key the tenant never published."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = kid or _b64(uuid.uuid4().bytes)
    return jwt.encode(claims_of(token), key, algorithm="RS256",
                      headers={"kid": name, "x5t": name, "typ": "JWT"})
