"""OAuth errors, one class per RFC error code, rendered in one place (RFC 6749 §5.2).

Each error has a public ``description`` (sent to the client) and a private ``debug`` text (logged,
never sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AccessDenied",
    "AuthorizationPending",
    "ExpiredToken",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidGrant",
    "InvalidRedirectUri",
    "InvalidRequest",
    "InvalidRequestObject",
    "InvalidRequestUri",
    "InvalidScope",
    "InvalidTarget",
    "InvalidToken",
    "OAuthError",
    "ServerError",
    "SlowDown",
    "StoreUnavailable",
    "TemporarilyUnavailable",
    "TooManyRequests",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "UnsupportedTokenType",
    "safe_description",
]


class OAuthError(Exception):
    """Base of every protocol error. ``error`` is the RFC's code, ``status`` the HTTP status."""

    error: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400

    def __init__(self, description: str = "", *, debug: str = "", headers: Mapping[str, str] | None = None):
        super().__init__(description or self.error)
        self.description = description
        self.debug = debug
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error}
        if self.description:
            out["error_description"] = safe_description(self.description)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


def safe_description(text: str) -> str:
    """RFC 6749 §5.2: ``error_description`` is limited to %x20-21 / %x23-5B / %x5D-7E; anything else
    (which can only come from echoed input) is replaced."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text[:500])


class InvalidRequest(OAuthError):
    """RFC 6749 §5.2 ``invalid_request``."""

    error = "invalid_request"


class InvalidRequestObject(OAuthError):
    """RFC 9101 §6.3, OIDC Core §3.1.2.6 ``invalid_request_object``: the request object is invalid."""

    error = "invalid_request_object"


class InvalidRequestUri(OAuthError):
    """RFC 9101 §6.3, RFC 9126 §4 ``invalid_request_uri``: unknown, expired, used, or another client's."""

    error = "invalid_request_uri"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2 ``invalid_client``: 401, with ``WWW-Authenticate`` when HTTP auth was used."""

    error = "invalid_client"
    status = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """RFC 8707 §2 ``invalid_target``."""

    error = "invalid_target"


class UnsupportedTokenType(OAuthError):
    """RFC 7009 §2.2.1."""

    error = "unsupported_token_type"


class InvalidRedirectUri(OAuthError):
    """RFC 7591 §3.2.2: a redirect URI the registration refuses."""

    error = "invalid_redirect_uri"


class InvalidClientMetadata(OAuthError):
    """RFC 7591 §3.2.2: a metadata field that is invalid or not allowed here."""

    error = "invalid_client_metadata"


class InvalidToken(OAuthError):
    """RFC 6750 §3.1."""

    error = "invalid_token"
    status = 401


class AccessDenied(OAuthError):
    error = "access_denied"


class AuthorizationPending(OAuthError):
    """RFC 8628 §3.5."""

    error = "authorization_pending"


class SlowDown(OAuthError):
    """RFC 8628 §3.5."""

    error = "slow_down"


class ExpiredToken(OAuthError):
    """RFC 8628 §3.5."""

    error = "expired_token"


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status = 503


class ServerError(OAuthError):
    error = "server_error"
    status = 500


class TooManyRequests(OAuthError):
    """Rate limited: 429 with ``Retry-After`` (RFC 6585 §4)."""

    error = "slow_down"
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many requests; retry later", headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


class StoreUnavailable(Exception):
    """The storage backend cannot be reached (connection refused or cut, pool exhausted, timeouts).

    Not an ``OAuthError``: protocol code does not catch it; the HTTP layer answers ``503`` with ``Retry-After``
    and RFC 6749 §4.1.2.1's ``temporarily_unavailable``. The message names the cause for the operator's log
    (an error class or SQLSTATE, never query parameters)."""

    def __init__(self, cause: str, retry_after: int = 5) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after
