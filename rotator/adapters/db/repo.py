"""The store: every read and write the engine, daemon and CLI make to the database.

Each public method is one short transaction and returns frozen domain values,
never ORM objects, so nothing outside this package holds a session. Rotation
writes are compare-and-set on the recorded state (and lease), so two replicas
acting on one stale read cannot both win.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from rotator.adapters.db.models import (
    MAX_SCAN_ERRORS,
    AuditEventModel,
    CredentialModel,
    DeltaLinkModel,
    RotationModel,
    ScanRunModel,
)
from rotator.adapters.db.no_secrets import SecretInStore, reject_secrets
from rotator.adapters.db.session import make_engine, make_sessionmaker
from rotator.domain.credentials import CredentialKind, CredentialSource
from rotator.domain.records import (
    AuditEvent,
    AuditNote,
    AuditOutcome,
    DeltaLinks,
    InventoryRow,
    ScanError,
    ScanRun,
    ScanStatus,
)
from rotator.domain.rotation import Registration, Rotation, RotationReason
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import ACTIVE_STATES, RotationState, check_transition
from rotator.ports import RotationConflict, StaleRotation, StoreError

if TYPE_CHECKING:
    from rotator.adapters.db.alerts_repo import SqlAlertStore
    from rotator.adapters.db.coordination_repo import SqlCoordination
    from rotator.adapters.db.hooks_repo import SqlHookStore

DEFAULT_BATCH_SIZE: Final = 5_000
# Long tracebacks or service messages are cut so one error cannot bloat a row.
MAX_ERROR_CHARS: Final = 2_000
ACTIVE_VALUES: Final = tuple(sorted(s.value for s in ACTIVE_STATES))

_credentials: Final = cast(sa.Table, CredentialModel.__table__)
_rotations: Final = cast(sa.Table, RotationModel.__table__)
_audit_events: Final = cast(sa.Table, AuditEventModel.__table__)
_INVENTORY_FIELDS: Final = tuple(f.name for f in fields(InventoryRow))
_PG_STAGING: Final = "rotator_inventory_in"
# Columns an upsert refreshes: everything but the key.
_INVENTORY_UPDATE_COLUMNS: Final = tuple(
    c.name for c in _credentials.columns if c.name not in ("app_id", "key_id")
)
# Columns a save may change; id, app_id and created_at are fixed at creation.
_ROTATION_FIXED: Final = frozenset({"id", "app_id", "created_at"})


def _bound(name: str) -> sa.BindParameter[Any]:
    """A parameter typed like the rotations column it stands for."""
    return sa.bindparam(name, type_=_rotations.c[name.partition("_")[2]].type)


# The two writes on every step of every rotation (a step's record, a lease renewal) are
# built once with bound parameters: building and cache-keying a statement per call cost
# as much as running it on SQLite. ``w_*`` parameters are the conditions, ``v_*`` values.
_SAVE: Final = sa.update(_rotations).where(
    _rotations.c.id == _bound("w_id"),
    _rotations.c.state == _bound("w_state"),
    sa.or_(_rotations.c.lease_owner.is_(None),
           _rotations.c.lease_owner == _bound("w_lease_owner")),
).values({c.name: _bound(f"v_{c.name}") for c in _rotations.columns
          if c.name not in _ROTATION_FIXED})
_CLAIM: Final = sa.update(_rotations).where(
    _rotations.c.id == _bound("w_id"),
    _rotations.c.state.in_(ACTIVE_VALUES),
    sa.or_(
        _rotations.c.lease_owner.is_(None),
        _rotations.c.lease_expires_at.is_(None),
        _rotations.c.lease_expires_at <= _bound("w_lease_expires_at"),
        _rotations.c.lease_owner == _bound("w_lease_owner"),
    ),
).values(lease_owner=_bound("v_lease_owner"), lease_expires_at=_bound("v_lease_expires_at"))
# The same with the row written returned, for databases that can (one round trip).
_RETURNING: Final = {id(u): u.returning(*_rotations.c) for u in (_SAVE, _CLAIM)}
_INSERT_AUDIT: Final = sa.insert(_audit_events)


# How many application ids one look-up of display names binds.
_NAME_SLICE: Final = 500
_EACH_BATCH: Final = 2000  # rows each_credential reads at a time


def _norm_app_id(app_id: str) -> str:
    # Client ids are GUIDs, which compare case-insensitively; one spelling per app
    # keeps the one-active-rotation index from being sidestepped by case.
    return app_id.strip().lower()


def _jsonable(value: Any, where: str) -> Any:
    """A copy of ``value`` that the JSON column accepts; refuses secret values."""
    reject_secrets(value, where)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _fields(obj: Rotation | InventoryRow) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies, and a SecretValue refuses to be copied
    # with a TypeError that would hide what went wrong.
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _chunks(rows: Iterable[InventoryRow], size: int) -> Iterator[list[InventoryRow]]:
    batch: list[InventoryRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ----------------------------------------------------------------- row <-> value


def _store_links(s: Session, scan: ScanRunModel, links: Mapping[str, str], *, full: bool
                 ) -> None:
    for resource, link in links.items():
        row = s.get(DeltaLinkModel, resource)
        if row is None:
            s.add(DeltaLinkModel(resource=resource, link=link, full_scan_at=scan.started_at,
                                 scan_run_id=scan.id))
            continue
        row.link = link
        row.scan_run_id = scan.id
        if full:
            row.full_scan_at = scan.started_at


def _inventory_values(rows: Iterable[InventoryRow], scan_id: str,
                      conv: Callable[[str, Any], Any], seen_at: Any
                      ) -> dict[tuple[str, str], dict[str, Any]]:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        for name in _INVENTORY_FIELDS:
            if isinstance(getattr(row, name), SecretValue):
                raise SecretInStore(
                    f"inventory row {name}: a secret value must never be stored"
                )
        app_id = _norm_app_id(row.app_id)
        by_key[(app_id, row.key_id)] = {
            "app_id": app_id,
            "key_id": row.key_id,
            "object_id": row.object_id,
            "app_display_name": row.app_display_name,
            "kind": CredentialKind(row.kind).value,
            "display_name": row.display_name,
            "start_at": conv("start_at", row.start_at),
            "end_at": conv("end_at", row.end_at),
            "hint": row.hint,
            "thumbprint": row.thumbprint,
            "managed": conv("managed", bool(row.managed)),
            "scan_run_id": scan_id,
            "seen_at": seen_at,
            "source": CredentialSource(row.source).value,
            "sp_object_id": row.sp_object_id,
            "usage": row.usage,
            "signing_active": None if row.signing_active is None
            else conv("signing_active", bool(row.signing_active)),
            "owners": None if row.owners is None else json.dumps(list(row.owners)),
            "foreign_app": conv("foreign_app", bool(row.foreign_app)),
            "federated": None if row.federated is None
            else conv("federated", bool(row.federated)),
        }
    return by_key


def _scan_from_model(m: ScanRunModel) -> ScanRun:
    return ScanRun(
        id=m.id,
        started_at=m.started_at,
        finished_at=m.finished_at,
        status=ScanStatus(m.status),
        apps_seen=m.apps_seen,
        credentials_seen=m.credentials_seen,
        error_count=m.error_count,
        error=m.error,
        errors=tuple(ScanError(e.get("raw_id"), str(e.get("error", ""))) for e in m.errors or ()),
        mode=m.mode or "full",
        graph_requests=m.graph_requests,
        apps_changed=m.apps_changed,
    )


def _inventory_from_model(m: Any) -> InventoryRow:
    """From an ORM object or a Core row of the credentials table (same names)."""
    return InventoryRow(
        app_id=m.app_id,
        key_id=m.key_id,
        object_id=m.object_id,
        app_display_name=m.app_display_name,
        kind=CredentialKind(m.kind),
        display_name=m.display_name,
        start_at=m.start_at,
        end_at=m.end_at,
        hint=m.hint,
        thumbprint=m.thumbprint,
        managed=m.managed,
        source=CredentialSource(m.source),
        sp_object_id=m.sp_object_id,
        usage=m.usage,
        signing_active=m.signing_active,
        owners=None if m.owners is None else tuple(json.loads(m.owners)),
        foreign_app=bool(m.foreign_app),
        federated=m.federated,
        scan_run_id=m.scan_run_id,
        seen_at=m.seen_at,
    )


def _rotation_from_model(m: Any) -> Rotation:
    """From an ORM object or a Core row of the rotations table (same names)."""
    return Rotation(
        id=m.id,
        app_id=m.app_id,
        object_id=m.object_id,
        kind=CredentialKind(m.kind),
        state=RotationState(m.state),
        reason=RotationReason(m.reason),
        secret_name=m.secret_name,
        vault_url=m.vault_url,
        created_at=m.created_at,
        updated_at=m.updated_at,
        old_key_id=m.old_key_id,
        new_key_id=m.new_key_id,
        new_key_end_at=m.new_key_end_at,
        staging_version=m.staging_version,
        consumer_version=m.consumer_version,
        attempts=m.attempts,
        last_error=m.last_error,
        next_attempt_at=m.next_attempt_at,
        retire_after=m.retire_after,
        finished_at=m.finished_at,
        lease_owner=m.lease_owner,
        lease_expires_at=m.lease_expires_at,
        **_extra_fields(m.extra or {}),
    )


# Rotation fields without a column of their own: they live in the ``extra`` JSON
# column, as strings, the way rows written before they were typed hold them.
_EXTRA_FIELDS: Final = ("retire_now", "thumbprint", "registered_by",
                        "verify_seconds", "verify_attempts", "promoted_at", "held",
                        "held_since", "held_overdue", "rule_fallback")


def _extra_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    def text(key: str) -> str | None:
        value = raw.get(key)
        return None if value in (None, "") else str(value)

    seconds, attempts, registered = (
        text("verify_seconds"), text("verify_attempts"), text("registered_by")
    )
    return {
        "retire_now": text("retire_now") == "1",
        "thumbprint": text("thumbprint"),
        "registered_by": Registration(registered) if registered else None,
        "verify_seconds": float(seconds) if seconds else None,
        "verify_attempts": int(attempts) if attempts else None,
        "promoted_at": _when(text("promoted_at")),
        "held": text("held"),
        "held_since": _when(text("held_since")),
        "held_overdue": text("held_overdue") == "1",
        "rule_fallback": text("rule_fallback"),
    }


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _extra_column(r: Rotation) -> dict[str, str]:
    out: dict[str, str] = {}
    if r.retire_now:
        out["retire_now"] = "1"
    if r.thumbprint:
        out["thumbprint"] = r.thumbprint
    if r.registered_by is not None:
        out["registered_by"] = r.registered_by.value
    if r.verify_seconds is not None:
        out["verify_seconds"] = f"{r.verify_seconds:.1f}"
    if r.verify_attempts is not None:
        out["verify_attempts"] = str(r.verify_attempts)
    if r.promoted_at is not None:
        out["promoted_at"] = r.promoted_at.isoformat()
    if r.held:
        out["held"] = r.held
    if r.held_since is not None:
        out["held_since"] = r.held_since.isoformat()
    if r.held_overdue:
        out["held_overdue"] = "1"
    if r.rule_fallback:
        out["rule_fallback"] = r.rule_fallback
    return out


def _rotation_values(r: Rotation) -> dict[str, Any]:
    values = _fields(r)
    reject_secrets(values, f"rotation {r.id}")
    values["app_id"] = _norm_app_id(r.app_id)
    values["kind"] = CredentialKind(r.kind).value
    values["state"] = RotationState(r.state).value
    values["reason"] = RotationReason(r.reason).value
    for name in _EXTRA_FIELDS:
        del values[name]
    values["extra"] = _extra_column(r)
    return values


def _audit_from_model(m: AuditEventModel) -> AuditEvent:
    return AuditEvent(
        id=m.id,
        at=m.at,
        step=m.step,
        outcome=AuditOutcome(m.outcome),
        message=m.message,
        rotation_id=m.rotation_id,
        app_id=m.app_id,
        details=dict(m.details or {}),
    )


# ----------------------------------------------------------------- inventory upsert


@dataclass(frozen=True, slots=True)
class _UpsertPlan:
    """The inventory upsert, prepared once per store and run per batch.

    A scan writes hundreds of thousands of rows, and SQLAlchemy's per-row
    parameter handling costs more than the database does. The SQL and the
    per-column converters still come from SQLAlchemy (so timestamps are stored
    exactly as the ORM stores them); only the per-row loop is ours. PostgreSQL
    gets each batch by COPY into a temporary table and one INSERT ... SELECT,
    several times faster than a pipelined executemany.
    """

    dialect: str
    sql: str
    names: tuple[str, ...]
    processors: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _UpsertPlan:
        columns = tuple(c.name for c in _credentials.columns)
        processors: dict[str, Callable[[Any], Any]] = {}
        for name in columns:
            proc = _credentials.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                processors[name] = proc
        if dialect.name == "postgresql":
            staging = sa.table(_PG_STAGING, *(sa.column(c) for c in columns))
            pg_insert = postgresql.insert(_credentials).from_select(
                list(columns), sa.select(*staging.c)
            )
            pg_upsert = pg_insert.on_conflict_do_update(
                index_elements=["app_id", "key_id"],
                set_={c: pg_insert.excluded[c] for c in _INVENTORY_UPDATE_COLUMNS},
            )
            sql = str(pg_upsert.compile(dialect=dialect))
            return cls("postgresql", sql, columns, processors)
        if dialect.name == "sqlite":
            lite_insert = sqlite.insert(_credentials)
            stmt = lite_insert.on_conflict_do_update(
                index_elements=["app_id", "key_id"],
                set_={c: lite_insert.excluded[c] for c in _INVENTORY_UPDATE_COLUMNS},
            )
            compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
            names = tuple(compiled.positiontup or ())
            return cls("sqlite", str(compiled), names, processors)
        raise StoreError(f"inventory upsert is not implemented for {dialect.name}")

    def convert(self, name: str, value: Any) -> Any:
        proc = self.processors.get(name)
        return proc(value) if proc is not None else value

    def write(self, conn: sa.Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Upsert ``rows`` (values already converted) inside ``conn``'s transaction."""
        params = [tuple(r[n] for n in self.names) for r in rows]
        if self.dialect == "sqlite":
            conn.exec_driver_sql(self.sql, params)
            return
        driver = conn.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            # Dropped at commit, so a pooled connection never carries it into the next batch.
            cursor.execute(
                f"CREATE TEMP TABLE {_PG_STAGING} "
                "(LIKE credentials INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            with cursor.copy(f"COPY {_PG_STAGING} ({', '.join(self.names)}) FROM STDIN") as copy:
                for row in params:
                    copy.write_row(row)
            cursor.execute(self.sql)
        finally:
            cursor.close()


# ----------------------------------------------------------------- the store


class SqlStore:
    """:class:`rotator.ports.Store` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._engine = engine
        self._sessions = make_sessionmaker(engine)
        self._batch_size = batch_size
        self._alerts: SqlAlertStore | None = None
        self._hooks: SqlHookStore | None = None
        self._coordination: SqlCoordination | None = None

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        return cls(make_engine(url))

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def alerts(self) -> SqlAlertStore:
        if self._alerts is None:
            from rotator.adapters.db.alerts_repo import SqlAlertStore

            self._alerts = SqlAlertStore(self._engine)
        return self._alerts

    @property
    def hooks(self) -> SqlHookStore:
        if self._hooks is None:
            from rotator.adapters.db.hooks_repo import SqlHookStore

            self._hooks = SqlHookStore(self._engine)
        return self._hooks

    @property
    def coordination(self) -> SqlCoordination:
        if self._coordination is None:
            from rotator.adapters.db.coordination_repo import SqlCoordination

            self._coordination = SqlCoordination(self._engine)
        return self._coordination

    def close(self) -> None:
        self._engine.dispose()

    def _session(self) -> Session:
        return self._sessions()

    def ping(self) -> None:
        """Raises if the database cannot answer a trivial query (readiness probe)."""
        with self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()

    # ------------------------------------------------------------- scans

    def start_scan(self, now: datetime) -> str:
        scan_id = uuid.uuid4().hex
        with self._session() as s, s.begin():
            s.add(
                ScanRunModel(
                    id=scan_id,
                    started_at=now,
                    status=ScanStatus.RUNNING.value,
                    apps_seen=0,
                    credentials_seen=0,
                    error_count=0,
                    errors=[],
                )
            )
        return scan_id

    def record_inventory(self, scan_id: str, rows: Iterable[InventoryRow], now: datetime) -> int:
        """Upsert ``rows`` as seen by ``scan_id``; returns how many were written.

        Each batch is its own transaction: a crash midway leaves rows stamped
        with an unfinished scan, which :meth:`finish_scan` of a later scan
        sorts out, and the writer lock is never held for the whole listing.
        """
        written = 0
        plan: _UpsertPlan | None = None
        for batch in _chunks(rows, self._batch_size):
            with self._engine.begin() as conn:
                if plan is None:
                    plan = _UpsertPlan.for_dialect(conn.dialect)
                conv = plan.convert
                seen_at = conv("seen_at", now)
                # One statement may not touch a key twice on PostgreSQL; the last report wins.
                by_key = _inventory_values(batch, scan_id, conv, seen_at)
                plan.write(conn, by_key.values())
            written += len(by_key)
        return written

    def apply_changes(self, scan_id: str, rows: Sequence[InventoryRow],
                      replaced: Sequence[tuple[str, CredentialSource]], now: datetime,
                      managed: Collection[str] = ()) -> int:
        """An incremental scan's changes, in one transaction: every credential of the
        objects in ``replaced`` (object id and source: changed or deleted) goes, then
        ``rows`` (their credentials now) are written, and the app registration rows of
        unchanged apps are marked managed as the policy says today (``managed``: the
        managed app ids). Applying them twice is harmless."""
        wanted = sorted({_norm_app_id(a) for a in managed})
        with self._engine.begin() as conn:
            plan = _UpsertPlan.for_dialect(conn.dialect)
            app_rows = CredentialModel.source == CredentialSource.APPLICATION.value
            conn.execute(sa.update(CredentialModel).where(
                app_rows, CredentialModel.managed, CredentialModel.app_id.not_in(wanted)
            ).values(managed=False))
            if wanted:
                conn.execute(sa.update(CredentialModel).where(
                    app_rows, sa.not_(CredentialModel.managed),
                    CredentialModel.app_id.in_(wanted)).values(managed=True))
            for source in CredentialSource:
                ids = sorted({oid.lower() for oid, src in replaced if src is source})
                for start in range(0, len(ids), _NAME_SLICE):
                    conn.execute(sa.delete(CredentialModel).where(
                        CredentialModel.source == source.value,
                        sa.func.lower(CredentialModel.object_id).in_(
                            ids[start:start + _NAME_SLICE])))
            by_key = _inventory_values(rows, scan_id, plan.convert, plan.convert("seen_at", now))
            if by_key:
                plan.write(conn, by_key.values())
        return len(by_key)

    def delta_links(self) -> DeltaLinks | None:
        """Where the next incremental scan goes on from; ``None`` before the first full
        scan that stored them."""
        with self._session() as s:
            found = list(s.scalars(sa.select(DeltaLinkModel)))
        if not found:
            return None
        return DeltaLinks({m.resource: m.link for m in found},
                          min(m.full_scan_at for m in found))

    def finish_scan(
        self,
        scan_id: str,
        now: datetime,
        *,
        status: ScanStatus,
        apps_seen: int,
        credentials_seen: int,
        errors: Sequence[tuple[str | None, str]],
        error: str | None = None,
        mode: str = "full",
        graph_requests: int | None = None,
        apps_changed: int | None = None,
        delta_links: Mapping[str, str] | None = None,
    ) -> ScanRun:
        """Close a running scan and prune the inventory it proved stale.

        An incremental scan (``mode="delta"``) prunes nothing: it removed what it was
        told was gone as it applied its changes. ``delta_links`` are stored with a
        succeeded scan only, in the same transaction that closes it, so a scan that stops
        part-way never leaves a link past changes it did not write.

        ``succeeded``: every credential not refreshed since this scan started is
        gone from the tenant and is deleted. ``partial``: only apps this scan
        read are pruned (of their credentials that disappeared); apps it failed
        to read keep their last known credentials, so their expiry still shows.
        ``failed`` and ``interrupted``: nothing is pruned.
        """
        status = ScanStatus(status)
        if status is ScanStatus.RUNNING:
            raise ValueError("finish_scan needs a final status, not running")
        if status is ScanStatus.SUCCEEDED and (errors or error):
            # A scan with errors must never look clean to alerting or metrics.
            raise ValueError("a scan with errors is partial or failed, not succeeded")
        reject_secrets([errors, error], "scan errors")
        stored_errors = [
            {"raw_id": raw_id, "error": str(message)[:MAX_ERROR_CHARS]}
            for raw_id, message in errors[:MAX_SCAN_ERRORS]
        ]
        with self._session() as s, s.begin():
            result = s.execute(
                sa.update(ScanRunModel)
                .where(ScanRunModel.id == scan_id, ScanRunModel.status == ScanStatus.RUNNING.value)
                .values(
                    finished_at=now,
                    status=status.value,
                    apps_seen=apps_seen,
                    credentials_seen=credentials_seen,
                    error_count=len(errors) + (1 if error else 0),
                    error=error[:MAX_ERROR_CHARS] if error else None,
                    errors=stored_errors,
                    mode=mode,
                    graph_requests=graph_requests,
                    apps_changed=apps_changed,
                )
                .execution_options(synchronize_session=False)
            )
            if _rowcount(result) != 1:
                raise StoreError(f"scan {scan_id} is unknown or already finished")
            scan = s.get_one(ScanRunModel, scan_id)
            if delta_links and status is ScanStatus.SUCCEEDED:
                _store_links(s, scan, delta_links, full=mode == "full")
            if mode == "full" and status not in (ScanStatus.FAILED, ScanStatus.INTERRUPTED):
                # Rows refreshed by a scan that started later (another replica) are kept.
                stale = sa.and_(
                    CredentialModel.scan_run_id != scan_id,
                    CredentialModel.seen_at < scan.started_at,
                )
                if status is ScanStatus.PARTIAL:
                    # Per app and per source: an app read while its service principal
                    # was not keeps the service principal's last known credentials.
                    seen = aliased(CredentialModel)
                    stale = sa.and_(stale, sa.exists().where(
                        seen.scan_run_id == scan_id,
                        seen.app_id == CredentialModel.app_id,
                        seen.source == CredentialModel.source,
                    ))
                s.execute(
                    sa.delete(CredentialModel)
                    .where(stale)
                    .execution_options(synchronize_session=False)
                )
            return _scan_from_model(scan)

    def get_scan(self, scan_id: str) -> ScanRun | None:
        with self._session() as s:
            m = s.get(ScanRunModel, scan_id)
            return _scan_from_model(m) if m else None

    def last_scan(self) -> ScanRun | None:
        """The most recently started scan, whatever its outcome (it may still be running)."""
        with self._session() as s:
            m = s.scalars(
                sa.select(ScanRunModel)
                .order_by(ScanRunModel.started_at.desc(), ScanRunModel.id.desc())
                .limit(1)
            ).first()
            return _scan_from_model(m) if m else None

    def last_successful_scan(self) -> ScanRun | None:
        with self._session() as s:
            m = s.scalars(
                sa.select(ScanRunModel)
                .where(ScanRunModel.status == ScanStatus.SUCCEEDED.value)
                .order_by(ScanRunModel.finished_at.desc(), ScanRunModel.id.desc())
                .limit(1)
            ).first()
            return _scan_from_model(m) if m else None

    def last_finished_scan(self) -> ScanRun | None:
        with self._session() as s:
            m = s.scalars(
                sa.select(ScanRunModel)
                .where(ScanRunModel.status.in_([ScanStatus.SUCCEEDED.value,
                                                ScanStatus.PARTIAL.value,
                                                ScanStatus.FAILED.value]),
                       ScanRunModel.finished_at.is_not(None))
                # The index on started_at serves it; of two overlapping scans the one
                # that started later saw the newer tenant.
                .order_by(ScanRunModel.started_at.desc(), ScanRunModel.id.desc())
                .limit(1)
            ).first()
            return _scan_from_model(m) if m else None

    def inventory(
        self,
        *,
        within_days: float | None = None,
        now: datetime | None = None,
        app_id: str | None = None,
        app_ids: Iterable[str] | None = None,
    ) -> list[InventoryRow]:
        """Inventory sorted by expiry, soonest first, never-expiring last.

        ``within_days`` keeps credentials that end before ``now + within_days``
        (already expired ones included) and needs ``now``. ``app_id`` or ``app_ids``
        keep only those apps.
        """
        if app_ids is not None:
            wanted = sorted({_norm_app_id(a) for a in app_ids})
            if app_id is not None:
                wanted = [a for a in wanted if a == _norm_app_id(app_id)]
            rows = [
                row
                for start in range(0, len(wanted), _NAME_SLICE)
                for row in self._inventory(within_days, now, wanted[start:start + _NAME_SLICE])
            ]
            rows.sort(key=lambda r: (r.end_at is None, r.end_at or datetime.min.replace(
                tzinfo=UTC), r.app_id, r.key_id))
            return rows
        return self._inventory(within_days, now, None if app_id is None else [app_id])

    def _inventory(self, within_days: float | None, now: datetime | None,
                   app_ids: list[str] | None) -> list[InventoryRow]:
        query = sa.select(_credentials)
        if within_days is not None:
            if now is None:
                raise ValueError("inventory(within_days=...) needs now")
            query = query.where(_credentials.c.end_at <= now + timedelta(days=within_days))
        if app_ids is not None:
            query = query.where(_credentials.c.app_id.in_([_norm_app_id(a) for a in app_ids]))
        query = query.order_by(
            _credentials.c.end_at.asc().nulls_last(),
            _credentials.c.app_id,
            _credentials.c.key_id,
        )
        with self._engine.connect() as conn:
            return [_inventory_from_model(row) for row in conn.execute(query)]

    def each_credential(self) -> Iterator[InventoryRow]:
        """Every credential, in no order, a batch of rows at a time (see the port)."""
        query = sa.select(CredentialModel).execution_options(yield_per=_EACH_BATCH)
        with self._session() as s:
            # The session's identity map holds its objects weakly: a batch read and
            # turned into rows is freed before the next one is read.
            for m in s.scalars(query):
                yield _inventory_from_model(m)

    def app_names(self, app_ids: Iterable[str]) -> dict[str, str]:
        """Display names from the inventory, by lower-case application (client) id."""
        wanted = sorted({_norm_app_id(a) for a in app_ids})
        names: dict[str, str] = {}
        with self._session() as s:
            # In slices, well inside every database's limit on bound parameters.
            for start in range(0, len(wanted), _NAME_SLICE):
                chunk = wanted[start:start + _NAME_SLICE]
                rows = s.execute(
                    sa.select(CredentialModel.app_id, CredentialModel.app_display_name)
                    .where(CredentialModel.app_id.in_(chunk))
                    .distinct()
                )
                for app_id, name in rows:
                    names.setdefault(app_id, name)
        return names

    # ------------------------------------------------------------- rotations

    def create_rotation(self, r: Rotation, *, audit: AuditNote | None = None) -> Rotation:
        """Insert ``r`` (and its ``audit`` event, in the same transaction); raises
        :class:`RotationConflict` if its app already has an active one."""
        values = _rotation_values(r)
        event = _audit_values(r.updated_at, audit, r) if audit is not None else None
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.insert(_rotations).values(**values))
                if event is not None:
                    conn.execute(sa.insert(_audit_events).values(**event))
        except IntegrityError as exc:
            if not r.active:
                raise
            active = self.active_rotation(values["app_id"])
            if active is not None and active.id != r.id:
                raise RotationConflict(values["app_id"], active.id) from exc
            if "active_app_id" in str(exc.orig) or "rotations.app_id" in str(exc.orig):
                # The other one finished between the refusal and the look-up.
                raise RotationConflict(values["app_id"], None) from exc
            raise
        created = self.get_rotation(r.id)
        assert created is not None
        return created

    # Rotations are read and written with Core statements: they sit on every step of
    # every rotation, and ORM objects (identity map, unit of work) cost several times
    # what the rows do, for values that are turned into frozen Rotations at once.

    def _rotations_where(self, query: sa.Select[Any]) -> list[Rotation]:
        with self._engine.connect() as conn:
            return [_rotation_from_model(row) for row in conn.execute(query)]

    def get_rotation(self, rotation_id: str) -> Rotation | None:
        found = self._rotations_where(sa.select(_rotations).where(_rotations.c.id == rotation_id))
        return found[0] if found else None

    def active_rotation(self, app_id: str) -> Rotation | None:
        found = self._rotations_where(
            sa.select(_rotations).where(
                _rotations.c.app_id == _norm_app_id(app_id),
                _rotations.c.state.in_(ACTIVE_VALUES),
            ).limit(1)
        )
        return found[0] if found else None

    def latest_rotations(self, app_ids: Iterable[str]) -> dict[str, Rotation]:
        """The newest rotation of each of ``app_ids`` that has one, by lower-case app id:
        one row per app, picked by the database."""
        wanted = sorted({_norm_app_id(a) for a in app_ids})
        out: dict[str, Rotation] = {}
        for start in range(0, len(wanted), _NAME_SLICE):
            chunk = wanted[start:start + _NAME_SLICE]
            ranked = (
                sa.select(
                    _rotations.c.id,
                    sa.func.row_number().over(
                        partition_by=_rotations.c.app_id,
                        order_by=(_rotations.c.created_at.desc(), _rotations.c.id.desc()),
                    ).label("rank"),
                )
                .where(_rotations.c.app_id.in_(chunk))
                .subquery()
            )
            query = sa.select(_rotations).join(ranked, ranked.c.id == _rotations.c.id).where(
                ranked.c.rank == 1)
            out.update((r.app_id, r) for r in self._rotations_where(query))
        return out

    def rotations_marker(self) -> tuple[int, int, datetime | None]:
        """Changes whenever a rotation starts, ends, or an ended one is changed — not when
        an active one moves a step: (active, ended, latest change to an ended one)."""
        active = _rotations.c.state.in_(ACTIVE_VALUES)
        query = sa.select(
            sa.func.count().filter(active),
            sa.func.count().filter(sa.not_(active)),
            sa.func.max(sa.case((sa.not_(active), _rotations.c.updated_at))),
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).one()
        latest = row[2]
        if isinstance(latest, str):  # SQLite hands back an aggregate's text as is
            latest = datetime.fromisoformat(latest)
        return int(row[0] or 0), int(row[1] or 0), latest

    def list_rotations(
        self,
        *,
        states: Iterable[RotationState] | None = None,
        app_id: str | None = None,
        limit: int | None = None,
    ) -> list[Rotation]:
        """Newest first."""
        query = sa.select(_rotations)
        if states is not None:
            query = query.where(_rotations.c.state.in_([RotationState(x).value for x in states]))
        if app_id is not None:
            query = query.where(_rotations.c.app_id == _norm_app_id(app_id))
        query = query.order_by(_rotations.c.created_at.desc(), _rotations.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        return self._rotations_where(query)

    def save_rotation(self, r: Rotation, *, expected_state: RotationState,
                      audit: AuditNote | None = None) -> Rotation:
        """Write ``r`` if the row is still in ``expected_state`` and its lease (if any) is ours;
        ``audit`` is appended in the same transaction, so both land or neither does.

        Raises :class:`StaleRotation` otherwise, and
        :class:`~rotator.domain.states.IllegalTransition` for a move the state
        table forbids.
        """
        if r.state != expected_state:
            check_transition(expected_state, r.state)
        params = {f"v_{k}": v for k, v in _rotation_values(r).items()
                  if k not in _ROTATION_FIXED}
        params.update(w_id=r.id, w_state=RotationState(expected_state).value,
                      w_lease_owner=r.lease_owner)
        event = _audit_values(r.updated_at, audit, r) if audit is not None else None
        with self._engine.begin() as conn:
            saved = _update_one(conn, _SAVE, r.id, params)
            if saved is not None:
                if event is not None:
                    conn.execute(_INSERT_AUDIT, event)
                return saved
            current = conn.execute(
                sa.select(_rotations.c.state, _rotations.c.lease_owner)
                .where(_rotations.c.id == r.id)
            ).first()
            raise StaleRotation(
                r.id,
                RotationState(expected_state),
                RotationState(current.state) if current else None,
                current.lease_owner if current else None,
            )

    def due_rotations(self, now: datetime, limit: int, offset: int = 0) -> list[Rotation]:
        """Active rotations whose next attempt is due and whose lease is free or expired."""
        query = (
            sa.select(_rotations)
            .where(
                _rotations.c.state.in_(ACTIVE_VALUES),
                sa.or_(
                    _rotations.c.next_attempt_at.is_(None),
                    _rotations.c.next_attempt_at <= now,
                ),
                self._lease_free(now),
            )
            .order_by(
                _rotations.c.next_attempt_at.asc().nulls_first(),
                _rotations.c.created_at,
                _rotations.c.id,
            )
            .offset(offset)
            .limit(limit)
        )
        return self._rotations_where(query)

    @staticmethod
    def _lease_free(now: datetime) -> sa.ColumnElement[bool]:
        return sa.or_(
            _rotations.c.lease_owner.is_(None),
            _rotations.c.lease_expires_at.is_(None),
            _rotations.c.lease_expires_at <= now,
        )

    def claim(
        self, rotation_id: str, owner: str, now: datetime, lease_seconds: float
    ) -> Rotation | None:
        """Take (or renew) the lease on an active rotation; ``None`` if someone else holds it.

        A single conditional UPDATE: on PostgreSQL a concurrent claimer waits for
        the first one's row lock and then re-checks the condition, so exactly one wins.
        """
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if not owner:
            raise ValueError("a lease needs an owner")
        with self._engine.begin() as conn:
            # Free (no owner, or expired by ``now``) or already ours: see _lease_free.
            return _update_one(conn, _CLAIM, rotation_id, {
                "w_id": rotation_id, "w_lease_expires_at": now, "w_lease_owner": owner,
                "v_lease_owner": owner,
                "v_lease_expires_at": now + timedelta(seconds=lease_seconds),
            })

    def take_over(
        self, rotation_id: str, dead_owner: str, owner: str, now: datetime, lease_seconds: float
    ) -> Rotation | None:
        """Take the lease from ``dead_owner`` — only when the caller has proved that
        process is gone (same host, pid not running). Compare-and-set on the owner, so
        two processes cannot both take it over."""
        with self._engine.begin() as conn:
            return _update_one(conn, sa.update(_rotations).where(
                _rotations.c.id == rotation_id, _rotations.c.lease_owner == dead_owner,
            ).values(lease_owner=owner,
                     lease_expires_at=now + timedelta(seconds=lease_seconds)), rotation_id)

    def release(self, rotation_id: str, owner: str) -> bool:
        """Give up the lease if ``owner`` holds it; returns whether it did."""
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.update(_rotations)
                .where(_rotations.c.id == rotation_id, _rotations.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
            return _rowcount(result) == 1

    # ------------------------------------------------------------- audit

    def append_audit(
        self,
        at: datetime,
        step: str,
        outcome: AuditOutcome,
        message: str,
        *,
        rotation_id: str | None = None,
        app_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        model = _new_audit_model(at, step, outcome, message, rotation_id, app_id, details)
        with self._session() as s, s.begin():
            s.add(model)
            s.flush()
            return _audit_from_model(model)

    def history(
        self,
        *,
        app_id: str | None = None,
        rotation_id: str | None = None,
        since: datetime | None = None,
        limit: int = 500,
    ) -> list[AuditEvent]:
        """The latest ``limit`` matching events at or after ``since``, oldest first (in the
        order they were written)."""
        query = sa.select(AuditEventModel)
        if since is not None:
            query = query.where(AuditEventModel.at >= since)
        if app_id is not None:
            query = query.where(AuditEventModel.app_id == _norm_app_id(app_id))
        if rotation_id is not None:
            query = query.where(AuditEventModel.rotation_id == rotation_id)
        query = query.order_by(AuditEventModel.id.desc()).limit(limit)
        with self._session() as s:
            events = [_audit_from_model(m) for m in s.scalars(query)]
        events.reverse()
        return events


def _new_audit_values(at: datetime, step: str, outcome: AuditOutcome, message: str,
                      rotation_id: str | None, app_id: str | None,
                      details: Mapping[str, Any] | None) -> dict[str, Any]:
    reject_secrets([step, message, rotation_id, app_id], "audit event")
    return {
        "at": at,
        "step": step,
        "outcome": AuditOutcome(outcome).value,
        "message": message,
        "rotation_id": rotation_id,
        "app_id": _norm_app_id(app_id) if app_id else None,
        "details": _jsonable(dict(details or {}), "audit details"),
    }


def _new_audit_model(at: datetime, step: str, outcome: AuditOutcome, message: str,
                     rotation_id: str | None, app_id: str | None,
                     details: Mapping[str, Any] | None) -> AuditEventModel:
    return AuditEventModel(**_new_audit_values(at, step, outcome, message, rotation_id,
                                               app_id, details))


def _audit_values(at: datetime, note: AuditNote, r: Rotation) -> dict[str, Any]:
    return _new_audit_values(at, note.step, note.outcome, note.message, r.id, r.app_id,
                             note.details)


def _update_one(conn: sa.Connection, update: sa.Update, rotation_id: str,
                params: Mapping[str, Any] | None = None) -> Rotation | None:
    """Run a conditional UPDATE of one rotation; the row as written, or ``None`` when the
    condition did not hold. One round trip where the database returns rows from an UPDATE."""
    if conn.dialect.update_returning:
        returning = _RETURNING.get(id(update))
        if returning is None:
            returning = update.returning(*_rotations.c)
        row = conn.execute(returning, params).first()
        return _rotation_from_model(row) if row is not None else None
    if _rowcount(conn.execute(update, params)) != 1:
        return None
    row = conn.execute(sa.select(_rotations).where(_rotations.c.id == rotation_id)).first()
    return _rotation_from_model(row) if row is not None else None


def _rowcount(result: sa.Result[Any]) -> int:
    count = getattr(result, "rowcount", -1)
    return int(count)
