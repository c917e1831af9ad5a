"""Authorization server metadata (RFC 8414) and OpenID Provider metadata (OIDC Discovery 1.0 §3).

Advertises exactly what is implemented.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..policy import ServerPolicy

__all__ = ["server_metadata"]

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
ASSERTION_ALGS = ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"]


def server_metadata(policy: ServerPolicy, grant_types: Iterable[str]) -> dict[str, Any]:
    grants = sorted(grant_types)
    return {
        "issuer": policy.issuer,
        "token_endpoint": policy.token_endpoint,
        "jwks_uri": policy.jwks_uri,
        "introspection_endpoint": policy.introspection_endpoint,
        "revocation_endpoint": policy.revocation_endpoint,
        "grant_types_supported": grants,
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
    }
