"""Trust policies for workload identity federation, and ``explain``: shared by the CLI and the admin API.

Validation lives here, at the edge (pydantic); the rules that use a policy live in
:mod:`ostiary.core.federation`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._clock import Clock
from .._secrets import new_token
from ..config import Duration, is_loopback_url
from ..core.federation import (
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    TOKEN_EXCHANGE_GRANT,
    Condition,
    ExternalKeys,
    FederationReport,
    TrustPolicy,
    evaluate,
    template_fields,
)
from ..core.policy import ServerPolicy
from ..core.storage import Store
from .service import AdminError, NotFound, audience_uris, scope_tokens

__all__ = [
    "ConditionSpec",
    "ExplainRequest",
    "FederationService",
    "TrustPolicyCreate",
    "trust_policy_view",
]

_POLICY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CLAIM = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}")


class ConditionSpec(BaseModel):
    """``eq``: the claim equals ``value``. ``glob``: a string claim matches the shell pattern (``*``, ``?``,
    ``[...]``; ``*`` also matches ``/``). A missing claim never matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str
    op: Literal["eq", "glob"] = "eq"
    value: str = Field(min_length=1, max_length=500)

    @field_validator("claim")
    @classmethod
    def _claim(cls, v: str) -> str:
        if not _CLAIM.fullmatch(v):
            raise ValueError(f"claim name {v!r}: letters, digits, _ . : - (starting with a letter or _)")
        return v


class TrustPolicyCreate(BaseModel):
    """A trust policy: which external tokens may be exchanged at POST /token (RFC 8693), and for what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    policy_id: str | None = Field(None, description="default: derived from the name")
    issuer: str = Field(description="the external issuer, pinned exactly (https; http only on loopback)")
    audience: str = Field(min_length=1, max_length=500, description="the aud the external token must carry")
    conditions: list[ConditionSpec] = Field(min_length=1, max_length=50)
    subject_template: str = Field(min_length=1, max_length=500,
                                  description="sub of the issued token, e.g. ci:{repository}@{environment}")
    scopes: list[str] = Field(default_factory=list)
    audiences: list[str] = Field(min_length=1, description="audiences the issued token may have; first = default")
    max_lifetime: Duration = Field(DEFAULT_LIFETIME, ge=60, le=MAX_LIFETIME)
    max_token_age: Duration | None = Field(None, ge=1, le=86400)
    one_time_jti: bool = False
    allowed_clients: list[str] = Field(default_factory=list,
                                       description="empty: no client authentication needed")

    @field_validator("policy_id")
    @classmethod
    def _pid(cls, v: str | None) -> str | None:
        if v is not None and not _POLICY_ID.fullmatch(v):
            raise ValueError("policy_id: 1-128 characters from A-Z a-z 0-9 . _ -")
        return v

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if len(v) > 2000 or not v.isprintable() or " " in v:
            raise ValueError("issuer must be a URL of at most 2000 printable characters")
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("issuer must be an absolute https URL without query or fragment, exactly as the "
                             "tokens' iss claim")
        if parts.scheme == "http" and not is_loopback_url(v):
            raise ValueError("issuer must use https (http is allowed only for a loopback host, in development)")
        return v

    @field_validator("name", "audience", "subject_template")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.isprintable():
            raise ValueError("must be printable text")
        return v

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        return scope_tokens(v)

    @field_validator("audiences")
    @classmethod
    def _audiences(cls, v: list[str]) -> list[str]:
        return audience_uris(v)

    @field_validator("subject_template")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            fields = template_fields(v)
        except ValueError as exc:
            raise ValueError(f"subject_template: {exc}") from exc
        for name in fields:
            if not _CLAIM.fullmatch(name):
                raise ValueError(f"subject_template: {{{name}}} is not a claim name")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> TrustPolicyCreate:
        if len(set(self.allowed_clients)) != len(self.allowed_clients):
            raise ValueError("allowed_clients has duplicates")
        return self

    def default_id(self) -> str:
        slug = re.sub(r"[^a-z0-9._-]+", "-", self.name.lower()).strip("-.")[:64]
        return slug or "tp-" + new_token(16)


class ExplainRequest(BaseModel):
    """An external token to explain, and optionally the request it would come with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=1, max_length=16_384)
    client_id: str | None = Field(None, description="treat the caller as authenticated as this client")
    scope: str | None = None
    audience: list[str] = Field(default_factory=list)


