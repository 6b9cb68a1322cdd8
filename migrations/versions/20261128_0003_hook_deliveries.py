"""Consumer hooks: which rotation event went (or is to go) to which hook.

Revision ID: 20261128_0003
Revises: 20261126_0002
Create Date: 2026-11-28

Written by hand and free of imports from the application, like the earlier revisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261128_0003"
down_revision: str | None = "20261126_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rotation_id", sa.String(64), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_time", _ts(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _ts(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("delivered_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_deliveries")),
        sa.UniqueConstraint(
            "rotation_id", "hook", "event_type",
            name=op.f("uq_hook_deliveries_rotation_id_hook_event_type"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered')", name=op.f("ck_hook_deliveries_status")
        ),
    )
    op.create_index(
        op.f("ix_hook_deliveries_status_next_attempt_at"),
        "hook_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_index(op.f("ix_hook_deliveries_event_id"), "hook_deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_table("hook_deliveries")
