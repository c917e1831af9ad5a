"""Toolkit for APIs that accept access tokens from an Ostiary (or any RFC 9068) issuer.

``import ostiary.resource`` never imports a web framework: the adapters live in
:mod:`ostiary.resource.starlette`, :mod:`ostiary.resource.fastapi` and :mod:`ostiary.resource.flask`, and the
MCP SDK's token verifier in :mod:`ostiary.resource.mcp`.
"""

from ._mtls import ClientCertificates, check_certificate_binding
from .dpop import DpopNonces, DpopPolicy, DpopRequest, MemoryReplayCache, RedisReplayCache
from .errors import (
    InsufficientScope,
    InvalidDpopProof,
    InvalidRequest,
    InvalidToken,
    IssuerUnavailable,
    MissingToken,
    ResourceError,
    UseDpopNonce,
    WrongTokenKind,
)
from .jwks_cache import JwksCache
from .metadata import ProtectedResourceMetadata
from .token import AccessToken, is_service_token
from .verifier import Introspection, TokenVerifier

__all__ = [
    "AccessToken",
    "ClientCertificates",
    "DpopNonces",
    "DpopPolicy",
    "DpopRequest",
    "InsufficientScope",
    "Introspection",
    "InvalidDpopProof",
    "InvalidRequest",
    "InvalidToken",
    "IssuerUnavailable",
    "JwksCache",
    "MemoryReplayCache",
    "MissingToken",
    "ProtectedResourceMetadata",
    "RedisReplayCache",
    "ResourceError",
    "TokenVerifier",
    "UseDpopNonce",
    "WrongTokenKind",
    "check_certificate_binding",
    "is_service_token",
]
