"""Workload identity federation: trust policies for external OIDC issuers (RFC 8693 token exchange).

A CI job (GitHub Actions, GitLab CI, a Kubernetes service account, …) holds a short-lived OIDC token
minted by its platform. A :class:`TrustPolicy` says which tokens from which issuer may be exchanged here,
under which claim conditions, for which subject, scopes, audiences and lifetime. :func:`evaluate` applies
every policy to a token and returns a typed :class:`FederationReport`: the token exchange grant issues from
it, and ``ostiary federation explain`` prints it. The same function decides both, so an explanation can
never disagree with the server.

Nothing here does I/O of its own: policies come from a :class:`TrustPolicyRepository` (the store) and the
external issuer's keys from an :class:`ExternalKeys` implementation (the web layer fetches them over HTTP).
"""

from __future__ import annotations

import fnmatch
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from .._secrets import text_digest
from . import jose
from .errors import InvalidRequest
from .requests import scope_set

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "SUBJECT_TOKEN_TYPES",
    "TOKEN_EXCHANGE_GRANT",
    "TOKEN_TYPE_ACCESS_TOKEN",
    "TOKEN_TYPE_ID_TOKEN",
    "TOKEN_TYPE_JWT",
    "Check",
    "Condition",
    "ConditionOp",
    "ConditionResult",
    "ExternalKeys",
    "ExternalKeysUnavailable",
    "FederatedGrant",
    "FederationReport",
    "PolicyResult",
    "TrustPolicy",
    "TrustPolicyRepository",
    "evaluate",
    "jti_replay_key",
    "render_subject",
    "select_policy",
    "template_fields",
]

#: RFC 8693 §2.1 / §3.
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES = frozenset({TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN})

DEFAULT_LIFETIME = 900
MAX_LIFETIME = 3600
MAX_SUBJECT_LENGTH = 255
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")

ConditionOp = Literal["eq", "glob"]
ErrorCode = Literal["invalid_grant", "invalid_scope", "invalid_target"]


class ExternalKeysUnavailable(Exception):
    """The external issuer's discovery document or JWKS could not be fetched or used. ``str()`` is safe to log."""


class ExternalKeys(Protocol):
    """The verification keys of a pinned external issuer (discovery, then ``jwks_uri``), cached."""

    async def keys(self, issuer: str, *, force: bool = False) -> list[jose.PublicJwk]:
        """The issuer's keys; ``force`` refetches (rate-limited) when a token names an unknown ``kid``.

        Raises :class:`ExternalKeysUnavailable`.
        """
        ...


