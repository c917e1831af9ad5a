"""DPoP (RFC 9449): whether a client's token requests must carry a proof (``dpop_bound_access_tokens``, §5.2)
and its proofs a server nonce (§8); the key an authorization code is bound to (``dpop_jkt``, §10). Token
families and refresh tokens have had ``dpop_jkt`` since 0003.

Revision ID: 0013_dpop
Revises: 0012_registration
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_dpop"
down_revision = "0012_registration"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("dpop_bound_access_tokens", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("dpop_require_nonce", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("authorization_codes") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorization_codes") as batch:
        batch.drop_column("dpop_jkt")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("dpop_require_nonce")
        batch.drop_column("dpop_bound_access_tokens")
