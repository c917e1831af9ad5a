"""Token grants, one module each, registered explicitly by ``grant_type``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..client_auth import AuthenticatedClient
from ..context import EngineContext
from ..issuance import TokenResponse
from ..requests import EndpointRequest

__all__ = ["GrantRequest", "TokenGrant", "default_grants"]


@dataclass(frozen=True, slots=True)
class GrantRequest:
    request: EndpointRequest
    params: Mapping[str, str]
    client: AuthenticatedClient | None


class TokenGrant(Protocol):
    grant_type: str
    #: False only for grants whose trust comes from elsewhere (RFC 8693 federation policies).
    requires_client: bool

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
