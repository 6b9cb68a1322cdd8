"""The long-running service: APScheduler drives the engine; uvicorn serves health and metrics.

One asyncio loop holds everything:

- ``scan`` every ``scan_interval_minutes``, by one replica of all those sharing the
  database (see :meth:`Daemon.scan_turn`): reads every app registration into the
  inventory, then refreshes the expiry gauges. The others read the shared record.
- ``reconcile`` every ``reconcile_interval_seconds``: starts rotations that are due
  and advances in-flight ones, retirement included (:mod:`rotator.engine.reconcile`).
- extra jobs from :func:`extra_jobs` — further periodic passes: the alert pass,
  when the policy names any alert channel.

Jobs never overlap themselves (``max_instances=1``, ``coalesce``); a job that fails is
logged and counted, and simply runs again on its next tick. On SIGTERM/SIGINT the
service stops taking work, gives running rotations a short grace period (a verify
loop stops at its next pause, leaving the rotation ``staged``), cancels what is
left, releases leases and exits. A scan is cancelled at once and recorded as
``interrupted``; a stop never reaches the scheduler as a job error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from starlette.routing import BaseRoute

from rotator import throttle_waits
from rotator.adapters.counting import (
    CountingCertificateStore,
    CountingDirectory,
    CountingSecretStore,
    CountingTokenProbe,
)
from rotator.adapters.rate_limited import (
    AsyncRateLimiter,
    RateLimitedDirectory,
    RateLimiter,
    SharedRateLimiter,
)
from rotator.domain.records import ScanStatus
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.engine.context import EngineDeps
from rotator.engine.reconcile import Reconciler, ShuttingDown, wait_then_cancel
from rotator.health import ScanOutcome, bind, build_app, make_server
from rotator.metrics import Metrics
from rotator.ports import AccessTokenValidator, CertificateStore, SecretStore

log = structlog.get_logger("rotator.daemon")

# After SIGTERM: how long running rotations may finish their step before they are cancelled.
DEFAULT_STOP_GRACE_SECONDS = 10.0


def scan_turn_timing(interval: timedelta) -> tuple[float, float]:
    """How often a replica asks whether it is its turn to scan, and how long a turn is
    held between renewals (seconds).

    Asking is one short query, so every replica asks several times an interval: the
    replica that takes the turn over from one that died (its turn lapses after the
    lease) then scans well within the interval. The lease is renewed three times per
    lease; at least 10 s, so a loop held up for a moment does not lose it.
    """
    seconds = interval.total_seconds()
    return min(seconds / 6, 30.0), min(max(seconds / 4, 10.0), 60.0)


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic pass the scheduler runs (errors are logged and counted, never fatal)."""

    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[None]]
    run_at_start: bool = False
    # Cancelled at once when the service stops, with no grace period: for a pass that
    # changes nothing outside (the scan), which the next start simply runs again.
    stop_at_once: bool = False


def extra_jobs(daemon: Daemon) -> list[Job]:
    """Further periodic passes, scheduled beside ``scan`` and ``reconcile``.

    Today that is the alert pass (every ``ALERT_INTERVAL_SECONDS``, when the policy names
    any alert channel). Another pass is one more ``Job`` in the returned list;
    ``daemon.deps`` (store, policy, clock) and ``daemon.metrics`` are there to use, and
    a job gets the same guarantees as the built-in ones (no overlap, failures counted
    in ``rotator_job_runs_total{job=...}``, cancelled on shutdown).
    """
    policy = daemon.deps.policy
    if not policy.alerts.channels:
        return []

    async def alerts() -> None:
        from rotator.alerts.runner import alert_pass

        # Sending happens in its own job with per-channel timeouts, so a dead channel
        # never holds up a scan or a rotation.
        await alert_pass(daemon.deps.store, policy, daemon.deps.now(), owner=daemon.deps.owner,
                         directory=daemon.deps.directory, db=daemon.deps.db)

    return [Job("alerts", ALERT_INTERVAL_SECONDS, alerts, run_at_start=False)]


# Alerts are derived from the inventory, which changes at scan pace; five minutes keeps
# retries of a failed channel timely without re-reading the database every tick.
ALERT_INTERVAL_SECONDS = 300.0


