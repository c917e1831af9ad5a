"""Errors raised by the client toolkit. None of them ever carries a token or a secret."""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "ClientError",
    "DiscoveryError",
    "Expired",
    "LoginCancelled",
    "LoginRequired",
    "NoKeyringError",
    "OAuthError",
    "TokenEndpointUnavailable",
    "TokenStoreError",
]


class ClientError(Exception):
    """Base class for every error of :mod:`ostiary.client`."""


class DiscoveryError(ClientError):
    """The issuer's metadata (RFC 8414 / OpenID Connect Discovery 1.0) could not be fetched or is unsafe."""


class OAuthError(ClientError):
    """The authorization server refused the request with an RFC 6749 §5.2 error response.

    ``error`` is the OAuth error code (``invalid_client``, ``invalid_scope`` …) and ``description`` the
    server's ``error_description``. These are never retried: repeating the request cannot help.
    """

    def __init__(self, error: str, description: str | None = None, status_code: int | None = None) -> None:
        self.error = error
        self.description = description
        self.status_code = status_code
        super().__init__(f"{error}: {description}" if description else error)


class TokenEndpointUnavailable(ClientError):
    """The token endpoint kept failing (5xx or network errors) after all retry attempts."""


class AccessDenied(ClientError):
    """The user chose Deny on the verification page (RFC 8628 §3.5 ``access_denied``)."""


class Expired(ClientError):
    """The device code expired before anyone approved it (RFC 8628 §3.5 ``expired_token``)."""


class LoginCancelled(ClientError):
    """The person at the terminal stopped the login (Ctrl-C)."""


class LoginRequired(ClientError):
    """No usable tokens: never logged in, logged out, or the refresh token was refused. Log in again."""


class TokenStoreError(ClientError):
    """Tokens could not be read from or written to their store."""


class NoKeyringError(TokenStoreError):
    """No secure OS keyring is available (typically a headless Linux machine without Secret Service)."""
