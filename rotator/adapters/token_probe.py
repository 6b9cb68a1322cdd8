"""TokenProbe port: one client-credentials request per call through azure-identity.

Each attempt builds a fresh credential object: MSAL caches token responses (and
4xx answers for identical requests), and a verify loop that reuses one credential
would prove nothing about propagation. The credential is cheap to make: it borrows
the process's shared connection pool and TLS context (``AsyncHttp``) instead of
opening, and verifying, connections of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jwt

from rotator.domain.secret_value import SecretValue
from rotator.ports import TokenOutcome

if TYPE_CHECKING:
    from rotator.adapters.tls import AsyncHttp

_AADSTS = re.compile(r"AADSTS\d+")
# One attempt is one request: azure-core's retry policy would otherwise sleep through a
# throttled token request (up to ten times its Retry-After), hidden from verification,
# which honours the Retry-After itself within its deadline and says so.
NO_RETRY: dict[str, Any] = {"retry_total": 0}


def claims_of(access_token: str) -> Mapping[str, object]:
    # The token came straight from the authority over TLS; its claims are only read
    # to check what Entra issued, so the signature is not what is being tested here.
    claims: dict[str, object] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def _scrub(text: str, secret: SecretValue) -> str:
    value = secret.reveal()
    return text.replace(value, "***") if value else text


class AzureIdentityTokenProbe:
    def __init__(
        self, *, authority_host: str | None, ca_bundle: str | None, http: AsyncHttp | None = None
    ) -> None:
        self._authority_host = authority_host
        self._ca_bundle = ca_bundle
        self._http = http

    async def try_secret(
        self, tenant_id: str, client_id: str, secret: SecretValue, scope: str
    ) -> TokenOutcome:

        from rotator.adapters.sdk_clients import async_secret_credential

        credential = async_secret_credential(
            tenant_id,
            client_id,
            secret.reveal(),
            authority_host=self._authority_host,
            ca_bundle=self._ca_bundle,
            http=self._http,
            **NO_RETRY,
        )
        return await _request(credential, scope, secret)

    async def try_certificate(
        self, tenant_id: str, client_id: str, pem_bundle: SecretValue, scope: str
    ) -> TokenOutcome:
        """A client assertion signed with the bundle's key (what consumers will do)."""
        from azure.identity.aio import CertificateCredential

        from rotator.adapters.sdk_clients import identity_options

        options: dict[str, Any] = {
            **identity_options(self._authority_host, self._ca_bundle, self._http), **NO_RETRY
        }
        try:
            credential = CertificateCredential(
                tenant_id, client_id, certificate_data=pem_bundle.reveal().encode("ascii"),
                **options,
            )
        except ValueError as exc:
            # azure-identity refuses e.g. non-RSA keys before any request is made; its
            # words name the problem, not the material.
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return TokenOutcome(ok=False, error_code="CertificateUnusable", message=reason)
        return await _request(credential, scope, pem_bundle)


async def _request(credential: Any, scope: str, material: SecretValue) -> TokenOutcome:
    """One token request; refusals come back as data with the AADSTS code, scrubbed."""
    from azure.core.exceptions import ClientAuthenticationError

    try:
        async with credential:
            token = await credential.get_token(scope)
    except ClientAuthenticationError as exc:
        message = _scrub(str(exc.message or exc), material)
        match = _AADSTS.search(message)
        first_line = message.strip().splitlines()[0] if message.strip() else "refused"
        status = _status_of(exc)
        if status is not None and (status >= 500 or status == 429):
            # The token service's own trouble (its 5xx bodies carry AADSTS codes too, e.g.
            # AADSTS90033) says nothing about the credential: no code, so verification
            # counts the attempt as transient instead of as a refusal.
            return TokenOutcome(
                ok=False, status=status,
                message=f"token endpoint unavailable (HTTP {status}): {first_line}"[:300],
                retry_after=_retry_after_of(exc),
            )
        return TokenOutcome(
            ok=False, error_code=match.group(0) if match else None, message=first_line[:300],
            status=status,
        )
    except Exception as exc:  # noqa: BLE001 - any failure is one failed attempt
        return TokenOutcome(ok=False, message=f"token request failed: {type(exc).__name__}")
    return TokenOutcome(ok=True, claims=claims_of(token.token))


def _retry_after_of(exc: Exception) -> float | None:
    """The response's Retry-After in seconds (a number; HTTP dates are not used by Entra)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _status_of(exc: Exception) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None
