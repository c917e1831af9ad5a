"""Toolkit for programs that call APIs protected by an Ostiary (or any OAuth 2.1) issuer.

Imports only httpx and the JOSE wrapper: no web framework, no ORM, no templates.
"""

from .device_login import DeviceCode, DeviceLogin
from .discovery import ServerMetadata, adiscover, discover
from .dpop import DpopKey
from .errors import (
    AccessDenied,
    ClientError,
    DiscoveryError,
    Expired,
    LoginCancelled,
    LoginRequired,
    NoKeyringError,
    OAuthError,
    TokenEndpointUnavailable,
    TokenStoreError,
)
from .service_token import ClientCredentialsAuth, ServiceToken, ServiceTokenClient
from .session import TokenSession, TokenSessionAuth
from .token_store import EncryptedFileTokenStore, KeyringTokenStore, StoredTokens, TokenStore, default_token_store

__all__ = [
    "AccessDenied",
    "ClientCredentialsAuth",
    "ClientError",
    "DeviceCode",
    "DeviceLogin",
    "DiscoveryError",
    "DpopKey",
    "EncryptedFileTokenStore",
    "Expired",
    "KeyringTokenStore",
    "LoginCancelled",
    "LoginRequired",
    "NoKeyringError",
    "OAuthError",
    "ServerMetadata",
    "ServiceToken",
    "ServiceTokenClient",
    "StoredTokens",
    "TokenEndpointUnavailable",
    "TokenSession",
    "TokenSessionAuth",
    "TokenStore",
    "TokenStoreError",
    "adiscover",
    "default_token_store",
    "discover",
]
