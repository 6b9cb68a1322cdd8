"""Incremental scans: how each scan read the tenant, and the delta links to go on from.

Revision ID: 20261128_0008_delta_scans
Revises: 20261128_0007_federated
Create Date: 2026-11-28

Written by hand and free of imports from the application, like the earlier revisions.
Scans recorded before it were all full listings; their request counts are not known.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261128_0008_delta_scans"
down_revision: str | None = "20261128_0007_federated"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("scan_runs", sa.Column("mode", sa.String(8), nullable=False,
                                         server_default="full"))
    op.add_column("scan_runs", sa.Column("graph_requests", sa.Integer(), nullable=True))
    op.add_column("scan_runs", sa.Column("apps_changed", sa.Integer(), nullable=True))
    op.create_table(
        "delta_links",
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("full_scan_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scan_run_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("resource", name=op.f("pk_delta_links")),
    )


def downgrade() -> None:
    op.drop_table("delta_links")
    with op.batch_alter_table("scan_runs") as batch:
        for name in ("apps_changed", "graph_requests", "mode"):
            batch.drop_column(name)
