"""Injected trouble: latency, 5xx rates, lost responses, throttling, concurrent-write conflicts.

One ``Faults`` object is shared by all routes; tests change its fields while the server runs
(plain attribute writes are atomic enough; the buckets and counters take a lock).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from rotator.emulator.errors import (
    AadError,
    GraphError,
    aad_error_response,
    graph_error_response,
    vault_error_response,
)

# Realistic budgets (Microsoft's published limits); a normal run never comes near them.
GRAPH_REQUESTS_PER_10S = 3500.0
GRAPH_APP_WRITES_PER_150S = 3000.0
GRAPH_TENANT_WRITES_PER_300S = 18000.0
VAULT_REQUESTS_PER_10S = 4000.0

_CAPACITIES = frozenset(
    {
        "throttle_requests_capacity",
        "throttle_app_capacity",
        "throttle_tenant_capacity",
        "vault_throttle_capacity",
    }
)

Service = Literal["graph", "vault", "token", "admin"]
Endpoint = Callable[[Request], Awaitable[Response]]


class TokenBucket:
    def __init__(self, capacity: float, refill_per_second: float) -> None:
        self.capacity = capacity
        self.refill = refill_per_second
        self.tokens = capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        if self.refill <= 0:
            return 60.0
        return (1 - self.tokens) / self.refill


@dataclass
class Faults:
    latency_ms: float = 0.0
    # route name (or "graph.*") -> extra latency of that route only, e.g. a slow listing.
    route_latency_ms: dict[str, float] = field(default_factory=dict)
    # route name (or "graph.*", "*") -> {status: probability}; e.g. {"graph.addPassword": {503: .2}}
    error_rates: dict[str, dict[int, float]] = field(default_factory=dict)
    # route -> {status: n}: the next n requests of the route get that status, once each.
    error_counts: dict[str, dict[int, int]] = field(default_factory=dict)
    # route -> n: the next n successful answers of the route come back as a 200 whose body
    # is an HTML page (what a proxy in trouble sends), not Graph's JSON.
    garbled_counts: dict[str, int] = field(default_factory=dict)
    # route -> probability that a write is applied but its response is lost (500 returned).
    lost_response_rates: dict[str, float] = field(default_factory=dict)
    # Graph's budgets as its throttling limits state them for identity and access; None
    # disables a bucket. Every Graph request (read or write) of a calling app spends its
    # request budget (3,500 per 10 s) ...
    throttle_requests_capacity: float | None = GRAPH_REQUESTS_PER_10S
    throttle_requests_refill_per_second: float = GRAPH_REQUESTS_PER_10S / 10
    # ... and a write also its app's write budget (3,000 per 150 s) and the tenant's
    # (18,000 per 5 min).
    throttle_app_capacity: float | None = GRAPH_APP_WRITES_PER_150S
    throttle_app_refill_per_second: float = GRAPH_APP_WRITES_PER_150S / 150
    throttle_tenant_capacity: float | None = GRAPH_TENANT_WRITES_PER_300S
    throttle_tenant_refill_per_second: float = GRAPH_TENANT_WRITES_PER_300S / 300
    # Key Vault's own limit: 4,000 transactions per 10 s per vault.
    vault_throttle_capacity: float | None = VAULT_REQUESTS_PER_10S
    vault_throttle_refill_per_second: float = VAULT_REQUESTS_PER_10S / 10
    # Retry-After (seconds) of injected 429 and 503 answers.
    injected_retry_after_seconds: float = 1.0
    # How long a Graph write holds its target app; a second write inside the window gets 409.
    write_hold_ms: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        # Fault rolls need repeatability, not secrecy.
        self._rng = random.Random(self.seed)  # noqa: S311
        self._app_buckets: dict[str, TokenBucket] = {}
        self._tenant_bucket: TokenBucket | None = None
        self._request_buckets: dict[str, TokenBucket] = {}
        self._vault_bucket: TokenBucket | None = None
        self._busy: dict[str, int] = defaultdict(int)
        self._counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    # ------------------------------------------------------------------ configuration

    def update(self, data: Mapping[str, Any]) -> None:
        """Apply a JSON patch from the admin route; unknown keys are an error."""
        for key, value in data.items():
            if key == "error_rates":
                self.error_rates = {
                    str(route): {int(status): float(p) for status, p in rates.items()}
                    for route, rates in dict(value).items()
                }
            elif key == "route_latency_ms":
                self.route_latency_ms = {str(k): float(v) for k, v in dict(value).items()}
            elif key == "error_counts":
                self.error_counts = {
                    str(route): {int(status): int(n) for status, n in counts.items()}
                    for route, counts in dict(value).items()
                }
            elif key == "garbled_counts":
                self.garbled_counts = {str(k): int(v) for k, v in dict(value).items()}
            elif key == "lost_response_rates":
                self.lost_response_rates = {str(k): float(v) for k, v in dict(value).items()}
            elif key in _CAPACITIES:
                setattr(self, key, None if value is None else float(value))
                self.reset_buckets()
            elif key in (
                "latency_ms",
                "throttle_requests_refill_per_second",
                "throttle_app_refill_per_second",
                "throttle_tenant_refill_per_second",
                "vault_throttle_refill_per_second",
                "injected_retry_after_seconds",
                "write_hold_ms",
            ):
                setattr(self, key, float(value))
                self.reset_buckets()
            else:
                raise KeyError(key)

    def to_json(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "route_latency_ms": dict(self.route_latency_ms),
            "error_rates": {
                r: {str(s): p for s, p in v.items()} for r, v in self.error_rates.items()
            },
            "error_counts": {
                r: {str(s): n for s, n in v.items()} for r, v in self.error_counts.items()
            },
            "garbled_counts": dict(self.garbled_counts),
            "lost_response_rates": dict(self.lost_response_rates),
            "throttle_requests_capacity": self.throttle_requests_capacity,
            "throttle_requests_refill_per_second": self.throttle_requests_refill_per_second,
            "throttle_app_capacity": self.throttle_app_capacity,
            "throttle_app_refill_per_second": self.throttle_app_refill_per_second,
            "throttle_tenant_capacity": self.throttle_tenant_capacity,
            "throttle_tenant_refill_per_second": self.throttle_tenant_refill_per_second,
            "vault_throttle_capacity": self.vault_throttle_capacity,
            "vault_throttle_refill_per_second": self.vault_throttle_refill_per_second,
            "injected_retry_after_seconds": self.injected_retry_after_seconds,
            "write_hold_ms": self.write_hold_ms,
        }

    def reset_buckets(self) -> None:
        with self._lock:
            self._app_buckets.clear()
            self._tenant_bucket = None
            self._request_buckets.clear()
            self._vault_bucket = None

    # ------------------------------------------------------------------ decisions

    def _rate(self, table: Mapping[str, Any], route: str) -> Any:
        service = route.split(".", 1)[0]
        for key in (route, f"{service}.*", "*"):
            if key in table:
                return table[key]
        return None

    def latency_of(self, route: str) -> float:
        """Seconds a request on ``route`` is held before it is answered."""
        extra: float | None = self._rate(self.route_latency_ms, route)
        return (self.latency_ms + (extra or 0.0)) / 1000

    def pick_error(self, route: str) -> int | None:
        counts: dict[int, int] | None = self._rate(self.error_counts, route)
        if counts:
            with self._lock:
                for status, left in counts.items():
                    if left > 0:
                        counts[status] = left - 1
                        return status
        rates: dict[int, float] | None = self._rate(self.error_rates, route)
        if not rates:
            return None
        with self._lock:
            roll = self._rng.random()
        for status, probability in rates.items():
            if roll < probability:
                return status
            roll -= probability
        return None

    def garble(self, route: str) -> bool:
        with self._lock:
            for key in (route, f"{route.split('.', 1)[0]}.*", "*"):
                left = self.garbled_counts.get(key, 0)
                if left > 0:
                    self.garbled_counts[key] = left - 1
                    return True
            return False

    def lose_response(self, route: str) -> bool:
        probability: float | None = self._rate(self.lost_response_rates, route)
        if not probability:
            return False
        with self._lock:
            return self._rng.random() < probability

    def admit_read(self, caller_app_id: str) -> None:
        """Spend one unit of the caller's Graph request budget, or raise Graph's 429."""
        with self._lock:
            wait = self._take_request(caller_app_id)
        _raise_graph_throttled(wait)

    def admit_write(self, caller_app_id: str) -> None:
        """A write spends the request budget and the write budgets; 429 when one is empty."""
        with self._lock:
            wait = self._take_request(caller_app_id)
            if wait == 0 and self.throttle_app_capacity is not None:
                bucket = self._app_buckets.get(caller_app_id)
                if bucket is None:
                    bucket = TokenBucket(
                        self.throttle_app_capacity, self.throttle_app_refill_per_second
                    )
                    self._app_buckets[caller_app_id] = bucket
                wait = bucket.take()
            if wait == 0 and self.throttle_tenant_capacity is not None:
                if self._tenant_bucket is None:
                    self._tenant_bucket = TokenBucket(
                        self.throttle_tenant_capacity, self.throttle_tenant_refill_per_second
                    )
                wait = self._tenant_bucket.take()
        _raise_graph_throttled(wait)

    def _take_request(self, caller_app_id: str) -> float:
        if self.throttle_requests_capacity is None:
            return 0.0
        bucket = self._request_buckets.get(caller_app_id)
        if bucket is None:
            bucket = TokenBucket(
                self.throttle_requests_capacity, self.throttle_requests_refill_per_second
            )
            self._request_buckets[caller_app_id] = bucket
        return bucket.take()

    def admit_vault(self) -> float:
        """Take a Key Vault transaction; 0 when admitted, else the seconds to wait."""
        if self.vault_throttle_capacity is None:
            return 0.0
        with self._lock:
            if self._vault_bucket is None:
                self._vault_bucket = TokenBucket(
                    self.vault_throttle_capacity, self.vault_throttle_refill_per_second
                )
            return self._vault_bucket.take()

    @property
    def injected_retry_after(self) -> str:
        return str(max(1, math.ceil(self.injected_retry_after_seconds)))

    @asynccontextmanager
    async def write_window(self, object_id: str) -> AsyncIterator[None]:
        """Hold the app for ``write_hold_ms``; an overlapping write fails as in Entra."""
        with self._lock:
            if self._busy[object_id] > 0:
                raise GraphError(
                    409,
                    "Directory_ConcurrencyViolation",
                    "Error due to concurrent requests being made to the tenant. "
                    "Please wait briefly and retry.",
                )
            self._busy[object_id] += 1
        try:
            if self.write_hold_ms > 0:
                await asyncio.sleep(self.write_hold_ms / 1000)
            yield
        finally:
            with self._lock:
                self._busy[object_id] -= 1
                if self._busy[object_id] <= 0:
                    del self._busy[object_id]

    # ------------------------------------------------------------------ counters

    def count(self, route: str, status: int) -> None:
        with self._lock:
            self._counts[route][status] += 1

    def counters(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {r: {str(s): n for s, n in v.items()} for r, v in self._counts.items()}

    def count_of(self, route: str | None = None, status: int | None = None) -> int:
        """Sum of requests matching a route (prefix with ``.*``) and/or a status."""
        with self._lock:
            total = 0
            for name, by_status in self._counts.items():
                if route is not None and not (
                    name == route or (route.endswith(".*") and name.startswith(route[:-1]))
                ):
                    continue
                for code, n in by_status.items():
                    if status is None or code == status:
                        total += n
            return total

    def reset_counters(self) -> None:
        with self._lock:
            self._counts.clear()


def with_budgets(
    *,
    graph_requests_per_10s: float = GRAPH_REQUESTS_PER_10S,
    graph_writes_per_150s: float = GRAPH_APP_WRITES_PER_150S,
    vault_requests_per_10s: float = VAULT_REQUESTS_PER_10S,
) -> Faults:
    """Faults with the given throttling budgets (0 turns a budget off)."""
    faults = Faults()
    faults.update(
        {
            "throttle_requests_capacity": graph_requests_per_10s or None,
            "throttle_requests_refill_per_second": (graph_requests_per_10s or 1) / 10,
            "throttle_app_capacity": graph_writes_per_150s or None,
            "throttle_app_refill_per_second": (graph_writes_per_150s or 1) / 150,
            "vault_throttle_capacity": vault_requests_per_10s or None,
            "vault_throttle_refill_per_second": (vault_requests_per_10s or 1) / 10,
        }
    )
    return faults


def retry_after_header(wait: float) -> str:
    """Whole seconds, at least 1: what Graph, Key Vault and Entra send."""
    return str(max(1, math.ceil(wait)))


def graph_throttled(wait: float) -> GraphError:
    seconds = retry_after_header(wait)
    return GraphError(
        429,
        "TooManyRequests",
        "Too many requests. Your request is throttled temporarily. "
        f"Please try after {seconds} seconds.",
        headers={"Retry-After": seconds},
    )


def _raise_graph_throttled(wait: float) -> None:
    if wait > 0:
        raise graph_throttled(wait)


VAULT_THROTTLED_MESSAGE = (
    "Request was not processed because too many requests were received. "
    "Reason: VaultRequestTypeLimitReached"
)


def vault_throttled(wait: float) -> Response:
    return vault_error_response(
        429, "Throttled", VAULT_THROTTLED_MESSAGE, None,
        headers={"Retry-After": retry_after_header(wait)},
    )


def _injected(service: Service, status: int, request: Request, retry_after: str) -> Response:
    # Throttling and outages say when to come back, as the real services do.
    headers = {"Retry-After": retry_after} if status in (429, 503) else {}
    if service == "graph":
        if status == 429:
            return graph_error_response(request, graph_throttled(float(retry_after)))
        code, message = (
            ("serviceNotAvailable", "The service is temporarily unavailable. Please retry.")
            if status == 503
            else ("generalException", "An internal server error occurred. Please retry.")
        )
        return graph_error_response(request, GraphError(status, code, message, headers=headers))
    if service == "vault":
        if status == 429:
            return vault_throttled(float(retry_after))
        return vault_error_response(
            status,
            "ServiceUnavailable" if status == 503 else "InternalServerError",
            "The service is temporarily unavailable." if status == 503 else "Internal error.",
            None,
            headers=headers,
        )
    if status == 429:
        return aad_error_response(
            AadError(
                429,
                "temporarily_unavailable",
                90055,
                "There are too many incoming requests. Retry after the time the Retry-After "
                "header gives.",
            ),
            headers=headers,
        )
    if status == 503:
        return aad_error_response(
            AadError(503, "temporarily_unavailable", 90033, "A transient error has occurred."),
            headers=headers,
        )
    return aad_error_response(
        AadError(
            500,
            "server_error",
            50000,
            "There was an error issuing a token or an issue with our sign-in service.",
        )
    )


def guarded(route: str, service: Service) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint with latency, injected errors, lost responses and counting."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def wrapper(request: Request) -> Response:
            faults: Faults = request.app.state.faults
            response: Response | None = None
            try:
                latency = faults.latency_of(route)
                if latency > 0:
                    await asyncio.sleep(latency)
                injected = faults.pick_error(route)
                if injected is not None:
                    response = _injected(
                        service, injected, request, faults.injected_retry_after
                    )
                    return response
                response = await endpoint(request)
                if response.status_code < 400 and faults.garble(route):
                    response = Response("<html><body>Bad gateway</body></html>",
                                        media_type="text/html")
                    return response
                if response.status_code < 400 and faults.lose_response(route):
                    response = _injected(service, 500, request, faults.injected_retry_after)
                return response
            finally:
                faults.count(route, response.status_code if response is not None else 500)

        return wrapper

    return decorate
