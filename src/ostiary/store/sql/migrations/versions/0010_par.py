"""Pushed authorization requests (RFC 9126) and clients.require_pushed_authorization_requests.

Revision ID: 0010_par
Revises: 0011_mtls (the brief said 0008; main already has 0011_mtls on 0008, so this one follows it)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_par"
down_revision = "0011_mtls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pushed_requests",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(256), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("claimed_at", sa.Double, nullable=True),
        sa.Column("browser_hash", sa.String(64), nullable=True),
    )
    op.create_index("ix_pushed_requests_expires_at", "pushed_requests", ["expires_at"])
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("require_pushed_authorization_requests", sa.Boolean, nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("require_pushed_authorization_requests")
    op.drop_index("ix_pushed_requests_expires_at", table_name="pushed_requests")
    op.drop_table("pushed_requests")
