"""Entra access tokens, validated locally: the adapter behind the API's ``AccessTokenValidator``.

What a web API protected by Entra must check (and what Microsoft.Identity.Web does):

- the signature, against the keys the tenant publishes (``jwks_uri`` of its OpenID
  configuration), with the algorithm that key is for: ``alg: none``, HMAC (a token
  "signed" with the public key as a shared secret) and any algorithm the key does not
  name are refused before a key is even looked at;
- the issuer, in either form the tenant uses: ``https://sts.windows.net/{tid}/`` for v1
  tokens (what an API made in the portal gets by default) and the v2.0 issuer;
- ``aud``: the API's App ID URI or its client id; ``exp`` and ``nbf`` with a little
  clock skew; ``tid``: this tenant.

The OpenID configurations and the keys are read once and kept. A token signed with a
key not in the cached set makes one fresh read (Entra rolls its keys, and publishes a
new one before signing with it), at most once per ``refetch_interval_seconds`` (five
minutes, as Microsoft.Identity.Web), so a stream of forged ``kid`` values cannot turn
into a stream of requests to the tenant; and the keys are read again once a day.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from rotator.adapters.tls import ssl_context
from rotator.ports import Caller, TokenKeysUnavailable, TokenRejected

# Asymmetric algorithms only: HS* would let anyone holding the (public) key sign.
_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512"})
_KEY_TYPES = frozenset({"RSA", "EC"})
DEFAULT_LEEWAY_SECONDS = 60.0
DEFAULT_REFETCH_INTERVAL_SECONDS = 300.0
# Read the keys again once a day even when every token names a known one, so a key the
# tenant stopped publishing stops being trusted.
DEFAULT_MAX_AGE_SECONDS = 86_400.0
FETCH_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    algorithms: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Metadata:
    issuers: tuple[str, ...]
    keys: dict[str, _Key]
    fetched_at: float


def _algorithms(jwk: dict[str, Any]) -> frozenset[str]:
    """What a published key may verify: its own ``alg``, else what its type implies
    (Entra's keys name no ``alg``; they are RSA keys that sign RS256)."""
    alg = jwk.get("alg")
    if isinstance(alg, str):
        return frozenset({alg}) & _ASYMMETRIC
    if jwk.get("kty") == "RSA":
        return frozenset({"RS256"})
    curve = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(str(jwk.get("crv")))
    return frozenset({curve}) if curve else frozenset()


def parse_jwks(document: object) -> dict[str, _Key]:
    """Signing keys by ``kid`` (and by ``x5t``, which v1 tokens may name instead)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise TokenKeysUnavailable("the tenant's key set is not a JSON Web Key Set")
    keys: dict[str, _Key] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in _KEY_TYPES:
            continue  # a symmetric or unknown key is never a token-signing key
        if jwk.get("use", "sig") != "sig":
            continue
        algorithms = _algorithms(jwk)
        if not algorithms:
            continue
        try:
            key = jwt.PyJWK(jwk, algorithm=sorted(algorithms)[0]).key
        except jwt.PyJWKError:
            continue
        for name in (jwk.get("kid"), jwk.get("x5t")):
            if isinstance(name, str) and name:
                keys[name] = _Key(key, algorithms)
    return keys


class EntraTokenValidator:
    """Validates bearer tokens for one API app in one tenant."""

    def __init__(
        self,
        *,
        authority_host: str,
        tenant_id: str,
        audiences: Sequence[str],
        ca_bundle: str | None = None,
        leeway_seconds: float = DEFAULT_LEEWAY_SECONDS,
        refetch_interval_seconds: float = DEFAULT_REFETCH_INTERVAL_SECONDS,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self.tenant_id = tenant_id.lower()
        self.audiences = list(audiences)
        self.leeway = leeway_seconds
        self.refetch_interval = refetch_interval_seconds
        self.max_age = max_age_seconds
        self.clock = clock
        self._verify = ssl_context(ca_bundle)
        self._metadata: _Metadata | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the keys were read (for tests and logs)

    # ------------------------------------------------------------------ metadata

    async def _fetch(self) -> _Metadata:
        async with httpx.AsyncClient(verify=self._verify, timeout=FETCH_TIMEOUT_SECONDS) as http:
            try:
                v2, v1 = await asyncio.gather(
                    self._json(http, f"{self.authority}/v2.0/.well-known/openid-configuration"),
                    self._json(http, f"{self.authority}/.well-known/openid-configuration"),
                )
                jwks_uri = v2.get("jwks_uri")
                if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
                    raise TokenKeysUnavailable(
                        f"the OpenID configuration of {self.authority} names no https jwks_uri")
                keys = parse_jwks(await self._json(http, jwks_uri))
            except httpx.HTTPError as exc:
                raise TokenKeysUnavailable(
                    f"cannot read the signing keys of {self.authority}: "
                    f"{type(exc).__name__}") from None
        issuers = tuple(i for i in (v2.get("issuer"), v1.get("issuer")) if isinstance(i, str))
        self.fetches += 1
        return _Metadata(issuers, keys, self.clock())

    @staticmethod
    async def _json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
        response = await http.get(url)
        if response.status_code != 200:
            raise TokenKeysUnavailable(f"{url} answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise TokenKeysUnavailable(f"{url} did not answer JSON") from None
        if not isinstance(data, dict):
            raise TokenKeysUnavailable(f"{url} did not answer a JSON object")
        return data

    async def _metadata_for(self, kid: str) -> _Metadata:
        """The cached metadata; read again when it lacks ``kid`` and was not just read."""
        async with self._lock:
            meta = self._metadata
            age = self.clock() - meta.fetched_at if meta is not None else 0.0
            stale = meta is not None and (
                age >= self.max_age or (kid not in meta.keys and age >= self.refetch_interval))
            if meta is None or stale:
                meta = self._metadata = await self._fetch()
            return meta

    # ------------------------------------------------------------------ validation

    async def validate(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRejected("the token is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in _ASYMMETRIC:
            raise TokenRejected(f"tokens signed with {alg!r} are not accepted; the tenant "
                                "signs with its published asymmetric keys")
        kid = header.get("kid") or header.get("x5t")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token names no signing key (kid)")
        meta = await self._metadata_for(kid)
        found = meta.keys.get(kid)
        if found is None:
            raise TokenRejected("the token is signed with a key the tenant does not publish")
        if alg not in found.algorithms:
            raise TokenRejected(f"the signing key is not for {alg}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, found.key, algorithms=[alg], audience=self.audiences,
                issuer=list(meta.issuers), leeway=self.leeway,
                options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("the token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("the token was issued by another issuer or tenant") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("the token is malformed") from None
        if str(claims.get("tid", "")).lower() != self.tenant_id:
            raise TokenRejected("the token is for another tenant")
        return caller_from(claims)


def caller_from(claims: dict[str, Any]) -> Caller:
    """The calling app by the token's version: ``appid`` in v1, ``azp`` in v2."""
    client = claims.get("azp") if claims.get("ver") == "2.0" else claims.get("appid")
    if not isinstance(client, str) or not client:
        raise TokenRejected("the token names no calling application (appid/azp)")
    roles = claims.get("roles", [])
    if not isinstance(roles, list):
        roles = []
    oid = claims.get("oid")
    return Caller(client_id=client.lower(), object_id=oid if isinstance(oid, str) else None,
                  tenant_id=str(claims["tid"]).lower(),
                  roles=frozenset(r for r in roles if isinstance(r, str)))
