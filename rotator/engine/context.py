"""What every step needs, and the one way a step records what it did."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import structlog

from rotator.domain.credentials import AppRegistration, CredentialKind
from rotator.domain.records import AuditNote, AuditOutcome
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.engine.policy_cache import CredentialPolicyCache
from rotator.ports import (
    CertificateStore,
    Clock,
    Directory,
    DirectoryError,
    HookError,
    HookSender,
    SecretStore,
    SecretStoreError,
    Store,
    TokenProbe,
    UsageReport,
    UsageReportUnavailable,
)

if TYPE_CHECKING:
    from rotator.config import AppPolicy, HookPolicy, Policy
    from rotator.domain.hooks import HookEvent

log = structlog.get_logger("rotator.engine")

P = ParamSpec("P")
T = TypeVar("T")


def no_checkpoint(name: str) -> None:
    """Production: named points in the engine are plain no-ops (see rotator.failpoints)."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def default_owner() -> str:
    """Lease owner id: unique per process, readable in `rotator status`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True only when the owner provably died: it ran on this host and its pid is gone.

    Lets an admin re-run `rotator rotate` right after a crash instead of waiting
    for the lease to expire; owners on other hosts are never second-guessed.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class NoHookSender:
    """Where nothing can deliver hooks: every send is refused (and retried later)."""

    async def send(self, hook: HookPolicy, event: HookEvent) -> None:
        raise HookError(f"no hook sender is configured in this process for {hook.name}")


class NoUsageReport:
    """Where no usage report is wired: every app falls back to the grace rule."""

    async def last_sign_ins(self, app_id: str) -> Mapping[str, datetime | None]:
        raise UsageReportUnavailable("no credential usage report is configured")


@dataclass(frozen=True, slots=True)
class VerifyTiming:
    """Pauses of the verify loop. After a success the next request still waits a
    little, so consecutive successes come from different moments (and replicas)."""

    success_interval: float = 1.0
    refusal_base: float = 0.5
    refusal_cap: float = 8.0


_SERIAL: list[Executor] = []


def serial_database_thread() -> Executor:
    """One worker thread for the database calls of the process, created on first use.

    One at a time is what SQLite wants: two write transactions racing from two threads
    of one process fail at once with "database is locked" when one read first (WAL
    snapshots), before any busy timeout applies."""
    if not _SERIAL:
        _SERIAL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="rotator-db"))
    return _SERIAL[0]


@dataclass
class EngineDeps:
    directory: Directory
    secret_store_for: Callable[[str], SecretStore]  # vault url -> store
    probe: TokenProbe
    store: Store
    policy: Policy
    tenant_id: str
    clock: Clock = field(default_factory=SystemClock)
    owner: str = field(default_factory=default_owner)
    lease_seconds: float = 300.0
    verify_timing: VerifyTiming = field(default_factory=VerifyTiming)
    # Transient failures of one step before a rotation that has not promoted gives up,
    # and the pause before each retry: doubling from step_backoff_seconds up to the cap
    # (the policy's step_max_attempts, step_backoff_seconds, step_backoff_max_seconds).
    max_step_attempts: int = 8
    step_backoff_seconds: float = 5.0
    step_backoff_max_seconds: float = 300.0
    # Graph serves reads from replicas that learn writes late: an absence is believed only
    # when reads this far apart agree (longer than the lag the directory usually shows).
    read_settle_seconds: float = 3.0
    read_settle_rounds: int = 3
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    on_progress: Callable[[str], None] | None = None
    # Where a transient status goes (what the engine waits on now; the next replaces it).
    # Without one, transient messages go to on_progress like the rest.
    on_status: Callable[[str], None] | None = None
    # Called before and after every state change is committed, with a failpoint name.
    checkpoint: Callable[[str], None] = no_checkpoint
    # Delivers consumer hooks (rotator.engine.hooks).
    hooks: HookSender = field(default_factory=NoHookSender)
    # The credential usage report (retire_when = "unused").
    usage: UsageReport = field(default_factory=NoUsageReport)
    # Where the blocking database calls run (see :meth:`db`); None: one thread shared by
    # the process, so calls run one at a time as they did on the loop. The service on
    # PostgreSQL gives them a bounded pool of its own.
    db_executor: Executor | None = None
    # Key Vault certificate objects (key_vault_format = "certificate"), per vault url.
    certificate_store_for: Callable[[str], CertificateStore] | None = None
    # The tenant's app management policies, read once for every rotation of the next minute.
    credential_policies: CredentialPolicyCache = field(default_factory=CredentialPolicyCache)

    def now(self) -> datetime:
        return self.clock.now()

    async def db(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one blocking store call in a worker thread, never on the event loop.

        The store is synchronous SQLAlchemy: a database that stalls (a held lock, a
        failover, a dead connection waiting for its timeout) would otherwise stop every
        rotation's Graph calls, every verify loop and /healthz with it. Each call is a
        whole transaction, so a thread only ever holds one connection at a time."""
        loop = asyncio.get_running_loop()
        job = functools.partial(call, *args, **kwargs)
        return await loop.run_in_executor(self.db_executor or serial_database_thread(), job)


    def app_policy(self, app_id: str) -> AppPolicy | None:
        return self.policy.for_app(app_id)

    def vault(self, rotation: Rotation) -> SecretStore:
        """Where the rotation's staging and consumer versions live."""
        return self.vault_for(rotation.vault_url, rotation.app_id, rotation.kind)

    def vault_for(self, vault_url: str, app_id: str, kind: CredentialKind) -> SecretStore:
        """Secrets, or for certificates with key_vault_format = "certificate" the
        certificate objects seen as secrets (rotator.engine.certificate_objects)."""
        policy = self.app_policy(app_id)
        if (kind is CredentialKind.CERTIFICATE and policy is not None
                and str(policy.key_vault_format) == "certificate"):
            from rotator.engine.certificate_objects import CertificateObjects

            return CertificateObjects(self.certificates_at(vault_url))
        return self.secret_store_for(vault_url)

    def certificates_at(self, vault_url: str) -> CertificateStore:
        if self.certificate_store_for is None:
            raise StepFailed("Key Vault certificate objects are not available in this process "
                             "(no certificate client was configured)")
        return self.certificate_store_for(vault_url)

    def progress(self, message: str, *, transient: bool = False) -> None:
        if transient and self.on_status is not None:
            self.on_status(message)
        elif self.on_progress is not None:
            self.on_progress(message)


