"""clients.may_exchange_for: the audiences a client may exchange a user's access token for (RFC 8693
token exchange on the user's behalf).

Revision ID: 0008
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("may_exchange_for", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("may_exchange_for")
