"""Alerts: what was sent to which channel, so each alert goes out once.

Revision ID: 20261126_0002
Revises: 20261126_0001
Create Date: 2026-11-26

Written by hand and free of imports from the application, like the first revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261126_0002"
down_revision: str | None = "20261126_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _in(column: str, values: Sequence[str]) -> str:
    return "{} IN ({})".format(column, ", ".join(f"'{v}'" for v in values))


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("alert_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _ts(), nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claim_expires_at", _ts(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("sent_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint(
            "channel", "alert_key", name=op.f("uq_alert_deliveries_channel_alert_key")
        ),
        sa.CheckConstraint(
            _in("kind", ("expiry", "rotation", "scan", "finding", "digest")),
            name=op.f("ck_alert_deliveries_kind"),
        ),
        sa.CheckConstraint(
            _in("status", ("pending", "sent", "failed")), name=op.f("ck_alert_deliveries_status")
        ),
        sa.CheckConstraint(
            _in("severity", ("info", "warning", "critical")),
            name=op.f("ck_alert_deliveries_severity"),
        ),
    )
    op.create_index(
        op.f("ix_alert_deliveries_channel_status_next_attempt_at"),
        "alert_deliveries",
        ["channel", "status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
