"""Tables for authorization codes and refresh-token families: the family, the ids of the access tokens it
produced and its refresh tokens (migration 0003).

Codes and refresh tokens appear only as keyed hashes.
"""

from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

__all__ = ["authorization_codes", "family_tokens", "refresh_tokens", "token_families"]

authorization_codes = sa.Table(
    "authorization_codes", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(256), nullable=False),
    sa.Column("redirect_uri", sa.String(2000), nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("auth_time", sa.Double, nullable=False),
    sa.Column("amr", sa.JSON, nullable=False),
    sa.Column("family_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("nonce", sa.String(512), nullable=True),
    sa.Column("acr", sa.String(64), nullable=True),
    sa.Column("audience", sa.JSON, nullable=False),
    sa.Column("used_at", sa.Double, nullable=True),
    sa.Column("dpop_jkt", sa.String(64), nullable=True),  # RFC 9449 §10: the code is bound to this key
)

token_families = sa.Table(
    "token_families", metadata,
    sa.Column("family_id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(256), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("audience", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("auth_time", sa.Double, nullable=False),
    sa.Column("amr", sa.JSON, nullable=False),
    sa.Column("acr", sa.String(64), nullable=True),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("revoked_at", sa.Double, nullable=True),
    sa.Column("dpop_jkt", sa.String(64), nullable=True),
    sa.Column("x5t_s256", sa.String(64), nullable=True),
)

family_tokens = sa.Table(
    "family_tokens", metadata,
    sa.Column("family_id", sa.String(64), primary_key=True),
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),  # migration 0005: the purge
)

refresh_tokens = sa.Table(
    "refresh_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(64), nullable=False, index=True),
    sa.Column("client_id", sa.String(256), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("parent_hash", sa.String(64), nullable=True),
    sa.Column("used_at", sa.Double, nullable=True),
    sa.Column("request_fp", sa.String(64), nullable=True),
    sa.Column("successor_sealed", sa.LargeBinary, nullable=True),
    sa.Column("dpop_jkt", sa.String(64), nullable=True),
)
