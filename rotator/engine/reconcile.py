"""The reconcile pass: start rotations that are due, and move in-flight ones forward.

Two halves, both safe to run in any number of processes at once:

- ``plan_due`` picks managed apps whose credentials are due (from the latest
  inventory, see :mod:`rotator.engine.plan`), re-reads each one from Graph, and
  records a pending rotation. The database's partial unique index keeps it to one
  active rotation per app whoever wins the race.
- ``advance`` drives due rotations (``store.due_rotations``: next attempt due,
  lease free or expired) with ``drive(..., wait_for_retries=False)`` — each under
  the rotation's lease, so no two processes interleave steps of one rotation, and
  a rotation whose owner died is picked up once its lease expires.

Concurrency is bounded by ``max_concurrent`` tasks per process; when one ends,
the next due rotation starts at once, so throughput does not wait for the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from rotator.domain.policies import RenewalRule, Snapshot, rotation_due
from rotator.domain.records import ScanRun, ScanStatus
from rotator.domain.rotation import Rotation, RotationReason
from rotator.domain.states import RotationState
from rotator.engine.context import EngineDeps, log
from rotator.engine.driver import RotationBusy, drive
from rotator.engine.hooks import deliver_due
from rotator.engine.plan import (
    Candidate,
    backoff_ends,
    due_candidates,
    retired_but_listed,
    waits_for,
)
from rotator.engine.start import RotationRefused, plan_rotation, start_rotation

# How many due rotations one look at the database considers at most (promoted ones
# waiting out their grace period are filtered in Python, so they cannot crowd out the
# rest), read in pages of at least FILL_PAGE until enough are ready.
DUE_QUERY_LIMIT = 5_000
FILL_PAGE = 64
# Planning is skipped while nothing it reads has changed (the scan, rotations starting
# or ending); time alone can make a credential due, so it plans at least this often.
PLAN_AT_LEAST_EVERY = timedelta(minutes=10)
# Apps planned at once. Each plan is a Graph and a Key Vault read; hundreds at once on
# top of the rotations being driven queue in the HTTP client's connection pool, whose
# bookkeeping grows with the queue (a third of the service's CPU with 1,000 due apps).
PLAN_CONCURRENCY = 8


class ShuttingDown(Exception):
    """Raised from the engine's sleep when the service stops: the rotation stays where it is."""


@dataclass
class PassReport:
    candidates: int = 0
    started: list[str] = field(default_factory=list)
    spawned: int = 0
    hooks_delivered: int = 0


async def planning_scan(deps: EngineDeps) -> ScanRun | None:
    """The scan whose inventory planning may trust: the latest finished one that was not
    a failure; while one is running or after a failed one, the last clean one."""
    last = await deps.db(deps.store.last_scan)
    if last is not None and last.status in (ScanStatus.SUCCEEDED, ScanStatus.PARTIAL):
        return last
    return await deps.db(deps.store.last_successful_scan)


T = TypeVar("T")


def planning_order(candidates: Sequence[T], *, shared: bool, rng: random.Random) -> list[T]:
    """The order to plan in. Alone, the given one. Replicas sharing a database see each
    scan at about the same moment and would plan the same apps in the same order, each
    reading an app from Graph and Key Vault before one of them wins it: each pass starts
    at a point of its own and goes round."""
    if not shared or len(candidates) < 2:
        return list(candidates)
    start = rng.randrange(len(candidates))
    return [*candidates[start:], *candidates[:start]]


