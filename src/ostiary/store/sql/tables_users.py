"""Tables for people: users, their recovery codes, login sessions and consents (migration 0003).

Session cookies and recovery codes appear only as keyed hashes. Codes and token families: ``tables_tokens.py``.
"""

from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

__all__ = ["consents", "login_sessions", "recovery_codes", "users"]

users = sa.Table(
    "users", metadata,
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(200), nullable=False, unique=True),
    sa.Column("email", sa.String(320), nullable=True, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email_verified", sa.Boolean, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("password_hash", sa.String(300), nullable=False),
    sa.Column("totp_secret", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

recovery_codes = sa.Table(
    "recovery_codes", metadata,
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("used_at", sa.Double, nullable=True),
)

login_sessions = sa.Table(
    "login_sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("last_seen", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("auth_time", sa.Double, nullable=False),
    sa.Column("amr", sa.JSON, nullable=False),
    sa.Column("mfa_pending", sa.Boolean, nullable=False),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(300), nullable=True),
)

consents = sa.Table(
    "consents", metadata,
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("client_id", sa.String(256), primary_key=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("granted_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)
