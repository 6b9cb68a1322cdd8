"""Graph writes through a token bucket, so a thousand due credentials are worked
through at the tenant's pace instead of in a storm of 429s.

The limiter wraps the Directory port; the engine does not know it is there.
Microsoft's budget (3,000 writes / 150 s per app and tenant, 18,000 / 5 min per
tenant) is per tenant, while this bucket is per process: with several replicas
give each ``budget / replicas``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

from rotator.domain.app_management import CredentialRestrictions, TenantPolicies
from rotator.domain.certificates import KeyEntry
from rotator.domain.credentials import AppRegistration, Credential
from rotator.ports import DeltaRound, Directory, NewPassword, ScanItem


class AsyncRateLimiter:
    """A token bucket for one asyncio loop: ``rate_per_minute`` tokens, bursts up to ``burst``.

    Waiters are served in arrival order (one lock), so no caller starves.
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate = rate_per_minute / 60.0  # tokens per second
        # A small burst: enough to start a handful of rotations at once, never a minute's worth.
        self.capacity = burst if burst is not None else max(1.0, min(10.0, self.rate * 5))
        self._tokens = self.capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> float:
        """Take one token, waiting for it if needed; returns the seconds waited."""
        waited = 0.0
        async with self._lock:
            self._refill()
            while self._tokens < 1:
                pause = (1 - self._tokens) / self.rate
                await asyncio.sleep(pause)
                waited += pause
                self._refill()
            self._tokens -= 1
        self.waited_seconds += waited
        return waited


class RateLimitedDirectory:
    """The Directory port with every write taking a token first; reads pass straight through.

    Writes: addPassword, removePassword, addKey, removeKey and the keyCredentials PATCH.
    """

    def __init__(self, inner: Directory, limiter: AsyncRateLimiter) -> None:
        self._inner = inner
        self.limiter = limiter

    def list_applications(self) -> AsyncIterator[ScanItem]:
        return self._inner.list_applications()

    def list_service_principals(self) -> AsyncIterator[ScanItem]:
        return self._inner.list_service_principals()

    async def track_changes(self, resource: str) -> str:
        return await self._inner.track_changes(resource)

    def list_changes(self, resource: str, link: str, into: DeltaRound
                     ) -> AsyncIterator[ScanItem]:
        return self._inner.list_changes(resource, link, into)

    def list_requests(self) -> int:
        return self._inner.list_requests()

    async def get_application(self, app_id: str) -> AppRegistration | None:
        return await self._inner.get_application(app_id)

    async def get_credential_policy(self, object_id: str) -> CredentialRestrictions | None:
        return await self._inner.get_credential_policy(object_id)

    async def list_credential_policies(self) -> TenantPolicies:
        return await self._inner.list_credential_policies()

    async def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        await self.limiter.acquire()
        return await self._inner.add_password(object_id, display_name, end)

    async def remove_password(self, object_id: str, key_id: str) -> None:
        await self.limiter.acquire()
        await self._inner.remove_password(object_id, key_id)

    async def add_key(
        self, object_id: str, certificate_der: bytes, display_name: str, proof: str
    ) -> Credential:
        await self.limiter.acquire()
        return await self._inner.add_key(object_id, certificate_der, display_name, proof)

    async def remove_key(self, object_id: str, key_id: str, proof: str) -> None:
        await self.limiter.acquire()
        await self._inner.remove_key(object_id, key_id, proof)

    async def list_key_credentials(self, object_id: str) -> Sequence[KeyEntry]:
        return await self._inner.list_key_credentials(object_id)

    async def set_key_credentials(self, object_id: str, entries: Sequence[KeyEntry]) -> None:
        await self.limiter.acquire()
        await self._inner.set_key_credentials(object_id, entries)
