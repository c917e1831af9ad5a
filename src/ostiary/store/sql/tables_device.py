"""The ``device_authorizations`` table (migration 0004): RFC 8628 device flows, by keyed hash of the device code."""

from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

__all__ = ["device_authorizations"]

device_authorizations = sa.Table(
    "device_authorizations", metadata,
    sa.Column("device_code_hash", sa.String(64), primary_key=True),
    sa.Column("user_code", sa.String(16), nullable=False, unique=True),
    sa.Column("locator", sa.String(8), nullable=False, index=True),
    sa.Column("client_id", sa.String(256), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("audience", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("interval", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=True),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("auth_time", sa.Double, nullable=True),
    sa.Column("amr", sa.JSON, nullable=False),
    sa.Column("decided_at", sa.Double, nullable=True),
    sa.Column("failed_attempts", sa.Integer, nullable=False),
)