def trust_policy_view(p: TrustPolicy) -> dict[str, Any]:
    return {
        "policy_id": p.policy_id, "name": p.name, "issuer": p.issuer, "audience": p.audience,
        "conditions": [c.as_dict() for c in p.conditions], "subject_template": p.subject_template,
        "scopes": list(p.scopes), "audiences": list(p.audiences), "max_lifetime": p.max_lifetime,
        "max_token_age": p.max_token_age, "one_time_jti": p.one_time_jti,
        "allowed_clients": list(p.allowed_clients), "created_at": int(p.created_at),
        "updated_at": int(p.updated_at),
    }


@dataclass
class FederationService:
    store: Store
    policy: ServerPolicy
    clock: Clock

    async def add(self, spec: TrustPolicyCreate) -> TrustPolicy:
        if spec.issuer.rstrip("/") == self.policy.issuer.rstrip("/"):
            raise AdminError("a trust policy is for an external issuer, not this server")
        if spec.issuer.startswith("http:") and not is_loopback_url(self.policy.issuer):
            raise AdminError("an http issuer is allowed only in development (this server's issuer on loopback)")
        for client_id in spec.allowed_clients:
            client = await self.store.get_client(client_id)
            if client is None:
                raise AdminError(f"allowed client {client_id!r} does not exist; see `ostiary client list`")
            if TOKEN_EXCHANGE_GRANT not in client.grant_types:
                raise AdminError(f"client {client_id!r} may not use token exchange: add {TOKEN_EXCHANGE_GRANT} to "
                                 f"its grant types (`ostiary client update {client_id} --grant-type "
                                 f"{TOKEN_EXCHANGE_GRANT}`, repeating --grant-type for each grant it keeps)")
        now = self.clock.now()
        policy = TrustPolicy(
            policy_id=spec.policy_id or spec.default_id(), name=spec.name, issuer=spec.issuer,
            audience=spec.audience, subject_template=spec.subject_template,
            conditions=tuple(Condition(c.claim, c.op, c.value) for c in spec.conditions),
            scopes=tuple(spec.scopes), audiences=tuple(spec.audiences), max_lifetime=spec.max_lifetime,
            max_token_age=spec.max_token_age, one_time_jti=spec.one_time_jti,
            allowed_clients=tuple(spec.allowed_clients), created_at=now, updated_at=now)
        try:
            await self.store.add_trust_policy(policy)
        except ValueError as exc:
            raise AdminError(f"a trust policy with id {policy.policy_id!r} already exists; choose another "
                             "--id or remove it first") from exc
        return policy

    async def list_policies(self, issuer: str | None = None) -> list[TrustPolicy]:
        return await self.store.list_trust_policies(issuer)

    async def get(self, policy_id: str) -> TrustPolicy:
        policy = await self.store.get_trust_policy(policy_id) if _POLICY_ID.fullmatch(policy_id) else None
        if policy is None:
            raise NotFound(f"no trust policy {policy_id!r}; see `ostiary federation trust list`")
        return policy

    async def remove(self, policy_id: str) -> None:
        if not _POLICY_ID.fullmatch(policy_id) or not await self.store.delete_trust_policy(policy_id):
            raise NotFound(f"no trust policy {policy_id!r}; see `ostiary federation trust list`")

    async def explain(self, token: str, keys: ExternalKeys | None, *, client_id: str | None = None,
                      scope: str | None = None, audiences: Sequence[str] = ()) -> FederationReport:
        """Every policy and condition applied to ``token``, and what would be issued. Issues nothing and
        consumes nothing (a one-time ``jti`` is only looked up)."""
        return await evaluate(token.strip(), policies=self.store, keys=keys, now=self.clock.now(),
                              leeway=self.policy.leeway, server_ttl=self.policy.access_token_ttl,
                              client_id=client_id, scope=scope, audiences=audiences, all_policies=True)
