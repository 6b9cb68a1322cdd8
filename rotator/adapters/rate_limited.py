"""Graph writes through a token bucket, so a thousand due credentials are worked
through at the tenant's pace instead of in a storm of 429s.

The limiter wraps the Directory port; the engine does not know it is there.
Microsoft's budget (3,000 writes / 150 s per app and tenant, 18,000 / 5 min per
tenant) is per tenant, and so is ``graph_writes_per_minute``: replicas sharing a
PostgreSQL database draw from one budget kept there (:class:`SharedRateLimiter`), so
together they stay under it and one replica alone may use all of it. A single
process on SQLite keeps its bucket in memory (:class:`AsyncRateLimiter`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Protocol

from rotator.domain.app_management import CredentialRestrictions, TenantPolicies
from rotator.domain.certificates import KeyEntry
from rotator.domain.credentials import AppRegistration, Credential
from rotator.ports import (
    Coordination,
    DeltaRound,
    Directory,
    DirectoryError,
    NewPassword,
    ScanItem,
)


def default_burst(rate_per_minute: float) -> float:
    """A small burst: enough to start a handful of rotations at once, never a minute's worth."""
    return max(1.0, min(10.0, rate_per_minute / 60.0 * 5))


class RateLimiter(Protocol):
    async def acquire(self) -> float:
        """Take one write of the budget, waiting for it if needed; returns the seconds waited."""
        ...


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
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self._on_wait = on_wait
        self.rate = rate_per_minute / 60.0  # tokens per second
        self.capacity = burst if burst is not None else default_burst(rate_per_minute)
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
        if waited > 0 and self._on_wait is not None:
            self._on_wait(waited)
        return waited


class SharedRateLimiter:
    """The tenant-wide budget, drawn from the database every replica shares.

    One reservation at a time per process (the lock): a process waits for its slot
    holding one reservation, so a replica that dies leaves at most one slot unused.
    The database's clock places the slots; this process only sleeps the answer, so
    replicas' clocks never need to agree.
    """

    def __init__(self, budget: Coordination, rate_per_minute: float, *,
                 burst: float | None = None,
                 on_wait: Callable[[float], None] | None = None) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self._on_wait = on_wait
        self._budget = budget
        self.rate_per_minute = rate_per_minute
        self.capacity = burst if burst is not None else default_burst(rate_per_minute)
        self._lock = asyncio.Lock()
        # A thread of its own: a reservation never queues behind the other database
        # work the service hands to threads (one at a time is all the lock lets through).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="write-budget")
        self.waited_seconds = 0.0

    async def acquire(self) -> float:
        async with self._lock:
            reserve = functools.partial(self._budget.reserve_write,
                                        rate_per_minute=self.rate_per_minute,
                                        burst=self.capacity)
            try:
                pause = await asyncio.get_running_loop().run_in_executor(self._thread, reserve)
            except Exception as exc:
                # Not a Graph refusal, but the write cannot go out unmetered: the step
                # waits and is retried like one that Graph throttled.
                raise DirectoryError(
                    "the shared Graph write budget could not be read from the database "
                    f"({type(exc).__name__}); the write waits for it", transient=True,
                ) from exc
            if pause > 0:
                await asyncio.sleep(pause)
        self.waited_seconds += pause
        if pause > 0 and self._on_wait is not None:
            self._on_wait(pause)
        return pause


class RateLimitedDirectory:
    """The Directory port with every write taking a token first; reads pass straight through.

    Writes: addPassword, removePassword, addKey, removeKey and the keyCredentials PATCH.
    """

    def __init__(self, inner: Directory, limiter: RateLimiter) -> None:
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

    async def federated_app_ids(self) -> set[str]:
        return await self._inner.federated_app_ids()

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
