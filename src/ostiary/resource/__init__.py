"""Toolkit for APIs that accept access tokens from an Ostiary (or any RFC 9068) issuer.

``import ostiary.resource`` never imports a web framework: the adapters live in
:mod:`ostiary.resource.starlette`, :mod:`ostiary.resource.fastapi` and :mod:`ostiary.resource.flask`, and the
MCP SDK's token verifier in :mod:`ostiary.resource.mcp`.
"""

from ._mtls import ClientCertificates, check_certificate_binding
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
    "ClientCertificates",
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
    "check_certificate_binding",
    "is_service_token",
]
