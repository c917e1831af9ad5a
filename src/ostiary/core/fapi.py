"""FAPI 2.0 Security Profile mode (``profile = "fapi2"``): the client rules every endpoint that authenticates
clients, and the authorization endpoint, apply. The other rules of the profile live where they act: PAR required
(``endpoints/authorize.py``, ``endpoints/par.py``), sender-constrained tokens (``endpoints/token.py``)."""

from __future__ import annotations

from .clients import Client

__all__ = ["FAPI2_AUTH_METHODS", "FAPI2_JWS_ALGS", "fapi2_algs", "fapi2_client_refusal"]

#: FAPI 2.0 Security Profile §5.3.2.1: the only client authentication methods allowed (mTLS, RFC 8705, by name)
FAPI2_AUTH_METHODS = ("private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth")
#: FAPI 2.0 Security Profile §5.4.1: the only algorithms of the JWTs processed (never RSASSA-PKCS1-v1_5, RS256)
FAPI2_JWS_ALGS = ("PS256", "ES256", "EdDSA")


def fapi2_algs(algs: tuple[str, ...]) -> tuple[str, ...]:
    """``algs`` without those FAPI 2.0 mode does not accept (order kept)."""
    return tuple(a for a in algs if a in FAPI2_JWS_ALGS)


def fapi2_client_refusal(client: Client, method: str | None = None) -> str | None:
    """FAPI 2.0 Security Profile §5.3.2.1: confidential clients only, authenticated by private_key_jwt or mTLS.
    The reason a client (or the method it just used) is refused, or ``None``."""
    if client.is_public or client.token_endpoint_auth_method == "none":
        return ("FAPI 2.0 mode: public clients are not allowed (FAPI 2.0 Security Profile 5.3.2.1): register a "
                "confidential client with private_key_jwt or mTLS")
    used = method or client.token_endpoint_auth_method
    if used not in FAPI2_AUTH_METHODS:
        return (f"FAPI 2.0 mode: client authentication {used} is not allowed (FAPI 2.0 Security Profile 5.3.2.1): "
                "use private_key_jwt, tls_client_auth or self_signed_tls_client_auth")
    return None
