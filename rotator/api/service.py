"""What the API does, over the same store and engine functions the CLI uses.

No HTTP here: :mod:`rotator.api.http` turns requests into these calls and their results
into JSON. Reads go to the database on the service's database threads (the store is
synchronous and the service's one loop also drives rotations); a rotation request plans with
:func:`rotator.engine.start.plan_rotation` and records with ``start_rotation``, exactly
as ``rotator rotate`` does, and then the service's own reconciler drives it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from rotator.alerts.findings import Finding
from rotator.alerts.runner import take_snapshot
from rotator.domain.alerts import SEVERITY_ORDER
from rotator.domain.credentials import CredentialSource
from rotator.domain.records import AuditEvent, AuditOutcome, InventoryRow
from rotator.domain.rotation import Rotation, RotationReason
from rotator.domain.states import ACTIVE_STATES, RotationState
from rotator.engine.context import EngineDeps, log
from rotator.engine.start import plan_rotation, start_rotation
from rotator.ports import Caller


class RotationView(StrEnum):
    RECENT = "recent"
    IN_FLIGHT = "in_flight"
    FAILED = "failed"


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    offset: int
    limit: int
    more: bool
    total: int | None = None  # None where counting every row would cost a full read

    @property
    def next_offset(self) -> int | None:
        return self.offset + len(self.items) if self.more else None

    @classmethod
    def of(cls, found: Sequence[T], offset: int, limit: int) -> Page[T]:
        return cls(found[offset:offset + limit], offset, limit,
                   more=len(found) > offset + limit, total=len(found))


@dataclass(frozen=True, slots=True)
class RotateOutcome:
    rotation: Rotation | None
    resumed: bool
    dry_run_plan: tuple[str, ...] = ()


class NotManaged(Exception):
    """The app is not in the policy: the API does not rotate what rotator does not manage."""


class ApiService:
    def __init__(self, deps: EngineDeps, *, kick: Callable[[], Awaitable[object]] | None = None
                 ) -> None:
        self.deps = deps
        # Starts driving pending rotations now instead of at the next reconcile tick.
        self.kick = kick

    # ------------------------------------------------------------------ reads

    async def credentials(self, *, within_days: float | None, managed: bool | None,
                          source: CredentialSource | None, offset: int, limit: int
                          ) -> Page[InventoryRow]:
        now = self.deps.now()
        rows = await self.deps.db(self.deps.store.inventory, within_days=within_days,
                                       now=now)
        kept = [r for r in rows if (managed is None or r.managed == managed)
                and (source is None or r.source == source)]
        return Page.of(kept, offset, limit)

    async def rotations(self, *, view: RotationView, app_id: str | None, offset: int,
                        limit: int) -> Page[Rotation]:
        states: list[RotationState] | None = None
        if view is RotationView.IN_FLIGHT:
            states = sorted(ACTIVE_STATES)
        elif view is RotationView.FAILED:
            states = [RotationState.FAILED]
        # One more than the page: whether a next page exists without counting every row.
        found = await self.deps.db(self.deps.store.list_rotations, states=states,
                                        app_id=app_id, limit=offset + limit + 1)
        return Page(found[offset:offset + limit], offset, limit,
                    more=len(found) > offset + limit)

    async def rotation(self, rotation_id: str) -> tuple[Rotation, list[AuditEvent]] | None:
        def read() -> tuple[Rotation, list[AuditEvent]] | None:
            found = self.deps.store.get_rotation(rotation_id)
            if found is None:
                return None
            return found, self.deps.store.history(rotation_id=rotation_id)

        return await self.deps.db(read)

    async def findings(self, *, offset: int, limit: int) -> Page[Finding]:
        snap = await self.deps.db(take_snapshot, self.deps.store, self.deps.policy,
                                       self.deps.now())
        found = sorted(snap.findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.kind,
                                                     f.app_id, f.key_id or ""))
        return Page.of(found, offset, limit)

    # ------------------------------------------------------------------ writes

    async def rotate(self, caller: Caller, app_id: str, *, key_id: str | None,
                     retire_now: bool, dry_run: bool) -> RotateOutcome:
        """Plan and record a rotation (or find the one in flight); raises
        :class:`NotManaged` or ``RotationRefused``. Who asked is in the audit trail."""
        app_id = app_id.strip().lower()
        if self.deps.app_policy(app_id) is None:
            raise NotManaged(app_id)
        who = caller.audit_details()
        plan = await plan_rotation(self.deps, app_id, requested_key_id=key_id)
        if dry_run:
            await self._audit(app_id, None, "dry run: nothing was changed", who)
            return RotateOutcome(None, plan.resumed is not None, tuple(plan.describe()))
        asked_at = self.deps.now()
        rotation = await start_rotation(
            self.deps, plan, reason=RotationReason.MANUAL,
            retire_now=retire_now, requested_by=who)
        # start_rotation answers with the rotation in flight when another got there first.
        resumed = plan.resumed is not None or rotation.created_at < asked_at
        if resumed:
            await self._audit(app_id, rotation.id,
                              f"asked again while in flight (state {rotation.state})", who)
        log.info("rotation requested through the API", rotation_id=rotation.id,
                 app_id=app_id, resumed=resumed, **who)
        if self.kick is not None:
            await self.kick()
        return RotateOutcome(rotation, resumed)

    async def _audit(self, app_id: str, rotation_id: str | None, message: str,
                     who: dict[str, str]) -> None:
        await self.deps.db(
            self.deps.store.append_audit, self.deps.now(), "api.rotate", AuditOutcome.OK,
            message, rotation_id=rotation_id, app_id=app_id, details=who)

