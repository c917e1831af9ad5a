"""Mutual-TLS (RFC 8705): a client's registered certificate name (``tls_client_auth``: subject DN or one SAN)
and whether its access tokens are certificate-bound; a token family's certificate thumbprint (a public client's
refresh tokens are bound to its certificate, §4).

Revision ID: 0011_mtls
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_mtls"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("tls_client_auth", sa.JSON, nullable=True))
        batch.add_column(sa.Column("tls_client_certificate_bound_access_tokens", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("token_families") as batch:
        batch.add_column(sa.Column("x5t_s256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("token_families") as batch:
        batch.drop_column("x5t_s256")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("tls_client_certificate_bound_access_tokens")
        batch.drop_column("tls_client_auth")
