"""Inventory of the wider estate: service principals' own credentials, SAML signing
certificates and owners.

Revision ID: 20261128_0005_estate
Revises: 20261128_0004
Create Date: 2026-11-28

Written by hand and free of imports from the application, like the earlier revisions.
Rows recorded before it are app registration credentials, which the defaults say.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261128_0005_estate"
down_revision: str | None = "20261128_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("foreign_app", "owners", "signing_active", "usage", "sp_object_id", "source")


def upgrade() -> None:
    op.add_column("credentials", sa.Column("source", sa.String(16), nullable=False,
                                           server_default="application"))
    op.add_column("credentials", sa.Column("sp_object_id", sa.String(64), nullable=True))
    op.add_column("credentials", sa.Column("usage", sa.String(16), nullable=True))
    op.add_column("credentials", sa.Column("signing_active", sa.Boolean(), nullable=True))
    op.add_column("credentials", sa.Column("owners", sa.Text(), nullable=True))
    op.add_column("credentials", sa.Column("foreign_app", sa.Boolean(), nullable=False,
                                           server_default=sa.false()))


def downgrade() -> None:
    # Older code knows app registration credentials only; the others would look like
    # credentials of app registrations it could try to rotate.
    op.execute("DELETE FROM credentials WHERE source <> 'application'")
    with op.batch_alter_table("credentials") as batch:
        for name in _COLUMNS:
            batch.drop_column(name)