@dataclass(frozen=True, slots=True)
class Condition:
    """One claim condition. ``eq``: the claim equals ``value`` (strings; numbers and booleans compare by
    their JSON text, ``true`` or ``42``). ``glob``: the claim is a string matching the shell-style pattern
    (:func:`fnmatch.fnmatchcase`: ``*`` matches any characters, ``/`` included). A missing claim never
    matches."""

    claim: str
    op: ConditionOp
    value: str

    def test(self, claims: Mapping[str, Any]) -> bool:
        if self.claim not in claims:
            return False
        actual = claims[self.claim]
        if self.op == "glob":
            return isinstance(actual, str) and fnmatch.fnmatchcase(actual, self.value)
        if isinstance(actual, str):
            return actual == self.value
        if isinstance(actual, bool | int | float):
            return json.dumps(actual) == self.value
        return False

    def as_dict(self) -> dict[str, str]:
        return {"claim": self.claim, "op": self.op, "value": self.value}


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Which tokens of one external issuer may be exchanged, and for what.

    ``issuer`` is pinned exactly; the token's ``aud`` must contain ``audience``; every condition must hold.
    The issued token gets ``sub`` = ``subject_template`` rendered from the claims, scopes within ``scopes``,
    an audience from ``audiences`` (the first by default), and lives at most ``max_lifetime`` seconds.
    ``max_token_age`` refuses external tokens issued longer ago; ``one_time_jti`` lets each external token be
    exchanged once. ``allowed_clients`` empty: anyone holding a matching token may exchange it (as a cloud
    STS allows); otherwise the caller must authenticate as one of these clients.
    """

    policy_id: str
    name: str
    issuer: str
    audience: str
    subject_template: str
    conditions: tuple[Condition, ...] = ()
    scopes: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    max_lifetime: int = DEFAULT_LIFETIME
    max_token_age: int | None = None
    one_time_jti: bool = False
    allowed_clients: tuple[str, ...] = ()
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def specificity(self) -> tuple[int, int, str]:
        """Sort key, most specific first: more conditions, then more exact ones, then ``policy_id``."""
        exact = sum(1 for c in self.conditions if c.op == "eq")
        return (-len(self.conditions), -exact, self.policy_id)

    @property
    def lifetime_cap(self) -> int:
        return max(1, min(self.max_lifetime, MAX_LIFETIME))


class TrustPolicyRepository(Protocol):
    async def get_trust_policy(self, policy_id: str) -> TrustPolicy | None: ...
    async def list_trust_policies(self, issuer: str | None = None) -> list[TrustPolicy]:
        """Every policy (``issuer`` None) or those pinned to exactly ``issuer``, by ``policy_id``."""
        ...
    async def add_trust_policy(self, policy: TrustPolicy) -> None:
        """Raises ``ValueError`` if the id exists."""
        ...
    async def update_trust_policy(self, policy: TrustPolicy) -> None:
        """Raises ``KeyError`` if the id does not exist."""
        ...
    async def delete_trust_policy(self, policy_id: str) -> bool: ...
    async def replay_seen(self, namespace: str, value: str, now: float) -> bool:
        """Whether ``use_once(namespace, value, …)`` has recorded ``value`` and it has not expired (read only)."""
        ...


# -- templating ---------------------------------------------------------------------------------------

def template_fields(template: str) -> list[str]:
    """The claim names in a subject template such as ``ci:{repository}@{environment}``.

    ``{{`` and ``}}`` are literal braces. Raises ``ValueError`` for anything but plain ``{claim}`` fields.
    """
    names: list[str] = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not _FIELD.fullmatch(name) or spec or conversion:
            raise ValueError(f"subject template field {{{name}}} must be a plain claim name such as {{repository}}")
        names.append(name)
    return names


def render_subject(template: str, claims: Mapping[str, Any]) -> tuple[str | None, str]:
    """Render the template from the claims: (subject, "") or (None, why not). Only string, integer and
    boolean claims may be used; the result must be 1-255 printable characters."""
    out: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return None, f"bad template: {exc}"
    for literal, name, _, _ in parts:
        out.append(literal)
        if name is None:
            continue
        if name not in claims:
            return None, f"claim {name!r} missing"
        value = claims[name]
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, bool | int):
            out.append(json.dumps(value))
        else:
            return None, f"claim {name!r} is not a string or number"
    subject = "".join(out)
    if not subject or len(subject) > MAX_SUBJECT_LENGTH or not subject.isprintable():
        return None, "rendered subject is empty, longer than 255 characters or not printable"
    return subject, ""


# -- the report ------------------------------------------------------------------------------------------

def _show(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True, slots=True)
class Check:
    """One named check and how it went, in words a platform engineer can act on."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ConditionResult:
    condition: Condition
    ok: bool
    actual: str | None  # the claim as JSON text (shortened); None when the claim is missing

    def as_dict(self) -> dict[str, Any]:
        return {**self.condition.as_dict(), "ok": self.ok, "actual": self.actual}


@dataclass(frozen=True, slots=True)
class PolicyResult:
    policy: TrustPolicy
    checks: tuple[Check, ...]
    conditions: tuple[ConditionResult, ...]
    subject: str | None

    @property
    def matched(self) -> bool:
        return all(c.ok for c in self.checks) and all(c.ok for c in self.conditions)

    def as_dict(self) -> dict[str, Any]:
        return {"policy_id": self.policy.policy_id, "name": self.policy.name, "matched": self.matched,
                "checks": [c.as_dict() for c in self.checks], "conditions": [c.as_dict() for c in self.conditions],
                "subject": self.subject}


