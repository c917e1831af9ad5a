"""The RFC 8707 resource registry: the APIs an authorization may name with ``resource`` (``ostiary resource
add``), and the scopes a token for each may carry.

Revision ID: 0014_resources
Revises: 0013_dpop
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_resources"
down_revision = "0013_dpop"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("uri", sa.String(512), primary_key=True),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("resources")
