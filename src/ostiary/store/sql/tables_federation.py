"""The ``trust_policies`` table (migration 0002): workload identity federation."""

from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

__all__ = ["trust_policies"]

trust_policies = sa.Table(
    "trust_policies", metadata,
    sa.Column("policy_id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("issuer", sa.String(2000), nullable=False, index=True),
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
