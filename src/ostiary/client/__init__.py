"""Toolkit for programs that call APIs protected by an Ostiary (or any OAuth 2.1) issuer.

Imports only httpx and the JOSE wrapper: no web framework, no ORM, no templates.
"""

from .discovery import ServerMetadata, adiscover, discover
from .errors import ClientError, DiscoveryError, OAuthError, TokenEndpointUnavailable
from .service_token import ClientCredentialsAuth, ServiceToken, ServiceTokenClient

__all__ = [
    "ClientCredentialsAuth",
    "ClientError",
    "DiscoveryError",
    "OAuthError",
    "ServerMetadata",
    "ServiceToken",
    "ServiceTokenClient",
    "TokenEndpointUnavailable",
    "adiscover",
    "discover",
]
