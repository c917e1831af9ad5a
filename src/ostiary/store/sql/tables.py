"""Tables. Secrets appear only as keyed hashes; private keys only encrypted."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

clients = sa.Table(
    "clients", metadata,
    sa.Column("client_id", sa.String(256), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("client_type", sa.String(20), nullable=False),
    sa.Column("token_endpoint_auth_method", sa.String(40), nullable=False),
    sa.Column("grant_types", sa.JSON, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("audiences", sa.JSON, nullable=False),
    sa.Column("resource_audiences", sa.JSON, nullable=False),
    sa.Column("redirect_uris", sa.JSON, nullable=False),
    sa.Column("post_logout_redirect_uris", sa.JSON, nullable=False),
    sa.Column("allowed_origins", sa.JSON, nullable=False),
    sa.Column("secrets", sa.JSON, nullable=False),
    sa.Column("jwks", sa.JSON, nullable=True),
    sa.Column("jwks_uri", sa.String(2000), nullable=True),
    sa.Column("first_party", sa.Boolean, nullable=False, default=False),
    sa.Column("admin", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("may_exchange_for", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("id_token_signed_response_alg", sa.String(16), nullable=False, server_default="RS256"),
    # RFC 8705: the registered certificate name ({"subject_dn": …} or one SAN) and the token binding
    sa.Column("tls_client_auth", sa.JSON, nullable=True),
    sa.Column("tls_client_certificate_bound_access_tokens", sa.Boolean, nullable=False, default=False,
              server_default=sa.false()),
    sa.Column("require_pushed_authorization_requests", sa.Boolean, nullable=False, server_default=sa.false()),
    # RFC 9449: every token request carries a DPoP proof; proofs carry a server nonce
    sa.Column("dpop_bound_access_tokens", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("dpop_require_nonce", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("dynamic", sa.Boolean, nullable=False, server_default=sa.false(), index=True),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_used_at", sa.Double, nullable=True),
    sa.Column("logo_uri", sa.String(2000), nullable=True),
    sa.Column("client_uri", sa.String(2000), nullable=True),
    sa.Column("registration_token_hash", sa.String(128), nullable=True),
)

#: RFC 7591 §3 initial access tokens (``ostiary client registration-token create``), by keyed hash
initial_access_tokens = sa.Table(
    "initial_access_tokens", metadata,
    sa.Column("token_hash", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("uses_left", sa.Integer, nullable=False),
)

signing_keys = sa.Table(
    "signing_keys", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("public_jwk", sa.JSON, nullable=False),
    sa.Column("encrypted_private_key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("activates_at", sa.Double, nullable=False),
    sa.Column("retires_at", sa.Double, nullable=True),
)

revoked_tokens = sa.Table(
    "revoked_tokens", metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(256), nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
)

replay_cache = sa.Table(
    "replay_cache", metadata,
    sa.Column("namespace", sa.String(300), primary_key=True),
    sa.Column("value", sa.String(300), primary_key=True),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
)

audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("at", sa.Double, nullable=False, index=True),
    sa.Column("client_id", sa.String(256), nullable=True),
    sa.Column("subject", sa.String(256), nullable=True),
    sa.Column("grant_type", sa.String(100), nullable=True),
    sa.Column("jti", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
)