def instrument(deps: EngineDeps, metrics: Metrics, *, graph_writes_per_minute: float) -> None:
    """Wrap the ports in place: Graph writes through the rate limiter, every request counted.

    ``graph_writes_per_minute`` is the tenant's: on a database replicas share, they draw
    from one budget kept there; a process alone on SQLite keeps its bucket in memory.
    """
    coordination = deps.store.coordination
    waited = metrics.graph_write_wait.inc
    limiter: RateLimiter = (
        SharedRateLimiter(coordination, graph_writes_per_minute, on_wait=waited)
        if coordination.shared
        else AsyncRateLimiter(graph_writes_per_minute, on_wait=waited))
    record = metrics.record_request
    throttle_waits.subscribe(metrics.record_throttle_wait)
    limited = RateLimitedDirectory(deps.directory, limiter)
    deps.directory = CountingDirectory(limited, record)
    deps.probe = CountingTokenProbe(deps.probe, record)
    inner_for = deps.secret_store_for
    stores: dict[str, SecretStore] = {}

    def secret_store_for(vault_url: str) -> SecretStore:
        if vault_url not in stores:
            stores[vault_url] = CountingSecretStore(inner_for(vault_url), record)
        return stores[vault_url]

    deps.secret_store_for = secret_store_for
    certificates_for = deps.certificate_store_for
    if certificates_for is not None:
        certificate_stores: dict[str, CertificateStore] = {}
        inner_certificates = certificates_for

        def certificate_store_for(vault_url: str) -> CertificateStore:
            if vault_url not in certificate_stores:
                certificate_stores[vault_url] = CountingCertificateStore(
                    inner_certificates(vault_url), record)
            return certificate_stores[vault_url]

        deps.certificate_store_for = certificate_store_for


