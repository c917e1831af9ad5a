"""Clients flagged as administrators: only their client-credentials tokens are accepted by the admin API.

Existing clients that already administered the server the documented way (client_credentials only, with the
``admin`` scope) are flagged; any other client with the ``admin`` scope (a code-flow client, say) is not, so
tokens its users obtain stop working at the admin API.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()))
    clients = sa.table("clients", sa.column("client_id", sa.String), sa.column("grant_types", sa.JSON),
                       sa.column("scopes", sa.JSON), sa.column("admin", sa.Boolean))
    conn = op.get_bind()
    rows = conn.execute(sa.select(clients.c.client_id, clients.c.grant_types, clients.c.scopes)).all()
    for client_id, grant_types, scopes in rows:
        if list(grant_types or []) == ["client_credentials"] and "admin" in (scopes or []):
            conn.execute(clients.update().where(clients.c.client_id == client_id).values(admin=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("admin")