class Reconciler:
    def __init__(
        self,
        deps: EngineDeps,
        *,
        max_concurrent: int,
        on_finished: Callable[[Rotation], None] | None = None,
        on_started: Callable[[Rotation], None] | None = None,
    ) -> None:
        self.deps = deps
        self.max_concurrent = max_concurrent
        self.on_finished = on_finished
        self.on_started = on_started
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.stopping = False
        # Rotations driven since the last tick: each is visited at most once per tick,
        # so one that cannot move (grace period, busy elsewhere) does not spin.
        self._visited: set[str] = set()
        self._fill_lock = asyncio.Lock()
        # What the last plan read (scan and rotations marker), and when it must plan again
        # even if that has not changed.
        self._planned: tuple[object, ...] | None = None
        self._replan_at: datetime | None = None

    # ------------------------------------------------------------------ the pass

    async def run_pass(self) -> PassReport:
        self._visited.clear()
        report = PassReport()
        if not self.stopping:
            await self.plan_due(report)
        report.spawned = await self.fill()
        if not self.stopping:
            # Hook events of rotations that already ended (retired, failed) whose send failed.
            report.hooks_delivered = await deliver_due(self.deps)
        return report

    async def plan_due(self, report: PassReport | None = None) -> list[Rotation]:
        report = report or PassReport()
        deps = self.deps
        scan = await planning_scan(deps)
        if scan is None:
            log.info("no usable scan yet; not planning rotations")
            return []
        now = deps.now()
        # Read before planning: a change made while this pass plans shows next time.
        marker = (scan.id, scan.status, scan.finished_at,
                  await deps.db(deps.store.rotations_marker))
        if marker == self._planned and self._replan_at is not None and now < self._replan_at:
            return []
        managed = sorted(deps.policy.apps)
        latest = await deps.db(deps.store.latest_rotations, managed)
        # Apps whose latest rotation rules them out need no inventory read.
        unsettled = [a for a in managed
                     if waits_for(latest.get(a), inventory_as_of=scan.started_at, now=now) is None]
        inventory = (await deps.db(deps.store.inventory, app_ids=unsettled)
                     if unsettled else [])
        candidates, _skipped = due_candidates(
            deps.policy, inventory, latest, inventory_as_of=scan.started_at, now=now,
        )
        candidates = planning_order(candidates, shared=deps.store.coordination.shared,
                                    rng=deps.rng)
        report.candidates = len(candidates)
        gate = asyncio.Semaphore(min(self.max_concurrent, PLAN_CONCURRENCY))
        retry_soon = False

        async def one(candidate: Candidate) -> Rotation | None:
            nonlocal retry_soon
            async with gate:
                if self.stopping:
                    return None
                rotation, settled = await self._plan_one(candidate)
                retry_soon = retry_soon or not settled
                if rotation is not None and len(self.in_flight) < self.max_concurrent:
                    # Drive what is planned while the rest is planned.
                    asyncio.get_running_loop().create_task(self._refill())
                return rotation

        results = await asyncio.gather(*(one(c) for c in candidates), return_exceptions=True)
        started: list[Rotation] = []
        for candidate, result in zip(candidates, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                retry_soon = True
                log.warning("could not plan a rotation", app_id=candidate.app_id,
                            error=f"{type(result).__name__}: {result}")
            elif result is not None:
                started.append(result)
                report.started.append(result.id)
        # A candidate refused for now (Graph busy, a race) is tried again next pass;
        # otherwise the next pass plans only once the scan or the rotations change,
        # a backoff ends, or PLAN_AT_LEAST_EVERY has passed.
        self._planned = None if retry_soon or self.stopping else marker
        wake = backoff_ends(latest.values(), now)
        self._replan_at = min(now + PLAN_AT_LEAST_EVERY, wake) if wake else (
            now + PLAN_AT_LEAST_EVERY)
        return started

    async def _start(self, candidate: Candidate) -> Rotation | None:
        """Start a rotation for a candidate after a fresh read, if that read agrees."""
        return (await self._plan_one(candidate))[0]

    async def _plan_one(self, candidate: Candidate) -> tuple[Rotation | None, bool]:
        """The rotation started, if any, and whether the outcome stands until the scan or
        the rotations change (``False``: try again at the next pass)."""
        deps = self.deps
        asked_at = deps.now()
        # Another process (a replica, an admin's command) may have started it since the
        # rotations this pass planned from were read: then there is nothing to read.
        latest = await deps.db(deps.store.list_rotations, app_id=candidate.app_id, limit=1)
        if latest and latest[0].active:
            return None, True
        try:
            plan = await plan_rotation(deps, candidate.app_id)
        except RotationRefused as exc:
            log.warning("due rotation refused", app_id=candidate.app_id, error=str(exc))
            return None, False
        if plan.resumed is not None:
            return None, True  # in flight; advancing picks it up
        policy = deps.app_policy(candidate.app_id)
        if policy is None:
            return None, True
        # The inventory may be minutes old: decide again on what Graph says now.
        verdict = rotation_due(
            Snapshot(plan.app, plan.kind, RenewalRule(policy.renew_before_days)), deps.now()
        )
        if verdict is None:
            # The inventory is behind: the next scan says so, and planning looks again.
            log.info("no longer due on a fresh read", app_id=candidate.app_id)
            return None, True
        latest = await deps.db(deps.store.list_rotations, app_id=candidate.app_id,
                              limit=1)
        if latest and (latest[0].active or latest[0].created_at >= asked_at):
            return None, True  # another process got there while we were reading
        retired = retired_but_listed(plan.app, latest[0] if latest else None)
        if retired is not None:
            log.info("a fresh read still lists a retired credential; the directory has not "
                     "caught up, so nothing is planned from it", app_id=candidate.app_id,
                     key_id=retired, rotation_id=latest[0].id)
            return None, False
        rotation = await start_rotation(deps, plan, reason=RotationReason.DUE)
        log.info("rotation due", rotation_id=rotation.id, app_id=rotation.app_id,
                 reason=verdict.reason, detail=verdict.message)
        if self.on_started is not None:
            self.on_started(rotation)
        return rotation, True

    # ------------------------------------------------------------------ advancing

    def _ready(self, rotation: Rotation, now: datetime) -> bool:
        if rotation.id in self.in_flight or rotation.id in self._visited:
            return False
        waiting_for_grace = (
            rotation.state is RotationState.PROMOTED
            # A next attempt while promoted: a consumer hook still waits for its event.
            and (rotation.next_attempt_at is None or rotation.next_attempt_at > now)
            and rotation.retire_after is not None
            and rotation.retire_after > now
            and not rotation.retire_now
        )
        return not waiting_for_grace

    async def fill(self) -> int:
        """Start driving due rotations until ``max_concurrent`` are in flight."""
        async with self._fill_lock:
            if self.stopping:
                return 0
            free = self.max_concurrent - len(self.in_flight)
            if free <= 0:
                return 0
            now = self.deps.now()
            picked: list[Rotation] = []
            # Read a page at a time: this runs whenever a rotation ends, and reading every
            # due rotation each time made a run of N rotations cost N x N rows. Pages go on
            # past rotations that are not ready (waiting out their grace period).
            page = max(FILL_PAGE, 2 * free)
            for offset in range(0, DUE_QUERY_LIMIT, page):
                due = await self.deps.db(self.deps.store.due_rotations, now, page, offset)
                seen = {r.id for r in picked}  # rows may shift between pages
                picked += [r for r in due if r.id not in seen and self._ready(r, now)
                           ][:free - len(picked)]
                if len(picked) >= free or len(due) < page:
                    break
            for rotation in picked:
                self._visited.add(rotation.id)
                task = asyncio.create_task(self._drive(rotation.id), name=f"rotation-{rotation.id}")
                self.in_flight[rotation.id] = task
            return len(picked)

    async def _drive(self, rotation_id: str) -> None:
        try:
            result = await drive(self.deps, rotation_id, wait_for_retries=False)
        except RotationBusy:
            log.debug("rotation busy elsewhere", rotation_id=rotation_id)
        except ShuttingDown:
            log.info("rotation paused for shutdown; it resumes from its recorded state",
                     rotation_id=rotation_id)
        except asyncio.CancelledError:
            log.info("rotation interrupted by shutdown; it resumes from its recorded state",
                     rotation_id=rotation_id)
            raise
        except Exception as exc:  # noqa: BLE001 - one broken rotation never stops the rest
            log.error("rotation step crashed; it is retried on a later pass",
                      rotation_id=rotation_id, error=f"{type(exc).__name__}: {exc}")
        else:
            if not result.active and self.on_finished is not None:
                self.on_finished(result)
        finally:
            self.in_flight.pop(rotation_id, None)
            if not self.stopping:
                # The next due rotation starts now rather than at the next tick.
                asyncio.get_running_loop().create_task(self._refill())

    async def _refill(self) -> None:
        try:
            await self.fill()
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            log.warning("could not look for due rotations", error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ stopping

    async def stop(self, grace_seconds: float) -> None:
        """Take no new work; give running rotations ``grace_seconds``, then cancel them.

        Whatever a rotation was doing, its recorded state is one recovery resumes
        from, and ``drive`` releases its lease on the way out.
        """
        self.stopping = True
        await wait_then_cancel(list(self.in_flight.values()), grace_seconds)


async def wait_then_cancel(tasks: list[asyncio.Task[Any]], grace: float) -> None:
    """Give ``tasks`` ``grace`` seconds, cancel the rest and wait until they are gone."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
