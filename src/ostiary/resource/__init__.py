"""Toolkit for APIs that accept access tokens from an Ostiary (or any RFC 9068) issuer.

``import ostiary.resource`` never imports a web framework: the adapters live in
:mod:`ostiary.resource.starlette`, :mod:`ostiary.resource.fastapi` and :mod:`ostiary.resource.flask`, and the
MCP SDK's token verifier in :mod:`ostiary.resource.mcp`.
"""

from .errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    IssuerUnavailable,
    MissingToken,
    ResourceError,
    WrongTokenKind,
)
from .jwks_cache import JwksCache
from .metadata import ProtectedResourceMetadata
from .token import AccessToken, is_service_token
from .verifier import Introspection, TokenVerifier

__all__ = [
    "AccessToken",
    "InsufficientScope",
    "Introspection",
    "InvalidRequest",
    "InvalidToken",
    "IssuerUnavailable",
    "JwksCache",
    "MissingToken",
    "ProtectedResourceMetadata",
    "ResourceError",
    "TokenVerifier",
    "WrongTokenKind",
    "is_service_token",
]
