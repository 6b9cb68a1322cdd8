"""Initial schema: scan runs, credential inventory, rotations, audit events.

Revision ID: 20261126_0001
Revises:
Create Date: 2026-11-26

Written by hand and kept free of imports from the application, so that later
changes to the models or the state table cannot change what this revision does.
Names are wrapped in ``op.f`` because they are already final: without it the
models' naming convention would be applied to them a second time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261126_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rotation states as of this revision; the active ones (every state with a
# way out) carry the one-active-rotation-per-app index.
ROTATION_STATES = (
    "pending",
    "creating",
    "staged",
    "verified",
    "promoted",
    "retiring",
    "completed",
    "rolling_back",
    "failed",
)
ACTIVE_STATES = (
    "creating",
    "pending",
    "promoted",
    "retiring",
    "rolling_back",
    "staged",
    "verified",
)
ACTIVE_PREDICATE = "state IN ({})".format(", ".join(f"'{s}'" for s in ACTIVE_STATES))


def _in(column: str, values: Sequence[str]) -> str:
    return "{} IN ({})".format(column, ", ".join(f"'{v}'" for v in values))


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scan_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("apps_seen", sa.Integer(), nullable=False),
        sa.Column("credentials_seen", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_runs")),
        sa.CheckConstraint(
            _in("status", ("running", "succeeded", "partial", "failed")),
            name=op.f("ck_scan_runs_status"),
        ),
    )
    op.create_index(op.f("ix_scan_runs_started_at"), "scan_runs", ["started_at"])

    op.create_table(
        "credentials",
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("app_display_name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("start_at", _ts(), nullable=True),
        sa.Column("end_at", _ts(), nullable=True),
        sa.Column("hint", sa.String(64), nullable=True),
        sa.Column("thumbprint", sa.String(128), nullable=True),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("scan_run_id", sa.String(32), nullable=False),
        sa.Column("seen_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "key_id", name=op.f("pk_credentials")),
        sa.CheckConstraint(
            _in("kind", ("secret", "certificate")), name=op.f("ck_credentials_kind")
        ),
        sa.ForeignKeyConstraint(
            ["scan_run_id"], ["scan_runs.id"], name=op.f("fk_credentials_scan_run_id_scan_runs")
        ),
    )
    op.create_index(op.f("ix_credentials_end_at"), "credentials", ["end_at"])
    op.create_index(op.f("ix_credentials_scan_run_id"), "credentials", ["scan_run_id"])

    op.create_table(
        "rotations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("secret_name", sa.String(127), nullable=False),
        sa.Column("vault_url", sa.Text(), nullable=False),
        sa.Column("old_key_id", sa.String(64), nullable=True),
        sa.Column("new_key_id", sa.String(64), nullable=True),
        sa.Column("new_key_end_at", _ts(), nullable=True),
        sa.Column("staging_version", sa.String(64), nullable=True),
        sa.Column("consumer_version", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", _ts(), nullable=True),
        sa.Column("retire_after", _ts(), nullable=True),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", _ts(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotations")),
        sa.CheckConstraint(_in("state", ROTATION_STATES), name=op.f("ck_rotations_state")),
        sa.CheckConstraint(_in("kind", ("secret", "certificate")), name=op.f("ck_rotations_kind")),
        sa.CheckConstraint(_in("reason", ("due", "manual")), name=op.f("ck_rotations_reason")),
    )
    # Invariant: at most one active rotation per app, whatever number of replicas.
    op.create_index(
        op.f("uq_rotations_active_app_id"),
        "rotations",
        ["app_id"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_PREDICATE),
        postgresql_where=sa.text(ACTIVE_PREDICATE),
    )
    op.create_index(
        op.f("ix_rotations_state_next_attempt_at"), "rotations", ["state", "next_attempt_at"]
    )
    op.create_index(op.f("ix_rotations_app_id_created_at"), "rotations", ["app_id", "created_at"])

    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("rotation_id", sa.String(64), nullable=True),
        sa.Column("app_id", sa.String(64), nullable=True),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.CheckConstraint(
            _in("outcome", ("ok", "error", "info")), name=op.f("ck_audit_events_outcome")
        ),
    )
    op.create_index(op.f("ix_audit_events_rotation_id"), "audit_events", ["rotation_id"])
    op.create_index(op.f("ix_audit_events_app_id"), "audit_events", ["app_id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("rotations")
    op.drop_table("credentials")
    op.drop_table("scan_runs")