@dataclass(frozen=True, slots=True)
class FederatedGrant:
    """What the exchange issues (or would issue)."""

    policy_id: str
    subject: str
    client_id: str
    audience: tuple[str, ...]
    scopes: tuple[str, ...]
    lifetime: int
    act: Mapping[str, str]
    one_time_jti: bool

    def as_dict(self) -> dict[str, Any]:
        return {"policy_id": self.policy_id, "subject": self.subject, "client_id": self.client_id,
                "audience": list(self.audience), "scope": " ".join(self.scopes), "lifetime": self.lifetime,
                "act": dict(self.act)}


@dataclass(frozen=True, slots=True)
class FederationReport:
    """Every check made on one external token, and the outcome. Never holds the token itself."""

    issuer: str | None
    external_subject: str | None
    external_jti: str | None
    token_checks: tuple[Check, ...]
    policies: tuple[PolicyResult, ...]
    selected: str | None = None
    grant: FederatedGrant | None = None
    error: ErrorCode | None = None
    reason: str | None = None  # precise; for the audit log and explain only, never the HTTP response
    external_exp: float | None = field(default=None, repr=False)

    @property
    def allowed(self) -> bool:
        return self.error is None and self.grant is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": "allowed" if self.allowed else "refused", "error": self.error, "reason": self.reason,
            "issuer": self.issuer, "subject": self.external_subject, "jti": self.external_jti,
            "token_checks": [c.as_dict() for c in self.token_checks],
            "policies": [p.as_dict() for p in self.policies], "selected_policy": self.selected,
            "would_issue": self.grant.as_dict() if self.grant else None,
        }


# -- evaluation ----------------------------------------------------------------------------------------

def jti_replay_key(issuer: str, jti: str) -> tuple[str, str]:
    """The replay-cache (namespace, value) of an external token's ``jti``: hashed, so any length fits."""
    return "federation:" + text_digest(issuer)[:32], text_digest(jti)