class Daemon:
    def __init__(
        self,
        deps: EngineDeps,
        *,
        metrics: Metrics | None = None,
        http_host: str = "0.0.0.0",  # noqa: S104 - a metrics endpoint is scraped from outside
        http_port: int | None = 9464,
        stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS,
        jobs: Sequence[Job] | None = None,
        token_validator: AccessTokenValidator | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.deps = deps
        self.tls = tls
        # With the policy's [api] table: validates the bearer tokens of /api/v1.
        self.token_validator = token_validator
        self.policy = deps.policy
        self.metrics = metrics or Metrics()
        self.http_host = http_host
        self.http_port = http_port
        self.bound_port: int | None = None
        self.stop_grace_seconds = stop_grace_seconds
        self.stop_event = asyncio.Event()
        self.started = asyncio.Event()
        self.last_scan: ScanOutcome | None = None
        daemon_policy = self.policy.daemon
        deps.sleep = self.sleep
        deps.lease_seconds = daemon_policy.lease_seconds
        self.reconciler = Reconciler(
            deps,
            max_concurrent=daemon_policy.max_concurrent_rotations,
            on_finished=self._finished,
            on_started=lambda _r: self.metrics.rotations_started.inc(),
        )
        self.scan_interval = timedelta(minutes=daemon_policy.scan_interval_minutes)
        self.scan_check_seconds, self.scan_lease_seconds = scan_turn_timing(self.scan_interval)
        # The scan whose results /metrics and /readyz show (this replica's or another's).
        self._shown_scan_id: str | None = None
        self.metrics.scan_interval.set(self.scan_interval.total_seconds())
        self.jobs: list[Job] = [
            Job("scan", self.scan_check_seconds, self.scan_turn, run_at_start=True,
                stop_at_once=True),
            Job("reconcile", daemon_policy.reconcile_interval_seconds, self.reconcile_once,
                run_at_start=True),
        ]
        self.jobs += list(jobs) if jobs is not None else extra_jobs(self)
        self._job_tasks: dict[asyncio.Task[Any], Job] = {}

    # ------------------------------------------------------------------ engine hooks

    async def sleep(self, seconds: float) -> None:
        """The engine's pause: ends early, with ShuttingDown, when the service stops."""
        if self.stop_event.is_set():
            raise ShuttingDown("the service is stopping")
        try:
            await asyncio.wait_for(self.stop_event.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return
        raise ShuttingDown("the service is stopping")

    def _finished(self, rotation: Rotation) -> None:
        self.metrics.record_finished(rotation)
        if rotation.verify_seconds is not None:
            self.metrics.record_verified(rotation.verify_seconds)

    # ------------------------------------------------------------------ jobs

    async def scan_turn(self) -> None:
        """The scan job. Of the replicas sharing the database, the one that takes the
        turn scans (once per interval, whichever asks first); the others show the
        shared record of the last scan on /metrics and /readyz, so the Graph read load
        does not grow with the number of replicas. A turn whose holder stops renewing
        it (killed mid-scan) is taken over at the next ask after its lease lapses."""
        turns = self.deps.store.coordination
        owner = self.deps.owner
        turn = await self.deps.db(
            turns.take_scan_turn, owner, interval_seconds=self.scan_interval.total_seconds(),
            lease_seconds=self.scan_lease_seconds,
            # Asked at most this much early, a turn is not put off by a whole ask.
            early_seconds=self.scan_check_seconds / 2,
        )
        if turn is None:
            await self.follow_shared_scan()
            return
        if turn.abandoned_by is not None:
            log.warning("taking over the scan turn of a replica that stopped renewing it",
                        abandoned_by=turn.abandoned_by, abandoned_scan_id=turn.abandoned_scan_id)
            if turn.abandoned_scan_id is not None:
                await self.deps.db(self._close_abandoned_scan, turn.abandoned_scan_id)
        started = asyncio.Event()
        scan_ids: list[str] = []

        def on_started(scan_id: str) -> None:
            scan_ids.append(scan_id)
            started.set()

        keeper = asyncio.create_task(self._keep_scan_turn(started, scan_ids), name="scan-turn")
        stopped = False
        try:
            await self.scan_once(on_started=on_started)
        except asyncio.CancelledError:
            stopped = True
            raise
        finally:
            keeper.cancel()
            try:
                # Stopped part-way: the turn goes back at once, for another replica.
                await self.deps.db(turns.end_scan_turn, owner, done=not stopped)
            except Exception as exc:  # noqa: BLE001 - the lease lapses on its own
                log.warning("could not hand back the scan turn; it lapses on its own",
                            error=type(exc).__name__)

    async def _keep_scan_turn(self, started: asyncio.Event, scan_ids: list[str]) -> None:
        """Renew the turn while the scan runs, naming the scan as soon as it has an id."""
        turns, owner = self.deps.store.coordination, self.deps.owner
        named: str | None = None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), self.scan_lease_seconds / 3)
            started.clear()
            scan_id = scan_ids[-1] if scan_ids else None
            try:
                kept = await self.deps.db(
                    turns.renew_scan_turn, owner, lease_seconds=self.scan_lease_seconds,
                    scan_id=scan_id if scan_id != named else None)
            except Exception as exc:  # noqa: BLE001 - tried again at the next renewal
                log.warning("could not renew the scan turn", error=type(exc).__name__)
                continue
            named = scan_id
            if not kept:
                # Another replica took it over (this one was held up past the lease):
                # this scan still finishes, and its results are as true as the other's.
                log.warning("the scan turn was taken over by another replica; this scan "
                            "finishes all the same")
                return

    def _close_abandoned_scan(self, scan_id: str) -> None:
        from rotator.ports import StoreError

        with contextlib.suppress(StoreError):  # it did finish after all
            self.deps.store.finish_scan(
                scan_id, self.deps.now(), status=ScanStatus.INTERRUPTED, apps_seen=0,
                credentials_seen=0, errors=[],
                error="the replica running this scan stopped renewing its turn; another "
                "replica took the turn over")

    async def follow_shared_scan(self) -> None:
        """Show the last scan any replica finished, when it is newer than the one shown:
        the inventory gauges, the last successful scan time, and readiness."""
        store = self.deps.store
        shared = await self.deps.db(store.last_finished_scan)
        if shared is None or shared.finished_at is None or shared.id == self._shown_scan_id:
            return
        if shared.status is not ScanStatus.FAILED:
            await self.deps.db(self._record_inventory)
        succeeded = (shared if shared.status is ScanStatus.SUCCEEDED
                     else await self.deps.db(store.last_successful_scan))
        if succeeded is not None and succeeded.finished_at is not None:
            self.metrics.last_successful_scan.set(succeeded.finished_at.timestamp())
        self._shown_scan_id = shared.id
        self.last_scan = ScanOutcome(shared.status, shared.finished_at, shared.error)

    async def scan_once(self, *, on_started: Callable[[str], None] | None = None) -> None:
        """Scan now, whoever else scans (the scan job asks for its turn first)."""
        from rotator.engine.scan import scan

        started = time.monotonic()
        try:
            report = await scan(self.deps, on_started=on_started)
        except Exception as exc:
            # It stopped before it could tell how it would read the tenant.
            self.metrics.scans.labels(ScanStatus.FAILED, "full").inc()
            self.last_scan = ScanOutcome(ScanStatus.FAILED, self.deps.now(),
                                         f"{type(exc).__name__}")
            raise
        self.metrics.scan_duration.observe(time.monotonic() - started)
        self.metrics.scans.labels(report.status, report.mode).inc()
        if report.status is not ScanStatus.FAILED:
            # Read and rendered in a thread, once per scan, so a scrape only copies bytes.
            await self.deps.db(self._record_inventory)
        if report.status is ScanStatus.SUCCEEDED:
            self.metrics.last_successful_scan.set(time.time())
        # Last: /readyz turns ready only once the scan's results are on /metrics.
        self._shown_scan_id = report.scan_id
        self.last_scan = ScanOutcome(report.status, self.deps.now(), report.error)

    def _record_inventory(self) -> None:
        self.metrics.record_inventory(
            self.deps.store.each_credential(), now=self.deps.now(),
            horizon_days=self.policy.metrics_horizon_days,
            expired_days=self.policy.daemon.metrics_expired_days,
        )

    async def reconcile_once(self) -> None:
        report = await self.reconciler.run_pass()
        self.metrics.rotations_in_flight.set(len(self.reconciler.in_flight))
        promoted = await self.deps.db(
            self.deps.store.list_rotations, states=[RotationState.PROMOTED]
        )
        self.metrics.retirements_held.set(sum(1 for r in promoted if r.held))
        self.metrics.retirements_overdue.set(sum(1 for r in promoted if r.held_overdue))
        if report.started or report.spawned:
            log.info("reconcile pass", due=report.candidates, started=len(report.started),
                     driving=len(self.reconciler.in_flight))

    async def _run_job(self, job: Job) -> None:
        """What the scheduler runs. The job itself runs in a task of its own, so the
        scheduler's shutdown, which cancels what it runs, only lets go of it: the job
        gets the stop grace period like a rotation, then is cancelled by :meth:`_shutdown`,
        and nothing reaches the scheduler to be logged as a job error."""
        if self.stop_event.is_set():
            return
        task = asyncio.create_task(self._job_body(job), name=f"job-{job.name}")
        self._job_tasks[task] = job
        task.add_done_callback(lambda t: self._job_tasks.pop(t, None))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not self.stop_event.is_set():
                task.cancel()
                raise

    async def _job_body(self, job: Job) -> None:
        try:
            await job.run()
        except ShuttingDown:
            return
        except asyncio.CancelledError:
            if self.stop_event.is_set():
                log.info("job stopped with the service", job=job.name)
            raise
        except Exception as exc:  # noqa: BLE001 - a failed job is retried on its next tick
            self.metrics.jobs.labels(job.name, "error").inc()
            log.error("job failed; it runs again on its next tick", job=job.name,
                      error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        else:
            self.metrics.jobs.labels(job.name, "ok").inc()

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        if not self.stop_event.is_set():
            log.info("stop requested: taking no new work")
        self.stop_event.set()

    def _scheduler(self) -> Any:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        now = datetime.now(UTC)
        for index, job in enumerate(self.jobs):
            scheduler.add_job(
                self._run_job, "interval", args=[job], id=job.name, name=job.name,
                seconds=job.interval_seconds,
                # The first scan goes first; the reconcile pass recovers in-flight rotations.
                next_run_time=now + timedelta(milliseconds=200 * index) if job.run_at_start
                else now + timedelta(seconds=job.interval_seconds),
                max_instances=1, coalesce=True, misfire_grace_time=None,
            )
        return scheduler

    async def run(self) -> None:
        """Serve until :meth:`request_stop`; then stop cleanly."""
        server: Any = None
        server_task: asyncio.Task[Any] | None = None
        sock = None
        if self.http_port is not None:
            sock = bind(self.http_host, self.http_port)
            self.bound_port = int(sock.getsockname()[1])
            app = build_app(
                metrics=self.metrics, ping=self.deps.store.ping, last_scan=lambda: self.last_scan,
                scan_interval=self.scan_interval, now=self.deps.now,
                dependencies=self.metrics.dependencies.states, run_blocking=self.deps.db,
                extra_routes=self._api_routes(),
            )
            server = make_server(app, self.tls)
            server_task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
        scheduler = self._scheduler()
        scheduler.start()
        if (self.policy.api is not None and self.tls is None
                and self.http_host not in ("127.0.0.1", "::1", "localhost")):
            log.warning("the API answers plain HTTP: bearer tokens cross the network in the "
                        "clear unless TLS ends in front of rotator (an ingress); otherwise set "
                        "ROTATOR_TLS_CERT_FILE and ROTATOR_TLS_KEY_FILE")
        log.info("rotator serving", port=self.bound_port, tls=self.tls is not None,
                 managed_apps=len(self.policy.apps), jobs=[j.name for j in self.jobs],
                 owner=self.deps.owner, api=bool(self.policy.api and self.token_validator))
        self.started.set()
        try:
            await self.stop_event.wait()
        finally:
            await self._shutdown(scheduler, server, server_task)
            if sock is not None:
                sock.close()

    def _api_routes(self) -> list[BaseRoute]:
        """``/api/v1`` when the policy has an [api] table (and a validator was wired)."""
        api_policy = self.policy.api
        if api_policy is None or self.token_validator is None:
            return []
        from rotator.api.http import build_api
        from rotator.api.service import ApiService

        # A rotation asked for through the API starts at once, not at the next tick.
        service = ApiService(self.deps, kick=self.reconciler.fill)
        return [build_api(service, self.token_validator, api_policy)]

    async def _shutdown(self, scheduler: Any, server: Any, server_task: asyncio.Task[Any] | None
                        ) -> None:
        self.stop_event.set()
        with contextlib.suppress(Exception):
            scheduler.shutdown(wait=False)
        for task, job in list(self._job_tasks.items()):
            if job.stop_at_once:
                task.cancel()
        jobs = list(self._job_tasks)
        await asyncio.gather(
            self.reconciler.stop(self.stop_grace_seconds),
            wait_then_cancel(jobs, self.stop_grace_seconds),
        )
        # Tasks spawned while the job was being cancelled.
        await self.reconciler.stop(0)
        if server is not None and server_task is not None:
            server.should_exit = True
            try:
                await asyncio.wait_for(server_task, 5)
            except (TimeoutError, asyncio.CancelledError):
                server_task.cancel()
        log.info("rotator stopped")


async def serve(deps: EngineDeps, *, http_host: str, http_port: int,
                metrics: Metrics | None = None,
                token_validator: AccessTokenValidator | None = None,
                tls: tuple[str, str] | None = None) -> None:
    """``rotator serve``: instrument the ports, run the daemon until SIGTERM/SIGINT."""
    import signal

    metrics = metrics or Metrics()
    deps.db_executor = database_workers(deps.store)
    instrument(deps, metrics, graph_writes_per_minute=deps.policy.daemon.graph_writes_per_minute)
    daemon = Daemon(deps, metrics=metrics, http_host=http_host, http_port=http_port,
                    token_validator=token_validator, tls=tls)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        await daemon.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        # A call stuck on a stalled database is not waited for: its lease simply expires.
        deps.db_executor.shutdown(wait=False, cancel_futures=True)


# Threads for the database calls. Their own pool, bounded: a stalled database then holds
# these and nothing else, while asyncio's default executor stays free for what Graph and
# Key Vault calls need from it (DNS lookups). SQLAlchemy's pool has 15 connections (5 +
# 10 overflow); more threads than that would only queue for a connection.
DATABASE_THREADS = 12


def database_workers(store: object) -> ThreadPoolExecutor:
    """PostgreSQL takes calls side by side; SQLite one writer at a time (see
    :func:`rotator.engine.context.serial_database_thread`), so one thread there."""
    engine = getattr(store, "engine", None)
    parallel = engine is not None and engine.dialect.name == "postgresql"
    return ThreadPoolExecutor(max_workers=DATABASE_THREADS if parallel else 1,
                              thread_name_prefix="rotator-db")
