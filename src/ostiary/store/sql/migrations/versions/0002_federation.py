"""Workload identity federation: trust policies for external OIDC issuers (RFC 8693 token exchange).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trust_policies",
        sa.Column("policy_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("issuer", sa.String(2000), nullable=False),
        sa.Column("audience", sa.String(2000), nullable=False),
        sa.Column("conditions", sa.JSON, nullable=False),
        sa.Column("subject_template", sa.String(500), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("audiences", sa.JSON, nullable=False),
        sa.Column("max_lifetime", sa.Integer, nullable=False),
        sa.Column("max_token_age", sa.Integer, nullable=True),
        sa.Column("one_time_jti", sa.Boolean, nullable=False),
        sa.Column("allowed_clients", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_trust_policies_issuer", "trust_policies", ["issuer"])


def downgrade() -> None:
    op.drop_table("trust_policies")
