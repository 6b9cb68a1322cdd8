"""Whether an app registration holds a federated identity credential.

Revision ID: 20261128_0007_federated
Revises: 20261128_0006_coordination
Create Date: 2026-11-28

Written by hand and free of imports from the application, like the earlier revisions.
Rows recorded before it are not known either way (NULL) until the next scan.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261128_0007_federated"
down_revision: str | None = "20261128_0006_coordination"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("credentials", sa.Column("federated", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("federated")
