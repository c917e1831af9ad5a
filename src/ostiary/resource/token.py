"""The verified access token handed to API code (RFC 9068 §2.2 claims)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.jose import numeric_date
from .errors import InsufficientScope, InvalidToken, WrongTokenKind

__all__ = ["AccessToken", "is_service_token"]


def is_service_token(claims: Mapping[str, Any]) -> bool:
    """Whether a token was issued to a service rather than on behalf of a user.

    A token is a *service* token when either
    - ``sub == client_id`` and there is no ``auth_time`` (client credentials, RFC 6749 §4.4; for that
      grant RFC 9068 §2.2 sets ``sub`` to the client's identifier), or
    - it carries an ``act`` claim (RFC 8693 §4.1) whose ``sub`` differs from ``client_id``: a token
      obtained by exchanging a federated workload identity (e.g. a CI job's OIDC token).
    Every other token is a *user* token.
    """
    sub, client_id = claims.get("sub"), claims.get("client_id")
    if sub == client_id and "auth_time" not in claims:
        return True
    act = claims.get("act")
    return isinstance(act, Mapping) and act.get("sub") != client_id


def actor_chain(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``sub`` of each actor in the ``act`` claim (RFC 8693 §4.1), the current actor first, then the ones
    before it (nested ``act``). Empty when the token carries no ``act``."""
    chain: list[str] = []
    act = claims.get("act")
    while isinstance(act, Mapping) and len(chain) < 10:
        sub = act.get("sub")
        if not isinstance(sub, str):
            break
        chain.append(sub)
        act = act.get("act")
    return tuple(chain)


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified access token. It never holds the raw token; ``token_hash`` is its SHA-256 (base64url).

    ``actor`` is who acts for the subject when the token came from a token exchange (RFC 8693 §4.1 ``act``):
    for a user's token exchanged by a service, that service's client id (``subject`` is still the user);
    ``actor_chain`` lists every actor, the current one first. Both are empty for a token used first-hand.
    """

    subject: str
    client_id: str
    scopes: frozenset[str]
    audience: tuple[str, ...]
    expires_at: float
    claims: Mapping[str, Any] = field(repr=False, compare=False)
    is_user: bool
    is_service: bool
    token_hash: str = field(repr=False, default="")
    actor_chain: tuple[str, ...] = ()

    @property
    def actor(self) -> str | None:
        """The ``sub`` of the ``act`` claim: the party acting on the subject's behalf, or None."""
        return self.actor_chain[0] if self.actor_chain else None

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], token_hash: str) -> AccessToken:
        """Build from checked claims (JWT payload or RFC 7662 §2.2 introspection response)."""
        sub, client_id, scope = claims.get("sub"), claims.get("client_id"), claims.get("scope", "")
        exp, aud = claims.get("exp"), claims.get("aud")
        if not isinstance(sub, str) or not isinstance(client_id, str) or not isinstance(scope, str):
            raise InvalidToken("sub, client_id or scope missing or not a string")
        if not numeric_date(exp):
            raise InvalidToken("exp missing or not a number")
        audience = (aud,) if isinstance(aud, str) else tuple(a for a in aud or () if isinstance(a, str))
        service = is_service_token(claims)
        return cls(subject=sub, client_id=client_id, scopes=frozenset(scope.split()), audience=audience,
                   expires_at=float(exp), claims=claims, is_user=not service, is_service=service,
                   token_hash=token_hash, actor_chain=actor_chain(claims))

    def require(self, scopes: Iterable[str] = (), *, user: bool = False, service: bool = False) -> None:
        """Raise :class:`WrongTokenKind` or :class:`InsufficientScope` (RFC 6750 §3.1) unless allowed."""
        if user and service:
            raise ValueError("require user or service, not both")
        if user and not self.is_user:
            raise WrongTokenKind("user")
        if service and not self.is_service:
            raise WrongTokenKind("service")
        wanted = tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes)
        missing = [s for s in wanted if s not in self.scopes]
        if missing:
            raise InsufficientScope(wanted, reason=f"missing {' '.join(missing)}")
