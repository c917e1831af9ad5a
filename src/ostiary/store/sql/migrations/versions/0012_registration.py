"""Dynamic client registration (RFC 7591/7592): clients registered by themselves (``dynamic``), disabled
clients, when a client was last used, its logo and home page, the hash of its registration access token; and
the initial access tokens an administrator hands out.

Revision ID: 0012_registration
Revises: 0011_mtls
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_registration"
down_revision = "0010_par"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("dynamic", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("last_used_at", sa.Double, nullable=True))
        batch.add_column(sa.Column("logo_uri", sa.String(2000), nullable=True))
        batch.add_column(sa.Column("client_uri", sa.String(2000), nullable=True))
        batch.add_column(sa.Column("registration_token_hash", sa.String(128), nullable=True))
    op.create_index("ix_clients_dynamic", "clients", ["dynamic"])
    op.create_table(
        "initial_access_tokens",
        sa.Column("token_hash", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False, index=True),
        sa.Column("uses_left", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("initial_access_tokens")
    op.drop_index("ix_clients_dynamic", "clients")
    with op.batch_alter_table("clients") as batch:
        for name in ("registration_token_hash", "client_uri", "logo_uri", "last_used_at", "disabled", "dynamic"):
            batch.drop_column(name)
