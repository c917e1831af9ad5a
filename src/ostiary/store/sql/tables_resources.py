"""The ``resources`` table (migration 0014_resources): the RFC 8707 resource registry."""

from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

__all__ = ["resources"]

resources = sa.Table(
    "resources", metadata,
    sa.Column("uri", sa.String(512), primary_key=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)
