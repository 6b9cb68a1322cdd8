"""SecretStore port over azure-keyvault-secrets (async SecretClient)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from rotator.domain.secret_value import SecretValue
from rotator.ports import SecretStoreError, StoredSecret

if TYPE_CHECKING:
    from azure.keyvault.secrets.aio import SecretClient

T = TypeVar("T")


def translate_error(exc: BaseException, action: str, *, plane: str = "secrets"
                    ) -> SecretStoreError:
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, HttpResponseError):
        code = None
        if exc.error is not None:
            code = exc.error.code
        status = exc.status_code
        message = exc.error.message if exc.error is not None and exc.error.message else exc.reason
        hint = ""
        if status == 403:
            hint = (" (grant the rotator's identity get/set/list on secrets in this vault)"
                    if plane == "secrets" else
                    " (grant the rotator's identity get/list/import/create/update on "
                    "certificates and get on secrets in this vault: Key Vault Certificates "
                    "Officer and Key Vault Secrets User)")
        return SecretStoreError(
            f"Key Vault refused to {action}: {code or status}: {message}{hint}",
            code=code,
            status=status,
            retry_after=_retry_after(exc),
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError | OSError | asyncio.TimeoutError):
        return SecretStoreError(
            f"could not reach Key Vault to {action}: {type(exc).__name__}", transient=True
        )
    return SecretStoreError(f"Key Vault call to {action} failed: {type(exc).__name__}",
                            transient=True)


def _retry_after(exc: Any) -> float | None:
    """Key Vault's Retry-After (seconds) on the answer the SDK's retries ended with."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _stored(props: Any, value: str | None = None) -> StoredSecret:
    return StoredSecret(
        name=props.name,
        version=props.version,
        enabled=bool(props.enabled),
        content_type=props.content_type,
        tags=dict(props.tags or {}),
        expires_on=props.expires_on,
        created_on=props.created_on,
        value=SecretValue(value) if value is not None else None,
    )


class KeyVaultSecretStore:
    def __init__(self, client: SecretClient) -> None:
        self._client = client

    async def _call(self, action: str, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except SecretStoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a SecretStoreError
            raise translate_error(exc, action) from None

    async def set_secret(
        self,
        name: str,
        value: SecretValue,
        *,
        content_type: str,
        tags: Mapping[str, str],
        expires_on: datetime | None = None,
        enabled: bool = True,
    ) -> StoredSecret:
        secret = await self._call(
            f"write secret {name}",
            lambda: self._client.set_secret(
                name,
                value.reveal(),
                content_type=content_type,
                tags=dict(tags),
                expires_on=expires_on,
                enabled=enabled,
            ),
        )
        return _stored(secret.properties)

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            secret = await self._client.get_secret(name, version)
        except ResourceNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise translate_error(exc, f"read secret {name}") from None
        return _stored(secret.properties, secret.value)

    async def list_versions(self, name: str) -> Sequence[StoredSecret]:
        from azure.core.exceptions import ResourceNotFoundError

        async def collect() -> list[StoredSecret]:
            out: list[StoredSecret] = []
            try:
                async for props in self._client.list_properties_of_secret_versions(name):
                    out.append(_stored(props))
            except ResourceNotFoundError:
                return []
            return out

        return await self._call(f"list versions of secret {name}", collect)

    async def disable_version(self, name: str, version: str) -> None:
        await self._call(
            f"disable version {version} of secret {name}",
            lambda: self._client.update_secret_properties(name, version, enabled=False),
        )
