"""An index on family_tokens.expires_at, for the periodic purge of expired access-token ids.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_family_tokens_expires_at", "family_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_family_tokens_expires_at", table_name="family_tokens")
