"""Authorization server metadata (RFC 8414) and OpenID Provider metadata (OIDC Discovery 1.0 §3).

Advertises exactly what is implemented.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..fapi import FAPI2_AUTH_METHODS, fapi2_algs
from ..policy import ServerPolicy

__all__ = ["server_metadata"]

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
ASSERTION_ALGS = ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"]


def server_metadata(policy: ServerPolicy, grant_types: Iterable[str], *, mtls: bool = False,
                    tls_client_auth: bool = False) -> dict[str, Any]:
    """``mtls``: client certificates reach the server (its TLS listener asks for them, or a trusted proxy
    forwards them), so ``self_signed_tls_client_auth`` and certificate-bound tokens work (RFC 8705 §2.2, §3.3);
    ``tls_client_auth`` besides: trust anchors are configured (§2.1)."""
    grants = sorted(grant_types)
    methods = [*AUTH_METHODS, *(("tls_client_auth",) if mtls and tls_client_auth else ()),
               *(("self_signed_tls_client_auth",) if mtls else ())]
    return {
        "issuer": policy.issuer,
        "token_endpoint": policy.token_endpoint,
        "jwks_uri": policy.jwks_uri,
        "introspection_endpoint": policy.introspection_endpoint,
        "revocation_endpoint": policy.revocation_endpoint,
        "grant_types_supported": grants,
        **oidc_metadata(policy),
        "token_endpoint_auth_methods_supported": [*methods, "none"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        **({"device_authorization_endpoint": policy.issuer + "/device_authorization"}
           if "urn:ietf:params:oauth:grant-type:device_code" in grants else {}),
        **({"tls_client_certificate_bound_access_tokens": True} if mtls else {}),
        # RFC 9449 §5.1
        "dpop_signing_alg_values_supported": list(policy.dpop_algs),
        **_fapi2_overrides(policy, methods),
        # RFC 8414 §2: only when someone may register (RFC 7591 §3)
        **({"registration_endpoint": policy.registration_endpoint} if policy.dynamic_registration else {}),
        # draft-ietf-oauth-client-id-metadata-document §4 (public clients only: none in FAPI 2.0 mode)
        **({"client_id_metadata_document_supported": True}
           if policy.client_metadata is not None and not policy.fapi2 else {}),
    }


def _fapi2_overrides(policy: ServerPolicy, offered: list[str]) -> dict[str, Any]:
    """FAPI 2.0 mode: advertise only what that profile allows (no public clients, no client secrets, JWTs signed
    with PS256, ES256 or EdDSA)."""
    if not policy.fapi2:
        return {}
    from ..request_object import REQUEST_OBJECT_ALGS

    methods = [m for m in offered if m in FAPI2_AUTH_METHODS]
    algs = list(fapi2_algs(tuple(ASSERTION_ALGS)))  # FAPI 2.0 Security Profile §5.4.1
    return {"token_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "introspection_endpoint_auth_signing_alg_values_supported": algs,
            "revocation_endpoint_auth_signing_alg_values_supported": algs,
            "request_object_signing_alg_values_supported": list(fapi2_algs(REQUEST_OBJECT_ALGS))}


def oidc_metadata(policy: ServerPolicy) -> dict[str, Any]:
    """Authorization Code + PKCE and OpenID Connect (OIDC Discovery §3; RFC 9207 §3; RFC 7636 §6.2)."""
    from ..request_object import REQUEST_OBJECT_ALGS
    from ..users import ACR_MFA, ACR_PWD
    from .authorize import PROMPT_VALUES, RESPONSE_MODES
    from .userinfo import CLAIMS_SUPPORTED, SCOPES_SUPPORTED

    return {
        "authorization_endpoint": policy.issuer + "/authorize",
        "userinfo_endpoint": policy.issuer + "/userinfo",
        "end_session_endpoint": policy.issuer + "/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": list(RESPONSE_MODES),
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "subject_types_supported": ["public"],
        # exactly the algorithms the key ring keeps an active key for; RS256 always (OIDC Discovery §3)
        "id_token_signing_alg_values_supported": list(dict.fromkeys(("RS256", *policy.signing_algs))),
        "acr_values_supported": [ACR_PWD, ACR_MFA],
        "prompt_values_supported": list(PROMPT_VALUES),
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": False,
        # RFC 9101: signed request objects by value; by reference only as a pushed request (RFC 9126)
        "request_parameter_supported": True,
        "request_object_signing_alg_values_supported": list(REQUEST_OBJECT_ALGS),
        "request_uri_parameter_supported": False,
        "pushed_authorization_request_endpoint": policy.pushed_authorization_request_endpoint,
        "require_pushed_authorization_requests": policy.par_required,
    }
