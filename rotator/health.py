"""/healthz, /readyz and /metrics: a small Starlette app served by uvicorn in the daemon's loop.

Readiness is decided by what this process cannot work without and that a restart or
a reroute could matter for: the database, and a recent scan that did not fail. An
outage of Key Vault, or of the token endpoint, or of one Graph operation, fails
rotation steps, which wait and retry on their own; /readyz reports such outages under
``dependencies`` but stays ready, since every replica sees the same outage and taking
them all out of service would only hide their metrics and block node drains.

A stalled database (a held lock, a failover, a connection waiting for its timeout):

- ``/healthz`` means "the process and its event loop are alive". It never touches the
  database, and every database call runs in a worker thread (``EngineDeps.db``), so it
  answers at once however long the database stalls. A liveness probe must not restart
  a replica for a database problem a restart cannot fix.
- ``/readyz`` means "this replica can do database work now": a trivial query must come
  back within ``PING_TIMEOUT_SECONDS`` through the same worker threads and connection
  pool the rotations use. When every worker is stuck behind the stall, or the database
  does not answer, it turns 503 ("database unreachable: ..."); when only some table is
  locked and a connection is still free, the query answers and the replica stays ready
  while its rotations wait on the lock (they are retried, never half-done).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rotator.domain.records import ScanStatus
from rotator.metrics import CONTENT_TYPE_LATEST, DependencyState, Metrics

PING_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """What this process's last scan attempt came to."""

    status: ScanStatus
    finished_at: datetime
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


def judge_readiness(
    *,
    database_ok: bool,
    database_error: str | None,
    last_scan: ScanOutcome | None,
    scan_interval: timedelta,
    now: datetime,
) -> Readiness:
    """Ready: the database answers, and the last scan finished, did not fail, and is
    not older than two scan intervals. A failed scan must never look like a clean one."""
    if not database_ok:
        return Readiness(False, f"database unreachable: {database_error or 'no answer'}")
    if last_scan is None:
        return Readiness(False, "no scan has finished yet")
    if last_scan.status is ScanStatus.FAILED:
        return Readiness(False, f"last scan failed: {last_scan.error or 'unknown error'}")
    age = now - last_scan.finished_at
    if age > 2 * scan_interval:
        return Readiness(
            False,
            f"last scan finished {age.total_seconds():.0f} s ago, more than two scan "
            f"intervals ({2 * scan_interval.total_seconds():.0f} s)",
        )
    return Readiness(True, f"last scan {last_scan.status} {age.total_seconds():.0f} s ago")


def build_app(
    *,
    metrics: Metrics,
    ping: Callable[[], None],
    last_scan: Callable[[], ScanOutcome | None],
    scan_interval: timedelta,
    now: Callable[[], datetime],
    dependencies: Callable[[], Mapping[str, DependencyState]] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    run_blocking: Callable[[Callable[[], None]], Awaitable[None]] | None = None,
) -> Starlette:
    """``extra_routes``: further endpoints on the same port (the ``/api/v1`` mount).
    ``run_blocking`` runs the ping off the loop: the service passes its database
    workers, so readiness sees what the rotations see (default: asyncio's executor)."""
    off_loop = run_blocking or asyncio.to_thread

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_: Request) -> Response:
        error: str | None = None
        try:
            await asyncio.wait_for(off_loop(ping), PING_TIMEOUT_SECONDS)
            ok = True
        except TimeoutError:
            ok = False
            error = f"no answer within {PING_TIMEOUT_SECONDS:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            ok = False
            error = type(exc).__name__ + (f": {str(exc).splitlines()[0]}" if str(exc) else "")
            error = error[:300]
        verdict = judge_readiness(
            database_ok=ok, database_error=error, last_scan=last_scan(),
            scan_interval=scan_interval, now=now(),
        )
        seen: dict[str, object] = {
            "database": {"status": "ok"} if ok else {"status": "unreachable", "error": error},
        }
        if dependencies is not None:
            seen.update({name: state.to_json() for name, state in dependencies().items()})
        return JSONResponse(
            {"status": "ready" if verdict.ready else "not ready", "reason": verdict.reason,
             "dependencies": seen},
            status_code=200 if verdict.ready else 503,
        )

    async def metrics_endpoint(request: Request) -> Response:
        # Prometheus asks for gzip; the inventory's part of the page is compressed once
        # per scan, so answering in gzip costs a scrape next to nothing.
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(metrics.render_gzip(), media_type=CONTENT_TYPE_LATEST,
                            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST,
                        headers={"Vary": "Accept-Encoding"})

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *extra_routes,
    ])


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a port that is taken fails the start (and port 0 works)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def make_server(app: Starlette, tls: tuple[str, str] | None = None) -> Any:
    """A uvicorn server that leaves signals to the daemon (it stops the server itself);
    ``tls``: (certificate chain, key) PEM files, to answer HTTPS."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off",
        timeout_graceful_shutdown=2,
        ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
    )
    return _Server(config)
