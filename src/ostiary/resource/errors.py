"""Typed errors of the resource-server toolkit, each mapped to its RFC 6750 §3.1 response.

Every error has a public ``description`` (safe to send to the caller) and a private ``reason``
(for logs only, never rendered). Neither ever contains the token.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "InsufficientScope",
    "InvalidDpopProof",
    "InvalidRequest",
    "InvalidToken",
    "IssuerUnavailable",
    "MissingToken",
    "ResourceError",
    "UseDpopNonce",
    "WrongTokenKind",
]


class ResourceError(Exception):
    """Base class. ``status_code`` and ``error`` (the RFC 6750 error code, if any) drive the HTTP response."""

    status_code: int = 401
    error: str | None = None
    description: str = "The request is not authorized."

    def __init__(self, reason: str = "", *, description: str | None = None) -> None:
        self.reason = reason
        if description is not None:
            self.description = description
        super().__init__(reason or self.description)


class MissingToken(ResourceError):
    """No bearer token in the Authorization header: RFC 6750 §3.1 says the challenge carries no error code."""

    description = "An access token is required in the Authorization header."


class InvalidRequest(ResourceError):
    """RFC 6750 §3.1 ``invalid_request`` (400): e.g. a token sent in the query string (refused, §2.3)."""

    status_code = 400
    error = "invalid_request"
    description = "Send the access token in the Authorization header only."


class InvalidToken(ResourceError):
    """RFC 6750 §3.1 ``invalid_token`` (401): expired, revoked, malformed or not for this API.

    The public description is deliberately the same for every cause; ``reason`` says which for logs.
    """

    error = "invalid_token"
    description = "The access token is invalid or expired."


class InsufficientScope(ResourceError):
    """RFC 6750 §3.1 ``insufficient_scope`` (403); ``required`` is sent back in the challenge's ``scope``."""

    status_code = 403
    error = "insufficient_scope"

    def __init__(self, required: Iterable[str], reason: str = "") -> None:
        self.required = tuple(required)
        super().__init__(reason or "missing scope",
                         description=f"This request needs the scope(s): {' '.join(self.required)}.")


class WrongTokenKind(ResourceError):
    """403: a service token where a user token is required, or the reverse (no RFC code; ours)."""

    status_code = 403
    error = "wrong_token_kind"

    def __init__(self, wanted: str) -> None:
        other = "service" if wanted == "user" else "user"
        self.wanted = wanted
        super().__init__(f"{other} token presented", description=(
            f"This endpoint requires a {wanted} token; a {other} token was presented."))


class IssuerUnavailable(ResourceError):
    """503: keys or introspection could not be obtained from the issuer. Not the caller's fault."""

    status_code = 503
    error = "temporarily_unavailable"
    description = "The access token cannot be checked right now; try again later."


class InvalidDpopProof(ResourceError):
    """RFC 9449 §7.1 ``invalid_dpop_proof`` (401): the ``DPoP`` header is missing, repeated, malformed, signed
    by a refused key or algorithm, for another request (``htm``/``htu``/``ath``), too old or replayed."""

    error = "invalid_dpop_proof"
    description = "The DPoP proof is invalid."


class UseDpopNonce(ResourceError):
    """RFC 9449 §9 ``use_dpop_nonce`` (401): this API wants a proof carrying the nonce sent in ``DPoP-Nonce``."""

    error = "use_dpop_nonce"
    description = "Resource server requires nonce in DPoP proof."

    def __init__(self, nonce: str, reason: str = "") -> None:
        self.nonce = nonce
        super().__init__(reason or "DPoP nonce missing or stale")