def select_policy(results: Sequence[PolicyResult]) -> PolicyResult | None:
    """The most specific matching policy: most conditions, then most exact conditions, then ``policy_id``."""
    matched = [r for r in results if r.matched]
    return min(matched, key=lambda r: r.policy.specificity) if matched else None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim, or None: NaN, Infinity and a 400-digit int (all of which json.loads reads) are not
    one, and ``float()`` / ``int()`` of them raised ValueError or OverflowError (a 500, before any check)."""
    v = claims.get(name)
    return float(v) if jose.numeric_date(v) else None


def _ago(t: float, now: float) -> str:
    return f"{int(now - t)}s ago" if t <= now else f"in {int(t - now)}s"


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def _evaluate_policy(policy: TrustPolicy, claims: Mapping[str, Any], iss: str | None, now: float,
                     client_id: str | None) -> PolicyResult:
    checks: list[Check] = []
    if policy.issuer != iss:
        checks.append(Check("issuer", False, f"policy pins issuer {policy.issuer!r}; the token's iss is {iss!r}"))
        return PolicyResult(policy, tuple(checks), (), None)
    checks.append(Check("issuer", True, f"iss is {iss!r}"))
    auds = _audiences(claims)
    checks.append(Check("audience", policy.audience in auds,
                        f"aud must contain {policy.audience!r}; the token's aud is {_show(claims.get('aud'))}"))
    conditions = tuple(
        ConditionResult(c, c.test(claims), _show(claims[c.claim]) if c.claim in claims else None)
        for c in policy.conditions)
    if policy.max_token_age is not None:
        iat = _number(claims, "iat")
        age = None if iat is None else now - iat
        checks.append(Check("max_token_age", age is not None and age <= policy.max_token_age,
                            f"token must be at most {policy.max_token_age}s old; it is "
                            + ("of unknown age (no iat)" if age is None else f"{int(age)}s old")))
    if policy.one_time_jti:
        jti = claims.get("jti")
        has_jti = isinstance(jti, str) and 0 < len(jti) <= 1000
        checks.append(Check("jti", has_jti, "has a jti claim (the policy allows one use per jti)" if has_jti
                            else "the policy allows one use per jti, and the token has no usable jti claim"))
    if policy.allowed_clients:
        ok = client_id is not None and client_id in policy.allowed_clients
        who = f"the caller authenticated as {client_id!r}" if client_id else "the caller did not authenticate"
        checks.append(Check("client", ok, f"client must be one of {', '.join(policy.allowed_clients)}; {who}"))
    subject, why = render_subject(policy.subject_template, claims)
    checks.append(Check("subject", subject is not None,
                        f"subject {subject!r} from {policy.subject_template!r}" if subject is not None
                        else f"cannot render {policy.subject_template!r}: {why}"))
    return PolicyResult(policy, tuple(checks), conditions, subject)


def _resolve(policy: TrustPolicy, scope: str | None, requested: Sequence[str]
             ) -> tuple[tuple[str, ...], tuple[str, ...], ErrorCode | None, str]:
    """Scope (RFC 6749 §3.3) and audience (RFC 8693 §2.1 ``audience``, RFC 8707 ``resource``) within the policy."""
    try:
        scopes = scope_set(scope)
    except InvalidRequest:
        return (), (), "invalid_scope", "scope is malformed"
    allowed = frozenset(policy.scopes)
    if not scopes:
        scopes = allowed
    extra = scopes - allowed
    if extra:
        return (), (), "invalid_scope", "scope not allowed by the trust policy: " + " ".join(sorted(extra))[:200]
    for value in requested:
        parts = urlsplit(value)
        if value not in policy.audiences or not parts.scheme or parts.fragment:
            return (), (), "invalid_target", f"audience {value[:200]!r} not allowed by the trust policy"
    audience = tuple(dict.fromkeys(requested)) or policy.audiences[:1]
    if not audience:
        return (), (), "invalid_target", "the trust policy names no audience"
    return tuple(sorted(scopes)), audience, None, ""


async def evaluate(
    token: str,
    *,
    policies: TrustPolicyRepository,
    keys: ExternalKeys | None,
    now: float,
    leeway: float,
    server_ttl: int,
    client_id: str | None = None,
    scope: str | None = None,
    audiences: Sequence[str] = (),
    all_policies: bool = False,
) -> FederationReport:
    """Check an external token against the trust policies (RFC 8693 §2.1 ``subject_token``).

    Token checks: a JWT whose ``iss`` some policy pins; signature with that issuer's keys (an unknown
    ``kid`` refetches them once); ``exp`` not passed, ``nbf`` and ``iat`` not in the future (each with
    ``leeway``); a ``sub``. Then every policy of that issuer is evaluated (all policies when
    ``all_policies``, for explain), the most specific match is selected, a one-time ``jti`` is checked
    against the replay cache (read only: the grant consumes it), and scope, audience and lifetime are
    resolved. ``client_id`` is the *authenticated* caller, if any.
    """
    try:
        header, claims = jose.decode_unverified(token)
    except jose.JoseError:
        return FederationReport(None, None, None, (Check("format", False, "the subject token is not a JWT"),), (),
                                error="invalid_grant", reason="the subject token is not a JWT")
    iss = claims.get("iss") if isinstance(claims.get("iss"), str) else None
    sub = claims.get("sub") if isinstance(claims.get("sub"), str) else None
    jti = claims.get("jti") if isinstance(claims.get("jti"), str) else None
    exp = _number(claims, "exp")
    checks: list[Check] = [Check("format", True, "a JWT")]
    failures: list[str] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append(Check(name, ok, detail))
        if not ok:
            failures.append(f"{name}: {detail}")

    # a pinned issuer is a validated URL: anything else (control characters, huge) cannot match one
    pinned = await policies.list_trust_policies(iss) if iss and len(iss) <= 2000 and iss.isprintable() else []
    candidates = await policies.list_trust_policies() if all_policies else pinned
    check("issuer", bool(pinned),
          f"{len(pinned)} trust polic{'y pins' if len(pinned) == 1 else 'ies pin'} {iss!r}" if pinned
          else ("the token has no iss claim" if iss is None else f"no trust policy for issuer {iss!r}"))

    if pinned and iss is not None:
        detail = await _verify_signature(token, header, iss, keys, now)
        check("signature", detail is None, detail or f"verified with the issuer's key {header.get('kid')!r}")
        check("exp", exp is not None and exp > now - leeway,
              "no exp claim" if exp is None else f"expire{'s' if exp > now else 'd'} at {int(exp)} ({_ago(exp, now)})")
        nbf = _number(claims, "nbf")
        if "nbf" in claims:
            check("nbf", nbf is not None and nbf <= now + leeway,
                  "nbf is not a number" if nbf is None else f"not valid before {int(nbf)} ({_ago(nbf, now)})")
        iat = _number(claims, "iat")
        check("iat", iat is not None and iat <= now + leeway,
              "no iat claim" if iat is None else f"issued at {int(iat)} ({_ago(iat, now)})")
        check("sub", bool(sub), f"subject {sub!r}" if sub else "no sub claim")

    results = tuple(_evaluate_policy(p, claims, iss, now, client_id) for p in candidates)

    def report(error: ErrorCode | None = None, reason: str | None = None, selected: str | None = None,
               grant: FederatedGrant | None = None) -> FederationReport:
        return FederationReport(iss, sub, jti, tuple(checks), results, selected=selected, grant=grant,
                                error=error, reason=reason, external_exp=exp)

    if failures:
        return report("invalid_grant", failures[0])
    chosen = select_policy(results)
    if chosen is None:
        return report("invalid_grant", "no trust policy matches the token")
    policy = chosen.policy
    if policy.one_time_jti and jti is not None:
        seen = await policies.replay_seen(*jti_replay_key(iss or "", jti), now)
        check("jti_unused", not seen, "this token was already exchanged (the policy allows one use)" if seen
              else "not exchanged before (the policy allows one use)")
        if seen:
            return report("invalid_grant", failures[-1], policy.policy_id)
    scopes, audience, error, why = _resolve(policy, scope, audiences)
    if error is not None:
        return report(error, why, policy.policy_id)
    assert chosen.subject is not None and exp is not None and sub is not None and iss is not None
    # never above 1 h, the server's access-token lifetime or the policy's cap, and never beyond the
    # external token's own expiry plus that cap
    lifetime = min(policy.lifetime_cap, server_ttl, int(exp + policy.lifetime_cap - now))
    grant = FederatedGrant(policy_id=policy.policy_id, subject=chosen.subject,
                           client_id=client_id or "federation:" + policy.policy_id, audience=audience,
                           scopes=scopes, lifetime=max(1, lifetime), act={"iss": iss, "sub": sub},
                           one_time_jti=policy.one_time_jti)
    return report(selected=policy.policy_id, grant=grant)


async def _verify_signature(token: str, header: Mapping[str, Any], issuer: str, keys: ExternalKeys | None,
                            now: float) -> str | None:
    """None when the signature verifies with one of the issuer's keys; otherwise why not."""
    if keys is None:
        return "no way to fetch external issuers' keys is configured"
    kid = header.get("kid")
    try:
        found = await keys.keys(issuer)
        if kid is not None and not any(k.kid == kid for k in found):
            found = await keys.keys(issuer, force=True)  # the issuer may have rotated its keys
    except ExternalKeysUnavailable as exc:
        return f"cannot fetch the issuer's keys: {exc}"
    try:
        # signature (and iss) only: the time claims are checked one by one by the caller, each reported
        jose.verify_jwt(token, found, issuer=issuer, now=now, leeway=1e12, require=())
    except jose.JoseError as exc:
        if "no key matches" in str(exc):
            return f"no key with kid {kid!r} and alg {header.get('alg')!r} in the issuer's JWKS"
        return str(exc)
    return None
