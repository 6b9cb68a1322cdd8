"""One Key Vault's secrets: versions, soft delete, recovery, purge. Thread-safe."""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.emulator.model import utcnow

NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
RECOVERABLE_DAYS = 90
RECOVERY_LEVEL = "Recoverable+Purgeable"


class VaultError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner


@dataclass(eq=False)
class SecretVersion:
    name: str
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str]
    enabled: bool
    nbf: datetime | None
    exp: datetime | None
    created: datetime
    updated: datetime
    # A certificate's backing secret: Key Vault manages it, and names the certificate's key.
    kid: str | None = None

    def __repr__(self) -> str:
        return (
            f"SecretVersion(name={self.name!r}, version={self.version!r}, enabled={self.enabled})"
        )


@dataclass(eq=False)
class DeletedSecret:
    name: str
    versions: list[SecretVersion]
    deleted: datetime
    scheduled_purge: datetime


@dataclass(eq=False)
class _Secret:
    name: str  # as first written; Key Vault names are case-insensitive
    versions: list[SecretVersion] = field(default_factory=list)


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise VaultError(400, "BadParameter", f"The request URI contains an invalid name: {name}")


def _not_found(name: str, version: str | None = None) -> VaultError:
    what = f"{name}/{version}" if version else name
    return VaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {what} was not found in this key vault. If you recently "
        "deleted this secret you may be able to recover it using the correct recovery "
        "command. For help resolving this issue, please see "
        "https://go.microsoft.com/fwlink/?linkid=2125182",
    )


class VaultStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._secrets: dict[str, _Secret] = {}
        self._deleted: dict[str, DeletedSecret] = {}

    # ------------------------------------------------------------------ writes

    def set(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
        enabled: bool = True,
        nbf: datetime | None = None,
        exp: datetime | None = None,
        version: str | None = None,
        kid: str | None = None,
    ) -> SecretVersion:
        """A new version; ``version``/``kid`` only for a certificate's backing secret."""
        check_name(name)
        key = name.lower()
        with self._lock:
            if key in self._deleted:
                raise VaultError(
                    409,
                    "Conflict",
                    f"Secret {name} is currently in a deleted but recoverable state, and its "
                    "name cannot be reused; in this state, the secret can only be recovered "
                    "or purged.",
                    "ObjectIsDeletedButRecoverable",
                )
            now = utcnow()
            entry = self._secrets.setdefault(key, _Secret(name))
            made = SecretVersion(
                name=entry.name,
                version=version or secrets.token_hex(16),
                value=value,
                content_type=content_type,
                tags=dict(tags or {}),
                enabled=enabled,
                nbf=nbf,
                exp=exp,
                created=now,
                updated=now,
                kid=kid,
            )
            entry.versions.append(made)
            return made

    def update(
        self,
        name: str,
        version: str | None,
        *,
        enabled: bool | None = None,
        exp: datetime | None = None,
        nbf: datetime | None = None,
        set_exp: bool = False,
        set_nbf: bool = False,
        content_type: str | None = None,
        set_content_type: bool = False,
        tags: dict[str, str] | None = None,
    ) -> SecretVersion:
        with self._lock:
            found = self._find(name, version)
            if enabled is not None:
                found.enabled = enabled
            if set_exp:
                found.exp = exp
            if set_nbf:
                found.nbf = nbf
            if set_content_type:
                found.content_type = content_type
            if tags is not None:
                found.tags = dict(tags)
            found.updated = utcnow()
            return found

    def delete(self, name: str) -> DeletedSecret:
        check_name(name)
        key = name.lower()
        with self._lock:
            entry = self._secrets.pop(key, None)
            if entry is None:
                raise _not_found(name)
            now = utcnow()
            deleted = DeletedSecret(
                entry.name, entry.versions, now, now + timedelta(days=RECOVERABLE_DAYS)
            )
            self._deleted[key] = deleted
            return deleted

    def recover(self, name: str) -> SecretVersion:
        key = name.lower()
        with self._lock:
            deleted = self._deleted.pop(key, None)
            if deleted is None:
                raise _deleted_not_found(name)
            self._secrets[key] = _Secret(deleted.name, deleted.versions)
            return deleted.versions[-1]

    def purge(self, name: str) -> None:
        with self._lock:
            if self._deleted.pop(name.lower(), None) is None:
                raise _deleted_not_found(name)

    # ------------------------------------------------------------------ reads

    def get(self, name: str, version: str | None = None) -> SecretVersion:
        """The version with its value; a disabled one is refused like the real service does."""
        with self._lock:
            found = self._find(name, version)
            if not found.enabled:
                raise VaultError(
                    403,
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                    "SecretDisabled",
                )
            return found

    def _find(self, name: str, version: str | None) -> SecretVersion:
        check_name(name)
        entry = self._secrets.get(name.lower())
        if entry is None or not entry.versions:
            raise _not_found(name, version)
        if not version:
            return entry.versions[-1]
        for candidate in entry.versions:
            if candidate.version == version.lower():
                return candidate
        raise _not_found(name, version)

    def names(self) -> list[SecretVersion]:
        """Latest version of each live secret (what ``GET /secrets`` lists)."""
        with self._lock:
            return [e.versions[-1] for e in self._secrets.values() if e.versions]

    def versions(self, name: str) -> list[SecretVersion]:
        with self._lock:
            entry = self._secrets.get(name.lower())
            return list(entry.versions) if entry else []

    def deleted(self, name: str | None = None) -> list[DeletedSecret]:
        with self._lock:
            if name is None:
                return list(self._deleted.values())
            found = self._deleted.get(name.lower())
            return [found] if found else []

    def get_deleted(self, name: str) -> DeletedSecret:
        check_name(name)
        with self._lock:
            found = self._deleted.get(name.lower())
            if found is None:
                raise _deleted_not_found(name)
            return found


def _deleted_not_found(name: str) -> VaultError:
    return VaultError(404, "SecretNotFound", f"Deleted Secret not found: {name}")
