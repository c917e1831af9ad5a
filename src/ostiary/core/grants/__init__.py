"""Token grants, one module each, registered explicitly by ``grant_type``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..client_auth import AuthenticatedClient
from ..context import EngineContext
from ..issuance import TokenResponse
from ..requests import EndpointRequest

__all__ = ["COMMON_PARAMETERS", "GrantRequest", "TokenGrant", "default_grants", "unexpected_parameter"]

#: What any grant may receive: the grant type, client authentication (RFC 6749 §2.3, RFC 7523 §2.2), scope
#: (RFC 6749 §3.3), resource indicators (RFC 8707 §2), the audience of RFC 8693 §2.1, and ``redirect_uri``,
#: which the code grant checks and common clients also send on a refresh (oidc-client-ts does).
COMMON_PARAMETERS = frozenset({"grant_type", "client_id", "client_secret", "client_assertion",
                               "client_assertion_type", "scope", "resource", "audience", "redirect_uri"})


@dataclass(frozen=True, slots=True)
class GrantRequest:
    request: EndpointRequest
    params: Mapping[str, str]
    client: AuthenticatedClient | None


class TokenGrant(Protocol):
    grant_type: str
    #: False only for grants whose trust comes from elsewhere (RFC 8693 federation policies).
    requires_client: bool
    #: The parameters this grant reads besides ``COMMON_PARAMETERS`` (node-oidc-provider's per-grant
    #: ``parameters``). The token endpoint refuses, once for all grants, a parameter that belongs to another
    #: grant (a ``code`` sent with a refresh); a parameter no grant knows is ignored (RFC 6749 §3.2).
    parameters: frozenset[str]

    async def handle(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse: ...


def default_grants() -> dict[str, TokenGrant]:
    from .authorization_code import AuthorizationCodeGrant
    from .client_credentials import ClientCredentialsGrant
    from .refresh_token import RefreshTokenGrant
    from .token_exchange import TokenExchangeGrant

    grants: list[TokenGrant] = [ClientCredentialsGrant(), TokenExchangeGrant()]
    grants += [AuthorizationCodeGrant(), RefreshTokenGrant()]
    from .device_code import DeviceCodeGrant  # RFC 8628

    grants.append(DeviceCodeGrant())
    return {g.grant_type: g for g in grants}


def unexpected_parameter(grant: TokenGrant, grants: Iterable[TokenGrant], params: Iterable[str]) -> str | None:
    """The first parameter of ``params`` that another of ``grants`` declares and ``grant`` does not, if any."""
    foreign = frozenset().union(*(g.parameters for g in grants)) - grant.parameters - COMMON_PARAMETERS
    return next((name for name in sorted(params) if name in foreign), None)
