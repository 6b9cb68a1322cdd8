"""Replicas that share the work: one scan turn at a time, one Graph write budget.

Revision ID: 20261128_0006_coordination
Revises: 20261128_0005_estate
Create Date: 2026-11-28

Written by hand and free of imports from the application, like the earlier revisions.
Each table holds one named row, made on first use (an insert that lets a concurrent
one win): ``scan_turns`` says which replica scans now (a lease) and when the last
turn began; ``write_budgets`` is a shared token bucket kept as the time its next
free slot starts (GCRA's "theoretical arrival time").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261128_0006_coordination"
down_revision: str | None = "20261128_0005_estate"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scan_turns",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("expires_at", _ts(), nullable=True),
        sa.Column("started_at", _ts(), nullable=True),
        sa.Column("scan_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scan_turns")),
    )
    op.create_table(
        "write_budgets",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("next_slot_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_write_budgets")),
    )


def downgrade() -> None:
    op.drop_table("write_budgets")
    op.drop_table("scan_turns")
