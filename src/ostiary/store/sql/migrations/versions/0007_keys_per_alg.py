"""Clients choose the algorithm of their ID tokens (OIDC Registration §2 ``id_token_signed_response_alg``).

Existing clients get RS256, the registration default: the key ring now keeps one active key per algorithm
(signing_keys already records each key's algorithm, so that table is unchanged).

Revision ID: 0007
Revises: 0008 (written after 0005; chained after main's 0008 at rebase so there is one head)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("id_token_signed_response_alg", sa.String(16), nullable=False,
                                   server_default="RS256"))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("id_token_signed_response_alg")
