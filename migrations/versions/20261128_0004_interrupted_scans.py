"""Scans: an ``interrupted`` status for a scan the service stopped part-way.

Revision ID: 20261128_0004
Revises: 20261128_0003
Create Date: 2026-11-28

Written by hand and free of imports from the application, like the earlier revisions.
SQLite cannot alter a CHECK constraint, so the table is rebuilt there (batch mode).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "20261128_0004"
down_revision: str | None = "20261128_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("running", "succeeded", "partial", "failed")
_AFTER = (*_BEFORE, "interrupted")


def _in(values: tuple[str, ...]) -> str:
    return "status IN ({})".format(", ".join(f"'{v}'" for v in values))


def _replace_check(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("scan_runs", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_scan_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_scan_runs_status"), _in(values))


def upgrade() -> None:
    _replace_check(_AFTER)


def downgrade() -> None:
    # Interrupted scans read as failed ones to the older code: nothing pruned, not trusted.
    op.execute("UPDATE scan_runs SET status = 'failed' WHERE status = 'interrupted'")
    _replace_check(_BEFORE)
