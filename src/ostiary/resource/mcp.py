"""Protect an MCP server (the official ``mcp`` Python SDK) with tokens from Ostiary.

The SDK's server side asks for a *token verifier* (``mcp.server.auth.provider.TokenVerifier``: ``async
verify_token(token) -> AccessToken | None``) and ``AuthSettings``; with both it serves the RFC 9728
protected-resource metadata, answers 401 with ``WWW-Authenticate: Bearer resource_metadata="…"`` and checks
the required scopes. :class:`McpTokenVerifier` is that verifier over :class:`~ostiary.resource.TokenVerifier`
(issuer pinned, audience = the MCP server's URL, RFC 9068 checks or introspection), and :func:`auth_settings`
builds the matching settings::

    from mcp.server.mcpserver import MCPServer
    from ostiary.resource.mcp import McpTokenVerifier, auth_settings

    ISSUER, URL = "https://login.example.com", "https://mcp.example.com/mcp"
    server = MCPServer("notes", token_verifier=McpTokenVerifier.for_server(ISSUER, URL),
                       auth=auth_settings(ISSUER, URL, ["notes:read"]))

Needs the ``mcp`` extra (``pip install 'ostiary[mcp]'``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mcp.server.auth.provider import AccessToken as McpAccessToken
from mcp.server.auth.settings import AuthSettings

from .errors import IssuerUnavailable, ResourceError
from .verifier import TokenVerifier

__all__ = ["McpTokenVerifier", "auth_settings"]

log = logging.getLogger("ostiary.resource")


class McpTokenVerifier:
    """The MCP SDK's token verifier, backed by an Ostiary :class:`~ostiary.resource.TokenVerifier`.

    ``verifier.audience`` must be the MCP server's URL (the ``resource`` its clients ask for, RFC 8707), so
    a token issued for another resource is refused here, before the SDK sees it. Every refusal is ``None``
    (the SDK answers 401); the reason is logged, never the token. When the issuer cannot be reached the
    token is refused as well (fail safe: no request passes unchecked). The SDK hands over the token alone
    (``Authorization: Bearer``), so a DPoP-bound token (``cnf.jkt``, RFC 9449) is refused here: without its
    proof it is a Bearer downgrade.
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    @classmethod
    def for_server(cls, issuer: str, server_url: str, **options: Any) -> McpTokenVerifier:
        """A verifier for tokens from ``issuer`` whose audience is the MCP server at ``server_url``;
        ``options`` go to :class:`~ostiary.resource.TokenVerifier` (e.g. ``introspection=``)."""
        return cls(TokenVerifier(issuer=issuer, audience=server_url, **options))

    async def verify_token(self, token: str) -> McpAccessToken | None:
        """The SDK's view of a valid token (client, scopes, expiry, resource, subject, claims), or None."""
        try:
            access = await self.verifier.averify(token)
        except IssuerUnavailable as exc:
            log.warning("MCP bearer token refused, the issuer is unavailable: %s", exc.reason)
            return None
        except ResourceError as exc:
            log.info("MCP bearer token refused: %s", exc.reason)
            return None
        return McpAccessToken(token=token, client_id=access.client_id, scopes=sorted(access.scopes),
                              expires_at=int(access.expires_at), resource=self.verifier.audience,
                              subject=access.subject, claims=dict(access.claims))

    def close(self) -> None:
        """Close the verifier's private HTTP client, if it made one."""
        self.verifier.close()


def auth_settings(issuer: str, server_url: str, required_scopes: Sequence[str] = (), *,
                  service_documentation_url: str | None = None) -> AuthSettings:
    """The SDK's ``AuthSettings`` for an MCP server at ``server_url`` that trusts ``issuer``: the SDK then
    publishes RFC 9728 metadata naming ``issuer`` and ``required_scopes`` (which every call needs), and only
    accepts tokens whose resource is ``server_url``."""
    # Strings, validated by the settings model itself: it keeps a path-less issuer without a trailing slash
    # (RFC 8414 §3.3 compares issuers as strings; a bare AnyHttpUrl("https://login.example.com") gains a "/").
    return AuthSettings.model_validate({
        "issuer_url": issuer, "resource_server_url": server_url, "required_scopes": list(required_scopes) or None,
        "validate_token_resource": True, "service_documentation_url": service_documentation_url})