async def read_app_settled(
    deps: EngineDeps, rotation: Rotation, until: Callable[[AppRegistration | None], bool]
) -> AppRegistration | None:
    """Read the app until ``until`` holds, or until reads spread over the settle time say
    the same; a missing credential or app is concluded from that, never from one read.
    The rotation's lease is kept (renewed when it runs low) around each wait so no other
    replica takes it over."""
    app = await deps.directory.get_application(rotation.app_id)
    for _ in range(deps.read_settle_rounds - 1):
        if until(app):
            return app
        log.info("a read does not show what was expected yet; reading again",
                 app_id=rotation.app_id, rotation_id=rotation.id,
                 wait_seconds=deps.read_settle_seconds)
        pause = min(deps.read_settle_seconds, deps.lease_seconds / 2)
        rotation = await keep_lease(deps, rotation, ahead=pause)
        await deps.sleep(pause)
        rotation = await keep_lease(deps, rotation)
        app = await deps.directory.get_application(rotation.app_id)
    return app


class StepRetry(Exception):
    """A transient failure: the step stays where it is and is retried later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StepFailed(Exception):
    """A failure that waiting will not fix. Before promote it rolls the rotation back."""


class LeaseLost(Exception):
    """Another process took this rotation over; stop touching it."""


async def renew_lease(deps: EngineDeps, rotation: Rotation) -> Rotation:
    """Extend this process's lease (one database write); the rotation with the new lease.

    Raises :class:`LeaseLost` when someone else holds it."""
    claimed = await deps.db(deps.store.claim, rotation.id, deps.owner, deps.now(),
                            deps.lease_seconds)
    if claimed is None:
        raise LeaseLost(f"rotation {rotation.id} is now owned by another process")
    return claimed


async def keep_lease(deps: EngineDeps, rotation: Rotation, *, ahead: float = 0.0) -> Rotation:
    """Make sure this process will still own ``rotation`` with at least half a lease to go
    ``ahead`` seconds from now; renew only when that would not hold.

    Returns the rotation with the lease as now recorded: pass that one to the next call,
    so a lease just renewed is not renewed again. Long steps (verify, settled reads) call
    this between attempts and before each pause, with the pause as ``ahead``.
    """
    expires = rotation.lease_expires_at
    if (expires is not None and rotation.lease_owner == deps.owner
            and (expires - deps.now()).total_seconds() - ahead >= deps.lease_seconds / 2):
        return rotation
    return await renew_lease(deps, rotation)


async def fence(deps: EngineDeps, rotation: Rotation) -> Rotation:
    """Call right before a write to Graph or Key Vault for ``rotation``: it goes ahead only
    while this process owns the rotation with at least half a lease to go.

    A process held up past its lease (a paused VM, a starved event loop, long SDK
    retries) may find another replica has taken the rotation over; writing then would
    have two processes drive one rotation, each undoing the other's credentials. The
    lease this process last wrote is on ``rotation``; it is renewed (one database write)
    only when less than half of it is left, and the renewal fails if someone else holds it.
    """
    return await keep_lease(deps, rotation)


def step_error(exc: DirectoryError | SecretStoreError) -> StepRetry | StepFailed:
    """Outside refusals become step outcomes: wait and retry, or give up."""
    if exc.transient:
        return StepRetry(str(exc), retry_after=getattr(exc, "retry_after", None))
    return StepFailed(str(exc))


async def record(
    deps: EngineDeps,
    before: Rotation,
    after: Rotation,
    *,
    step: str,
    message: str,
    outcome: AuditOutcome = AuditOutcome.OK,
    details: Mapping[str, Any] | None = None,
) -> Rotation:
    """Compare-and-set the rotation together with its audit event, then log one line.

    The lease is extended on every write so a long rotation keeps its owner.
    """
    now = deps.now()
    after = after.with_changes(
        now,
        lease_owner=deps.owner,
        lease_expires_at=now + timedelta(seconds=deps.lease_seconds),
    )
    expected: RotationState = before.state
    moves = after.state is not expected
    if moves:
        deps.checkpoint(f"before:db.{after.state}")
    saved = await deps.db(
        deps.store.save_rotation, after, expected_state=expected,
        audit=AuditNote(step, outcome, message, dict(details or {})),
    )
    if moves:
        deps.checkpoint(f"after:db.{after.state}")
    log_method = log.warning if outcome is AuditOutcome.ERROR else log.info
    log_method(
        message,
        step=step,
        outcome=str(outcome),
        rotation_id=saved.id,
        app_id=saved.app_id,
        state=str(saved.state),
        **{k: v for k, v in (details or {}).items() if isinstance(v, str | int | float | bool)},
    )
    deps.progress(f"{step}: {message}")
    return saved
