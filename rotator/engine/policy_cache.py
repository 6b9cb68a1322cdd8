"""The tenant's app management policies, read once and shared by every rotation for a
short while.

Reading the policy in force for one app costs one or two Graph requests; at the write
budget (600 rotations a minute) that was a fifth of all Graph traffic, for data that
changes perhaps once a month. One read of every policy in the tenant serves every
rotation for ``ttl``; a policy changed in between is met by Graph's own refusal, which
the create step already handles (it asks again for shorter lifetimes).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.domain.app_management import TenantPolicies
from rotator.ports import Directory, DirectoryError

DEFAULT_POLICY_TTL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class PolicyRead:
    """One read of the tenant's policies: what it found, or why it may not be read."""

    policies: TenantPolicies | None
    refused: DirectoryError | None
    at: datetime


@dataclass
class CredentialPolicyCache:
    ttl: timedelta = DEFAULT_POLICY_TTL
    _last: PolicyRead | None = None
    _lock: asyncio.Lock | None = None
    _lock_loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    def _guard(self) -> asyncio.Lock:
        # One lock per event loop: a lock bound to a loop that has ended cannot be waited on.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _fresh(self, now: datetime) -> PolicyRead | None:
        last = self._last
        if last is not None and last.at <= now < last.at + self.ttl:
            return last
        return None

    async def read(self, directory: Directory, now: datetime) -> PolicyRead:
        """The tenant's policies as of at most ``ttl`` ago; a refusal to read (no
        ``Policy.Read.All``) is remembered as long. A transient failure raises the
        :class:`DirectoryError` and is not remembered."""
        if (fresh := self._fresh(now)) is not None:
            return fresh
        async with self._guard():
            # Rotations that waited here for another's read use it.
            if (fresh := self._fresh(now)) is not None:
                return fresh
            try:
                found = PolicyRead(await directory.list_credential_policies(), None, now)
            except DirectoryError as exc:
                if exc.transient:
                    raise
                found = PolicyRead(None, exc, now)
            self._last = found
            return found

    def forget(self) -> None:
        self._last = None
