"""Waits a service asked for with ``Retry-After``, wherever rotator honours one.

Graph and Key Vault calls are retried inside the SDKs' own retry policies (kiota's
RetryHandler, azure-core's retry policy), which sleep for the server's ``Retry-After``;
the token probe does not retry, and verification waits out a throttled token request
itself. Each of those waits is reported here: one structured log event (service,
seconds, status, HTTP method — never a URL, a body or a value), and a call to every
listener, which is how the daemon's metrics see them.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable

import structlog

log = structlog.get_logger("rotator.throttle")

# (service, seconds): service is "graph", "keyvault" or "token".
Listener = Callable[[str, float], None]

_lock = threading.Lock()
_listeners: list[Callable[[], Listener | None]] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` for every wait from now on; the returned function unsubscribes.

    A bound method is held weakly, so a daemon's metrics that are gone stop listening.
    """
    ref: Callable[[], Listener | None] = (
        weakref.WeakMethod(listener) if inspect.ismethod(listener) else (lambda: listener)
    )
    with _lock:
        _listeners.append(ref)

    def unsubscribe() -> None:
        with _lock:
            if ref in _listeners:
                _listeners.remove(ref)

    return unsubscribe


def waited(
    service: str, seconds: float, *, status: int | None = None, method: str | None = None
) -> None:
    """Report that rotator waits ``seconds`` because ``service`` answered with Retry-After."""
    log.info(
        "waiting as the service asked (Retry-After)",
        service=service,
        wait_seconds=round(seconds, 3),
        status=status,
        method=method,
    )
    with _lock:
        live = [(ref, ref()) for ref in _listeners]
        _listeners[:] = [ref for ref, listener in live if listener is not None]
    for _, listener in live:
        if listener is not None:
            listener(service, seconds)
