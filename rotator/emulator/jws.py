"""JWTs: parsing what clients send (both assertion dialects) and the tenant's access tokens."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from rotator.emulator.pki import SigningKey, b64url_decode

ACCESS_TOKEN_LIFETIME = 3599


class BadJws(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Jws:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def x5t(self) -> bytes | None:
        value = self.header.get("x5t")
        return b64url_decode(value) if isinstance(value, str) else None

    @property
    def x5t_s256(self) -> bytes | None:
        value = self.header.get("x5t#S256")
        return b64url_decode(value) if isinstance(value, str) else None

    def verify(self, key: PublicKeyTypes) -> bool:
        alg = self.header.get("alg")
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        if alg == "RS256":
            pad: padding.AsymmetricPadding = padding.PKCS1v15()
        elif alg == "PS256":
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        else:
            return False
        try:
            key.verify(self.signature, self.signing_input, pad, hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def parse_jws(token: str, *, strict: bool = False) -> Jws:
    """Split and decode without verifying.

    Client assertions may carry ``=`` padding (async azure-identity keeps it and Entra
    takes it); ``strict`` refuses it, as Graph does for proofs of possession.
    """
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise BadJws("not a JWS compact serialization")
    if strict and any("=" in part for part in parts):
        raise BadJws("a segment carries base64 padding")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, json.JSONDecodeError) as exc:
        raise BadJws("malformed segment") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise BadJws("header and claims must be objects")
    return Jws(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def v1_issuer(tenant_id: str) -> str:
    """What every v1 access token names as its issuer, whichever endpoint issued it."""
    return f"https://sts.windows.net/{tenant_id}/"


class AccessTokens:
    """Issues and checks the tenant's RS256 access tokens.

    The shape follows the resource's ``accessTokenAcceptedVersion``, not the endpoint
    asked: a v1 token names the client in ``appid``/``appidacr`` and is issued by
    ``https://sts.windows.net/{tid}/``; a v2 token names it in ``azp``/``azpacr`` and
    is issued by the v2.0 authority. Neither carries the other's pair.
    """

    def __init__(self, key: SigningKey, tenant_id: str, issuer: str) -> None:
        self._key = key
        # Every key the tenant publishes; tokens signed by any of them stay valid.
        self.published: dict[str, SigningKey] = {key.kid: key}
        self.tenant_id = tenant_id
        self.issuer = issuer  # the v2.0 authority's issuer
        self.v1_issuer = v1_issuer(tenant_id)
        # Seconds a new token is valid; a test shortens it to see clients renew tokens.
        self.lifetime = ACCESS_TOKEN_LIFETIME

    def roll(self) -> SigningKey:
        """Sign with a new key from now on, as Entra rolls its keys; the old one stays
        published (and valid) beside it."""
        new = SigningKey()
        self.published[new.kid] = new
        self._key = new
        return new

    def jwks(self) -> dict[str, object]:
        return {"keys": [k.jwk() for k in self.published.values()]}

    def issue(
        self,
        *,
        audience: str,
        client_app_id: str,
        client_sp_id: str,
        appidacr: str,
        roles: list[str],
        version: int = 1,
    ) -> str:
        """``appidacr``: 1 for a client secret, 2 for a certificate (``azpacr`` in v2)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.v1_issuer if version == 1 else self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime + 1,
            "aio": uuid.uuid4().hex,
        }
        if version == 1:
            claims.update(appid=client_app_id, appidacr=appidacr, idp=self.v1_issuer)
        else:
            claims.update(azp=client_app_id, azpacr=appidacr)
        claims.update({
            "idtyp": "app",
            "oid": client_sp_id,
            "rh": "0.emulated",
            "sub": client_sp_id,
            "tid": self.tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0" if version == 1 else "2.0",
        })
        if roles:
            claims["roles"] = roles
        return jwt.encode(
            claims,
            self._key.private_key,
            algorithm="RS256",
            headers={"kid": self._key.kid, "x5t": self._key.kid, "typ": "JWT"},
        )

    def verify(self, token: str, audiences: tuple[str, ...]) -> dict[str, Any]:
        """Claims of a valid token for one of ``audiences``; raises ``jwt.InvalidTokenError``."""
        header = jwt.get_unverified_header(token)
        key = self.published.get(str(header.get("kid")))
        if key is None:
            raise jwt.InvalidSignatureError("unknown signing key")
        claims: dict[str, Any] = jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=["RS256"],
            audience=list(audiences),
            issuer=[self.v1_issuer, self.issuer],
            options={"require": ["exp", "aud", "iss", "tid"]},
            leeway=5,
        )
        if claims.get("tid") != self.tenant_id:
            raise jwt.InvalidTokenError("token is for another tenant")
        return claims
