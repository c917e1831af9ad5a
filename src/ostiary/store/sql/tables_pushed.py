"""The ``pushed_requests`` table (migration 0010_par): RFC 9126 pushed authorization requests, by keyed hash of
the random part of their ``request_uri``."""

from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

__all__ = ["pushed_requests"]

pushed_requests = sa.Table(
    "pushed_requests", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(256), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("claimed_at", sa.Double, nullable=True),
    sa.Column("browser_hash", sa.String(64), nullable=True),
)
