"""The authorization endpoint (RFC 6749 §3.1, §4.1; OAuth 2.1 §4.1; OIDC Core §3.1.2): ``response_type=code``
with PKCE S256, nothing else.

The web layer hands in a frozen :class:`AuthorizationRequest` (the parameters, the browser's login session
if any, and the user's consent decision when it comes from the consent form) and renders the typed outcome:

* :class:`ErrorPage` — the client or redirect URI cannot be trusted: show an error, never redirect;
* :class:`AuthorizationResponse` — redirect to the client (``error`` set for an error, RFC 6749 §4.1.2.1),
  always with ``state`` and ``iss`` (RFC 9207);
* :class:`NeedLogin` / :class:`NeedConsent` — show the login or consent page, then call again.

The request may come by reference (``request_uri`` from ``/par``, RFC 9126) or as a signed request object
(``request``, RFC 9101); either way the parameters it carries replace the outer ones. The checks both
``/authorize`` and ``/par`` make are :func:`resolve_redirect_uri` and :func:`check_authorization_request`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode

from ..._secrets import constant_time_equals, new_token, token_hash
from ..audit import AuditEvent
from ..clients import Client
from ..context import EngineContext
from ..errors import (
    InvalidRequest,
    InvalidRequestUri,
    InvalidScope,
    OAuthError,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from ..fapi import FAPI2_JWS_ALGS, fapi2_client_refusal
from ..pkce import check_code_challenge
from ..policy import ServerPolicy
from ..pushed import INTERACTION_TTL, REQUEST_URI_PREFIX
from ..redirect_uri import match_redirect_uri
from ..request_object import open_request_object
from ..requests import scope_set, single_params
from ..resources import Resource
from ..targets import NO_RESOURCES, limit_scopes, registered_resources, resolve_audience
from ..tokens import AuthorizationCode
from ..users import ACR_MFA, Consent, acr_for

__all__ = [
    "CODE_TTL",
    "MAX_NONCE",
    "PROMPT_VALUES",
    "RESPONSE_MODES",
    "SCOPE_DESCRIPTIONS",
    "AuthorizationRequest",
    "AuthorizationResponse",
    "AuthorizeEndpoint",
    "ErrorPage",
    "NeedConsent",
    "NeedLogin",
    "SessionInfo",
    "ValidAuthorization",
    "check_authorization_request",
    "resolve_redirect_uri",
]

#: RFC 6749 §4.1.2 recommends at most ten minutes; we allow one.
CODE_TTL = 60
#: the longest ``nonce`` kept with a code (the stores' column is this wide)
MAX_NONCE = 512
RESPONSE_MODES = ("query", "form_post")
PROMPT_VALUES = ("none", "login", "consent")
IMPLICIT_REFUSED = ("response_type={rt} is not supported: the implicit and hybrid flows are removed in OAuth 2.1. "
                    "Use the Authorization Code flow with PKCE (response_type=code, code_challenge_method=S256)")
#: What each scope lets the application do, in plain words for the consent page.
SCOPE_DESCRIPTIONS: Mapping[str, str] = {
    "openid": "Sign you in and know who you are (a stable, anonymous account identifier)",
    "profile": "See your name and username",
    "email": "See your email address",
    "offline_access": "Keep access while you are away (until you revoke it on your account page)",
}
_MAX_AGE = re.compile(r"^\d{1,10}$")
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The signed-in user of the browser, as far as the web layer knows it."""

    user_id: str
    session_id: str
    auth_time: float
    amr: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    params: tuple[tuple[str, str], ...] = field(repr=False)
    session: SessionInfo | None = None
    #: the user signed in during this very request (login or second-factor form): prompt=login,
    #: max_age and acr_values are satisfied
    fresh_login: bool = False
    consent: Literal["allow", "deny"] | None = None
    client_ip: str | None = None
    #: an opaque value that identifies the browser (the web layer's CSRF cookie): a pushed request claimed by
    #: one browser is continued (sign-in, consent) only by that browser
    browser: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """Unknown client or unregistered redirect URI: tell the user, never redirect (RFC 6749 §4.1.2.1)."""

    error: str
    description: str


@dataclass(frozen=True, slots=True)
class AuthorizationResponse:
    """Back to the client: a code (RFC 6749 §4.1.2) or an error (§4.1.2.1), with ``iss`` (RFC 9207)."""

    redirect_uri: str
    response_mode: str
    params: tuple[tuple[str, str], ...] = field(repr=False)
    error: str | None = None

    def location(self) -> str:
        sep = "&" if "?" in self.redirect_uri else "?"
        return self.redirect_uri + sep + urlencode(self.params)


@dataclass(frozen=True, slots=True)
class NeedLogin:
    client: Client
    redirect_uri: str
    #: the parameters to send back with the login form
    params: tuple[tuple[str, str], ...] = field(repr=False)
    reason: str = "login"
    login_hint: str | None = None


@dataclass(frozen=True, slots=True)
class NeedConsent:
    client: Client
    redirect_uri: str
    user_id: str
    scopes: tuple[str, ...]
    new_scopes: tuple[str, ...]
    #: the parameters to send back with the consent form (prompt=login already satisfied is dropped)
    params: tuple[tuple[str, str], ...] = field(repr=False)


Outcome = ErrorPage | AuthorizationResponse | NeedLogin | NeedConsent


class _RequestUriNotSupported(OAuthError):
    """OIDC Core §3.1.2.6 ``request_uri_not_supported``: a request_uri that is not one of ours (a URL)."""

    error = "request_uri_not_supported"


class _Redirect(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class ValidAuthorization:
    """An authorization request that passed :func:`check_authorization_request`."""

    client: Client
    redirect_uri: str
    response_mode: str
    state: str | None
    scopes: frozenset[str]
    challenge: str
    nonce: str | None
    prompt: frozenset[str]
    max_age: int | None
    acr_values: tuple[str, ...]
    login_hint: str | None
    audience: tuple[str, ...]
    #: RFC 9449 §10: the code is bound to this DPoP key thumbprint
    dpop_jkt: str | None = None


def resolve_redirect_uri(params: Mapping[str, str], client: Client) -> str:
    """The request's redirect URI: as sent, or the client's only one when it sent none (RFC 6749 §3.1.2.3; OIDC
    requests must send it). Exact match against the registered URIs (loopback port rule, RFC 8252 §7.3).
    ``InvalidRequest`` otherwise: at ``/authorize`` an error page, never a redirect (RFC 6749 §4.1.2.1)."""
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None:
        if len(client.redirect_uris) != 1 or "openid" in params.get("scope", "").split(" "):
            raise InvalidRequest("the request has no redirect_uri")
        redirect_uri = client.redirect_uris[0]
    if not match_redirect_uri(redirect_uri, client.redirect_uris):
        raise InvalidRequest("the redirect_uri is not registered for this application")
    return redirect_uri


def check_authorization_request(params: Mapping[str, str], resources: list[str], client: Client,
                                redirect_uri: str, mode: str, state: str | None,
                                policy: ServerPolicy,
                                registered: Mapping[str, Resource] = NO_RESOURCES) -> ValidAuthorization:
    """Everything an authorization request must satisfy once its client and redirect URI are known: the same
    checks at ``/authorize`` and ``/par`` (RFC 9126 §2.1: "the AS MUST validate the pushed request as it would an
    authorization request"). ``registered``: the registered resources among ``resources``
    (:func:`~ostiary.core.targets.registered_resources`). Raises the ``OAuthError`` to send back."""
    if "request" in params or "request_uri" in params:
        raise InvalidRequest("request and request_uri cannot be nested")
    response_type = params.get("response_type")
    if not response_type:
        raise InvalidRequest("response_type is required (use response_type=code)")
    if response_type != "code":
        raise UnsupportedResponseType(IMPLICIT_REFUSED.format(rt=response_type[:40]))
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("this application may not use the authorization code flow")
    challenge = check_code_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
    scopes = scope_set(params.get("scope")) or client.scopes
    extra = scopes - client.scopes
    if extra:
        raise InvalidScope("scope not allowed for this client: " + " ".join(sorted(extra))[:200])
    if not scopes:
        raise InvalidScope("no scope requested and the client has none")
    # OIDC Core §3.1.2.1: nonce is optional in the code flow, and PKCE (required for every client here)
    # already binds the code to this request. When one is sent it goes into the id_token, and the client
    # checks it there. An empty value counts as absent (RFC 6749 §3.1).
    nonce = params.get("nonce") or None
    if nonce is not None and len(nonce) > MAX_NONCE:
        raise InvalidRequest(f"nonce must be at most {MAX_NONCE} characters")
    prompt = frozenset(params.get("prompt", "").split())
    unknown = prompt - set(PROMPT_VALUES)
    if unknown:
        raise InvalidRequest("unsupported prompt value: " + " ".join(sorted(unknown))[:100])
    if "none" in prompt and len(prompt) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other values")
    max_age: int | None = None
    if "max_age" in params:
        if not _MAX_AGE.match(params["max_age"]):
            raise InvalidRequest("max_age must be a non-negative integer")
        max_age = int(params["max_age"])
    if resources or client.audiences:
        audience: tuple[str, ...] = resolve_audience(client, resources, registered)
    else:
        audience = ()
    scopes = limit_scopes(scopes, audience, registered, requested=bool(scope_set(params.get("scope"))))
    if "openid" in scopes:
        if policy.fapi2 and client.id_token_signed_response_alg not in FAPI2_JWS_ALGS:
            raise UnauthorizedClient(f"FAPI 2.0 mode: this client's ID tokens would be signed with "
                                     f"{client.id_token_signed_response_alg} (FAPI 2.0 Security Profile 5.4.1 allows "
                                     "PS256, ES256 or EdDSA): set its id_token_signed_response_alg to ES256")
        audience = (*audience, policy.issuer + "/userinfo")
    dpop_jkt = params.get("dpop_jkt")
    if dpop_jkt is not None and not _JKT.fullmatch(dpop_jkt):
        raise InvalidRequest("dpop_jkt must be a JWK SHA-256 thumbprint (RFC 7638), base64url")
    return ValidAuthorization(client=client, redirect_uri=redirect_uri, response_mode=mode, state=state,
                              scopes=scopes, challenge=challenge, nonce=nonce, prompt=prompt, max_age=max_age,
                              acr_values=tuple(params.get("acr_values", "").split()),
                              login_hint=params.get("login_hint"), audience=audience or (client.client_id,),
                              dpop_jkt=dpop_jkt)


@dataclass(frozen=True, slots=True)
class _Pushed:
    """The pushed request (RFC 9126) this call continues."""

    request_id: str = field(repr=False)
    request_uri: str


class AuthorizeEndpoint:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def handle(self, req: AuthorizationRequest) -> Outcome:
        ctx = self.ctx
        try:
            params = single_params(req.params)
        except InvalidRequest as exc:
            return ErrorPage("invalid_request", exc.description)
        client_id = params.get("client_id")
        if not client_id:
            return ErrorPage("invalid_request", "the request has no client_id")
        client = await ctx.find_client(client_id)
        if client is None or client.disabled:
            return ErrorPage("invalid_client", "this application is not registered here")
        pairs = req.params
        pushed: _Pushed | None = None
        if "request_uri" in params and "request" in params:
            # RFC 9101 §5, OIDC Core §6.1: by value or by reference, not both (neither is used: no redirect)
            return ErrorPage("invalid_request", "send request or request_uri, not both")
        if "request_uri" in params:
            try:
                pushed, pairs = await self._pushed(params["request_uri"], client, req)
            except OAuthError as exc:
                return ErrorPage(exc.error, exc.description)
            params = single_params(pairs)  # validated at the push
        elif "request" in params:
            try:
                pairs = await open_request_object(params["request"], client, ctx.policy, ctx.jwks_fetcher,
                                                  ctx.clock.now())
                params = single_params(pairs)
            except OAuthError as exc:
                return self._outer_error(params, client, exc)
        try:
            redirect_uri = resolve_redirect_uri(params, client)
        except InvalidRequest as exc:
            return ErrorPage("invalid_request", exc.description)
        state = params.get("state")
        mode = params.get("response_mode", "query")
        if mode not in RESPONSE_MODES:
            return await self._conclude(pushed, self._redirect(redirect_uri, "query", state, "invalid_request",
                                                               "response_mode must be query or form_post"))
        try:
            if ctx.policy.fapi2:
                refusal = fapi2_client_refusal(client)
                if refusal is not None:
                    raise UnauthorizedClient(refusal)
            if pushed is None and ctx.policy.fapi2:
                raise InvalidRequest("FAPI 2.0 mode: authorization requests must be pushed first (FAPI 2.0 Security "
                                     "Profile 5.3.2.2, RFC 9126): POST them to /par and send the request_uri")
            if pushed is None and (ctx.policy.par_required or client.require_pushed_authorization_requests):
                raise InvalidRequest("authorization requests must be pushed first (RFC 9126): POST them to /par "
                                     "and send the request_uri")
            resources = [v for k, v in pairs if k == "resource"]
            registered = await registered_resources(ctx.store, resources)
            valid = check_authorization_request(params, resources, client, redirect_uri, mode, state, ctx.policy,
                                                registered)
            outcome = await self._decide(valid, pairs, req, pushed)
        except _Redirect as exc:
            outcome = self._redirect(redirect_uri, mode, state, exc.error, exc.description)
        except OAuthError as exc:
            outcome = self._redirect(redirect_uri, mode, state, exc.error, exc.description)
        return await self._conclude(pushed, outcome)

    async def _pushed(self, request_uri: str, client: Client,
                      req: AuthorizationRequest) -> tuple[_Pushed, tuple[tuple[str, str], ...]]:
        """RFC 9126 §4: the pushed request behind ``request_uri``, claimed by this browser the first time; the
        sign-in and consent forms (``fresh_login`` / ``consent``) continue a claimed one."""
        ctx = self.ctx
        if not request_uri.startswith(REQUEST_URI_PREFIX):
            raise _RequestUriNotSupported("request_uri must come from this server's /par endpoint (request_uri by "
                                          "reference to another URL is not supported)")
        request_id = token_hash(request_uri[len(REQUEST_URI_PREFIX):], ctx.secret_hash_key)
        row = await ctx.store.get_pushed_request(request_id)
        now = ctx.clock.now()
        unknown = "the request_uri is unknown, expired, already used, or was pushed by another client"
        if row is None or row.client_id != client.client_id or row.expires_at <= now:
            raise InvalidRequestUri(unknown)
        browser = token_hash(req.browser, ctx.secret_hash_key) if req.browser else None
        continuation = req.fresh_login or req.consent is not None
        if row.claimed_at is None:
            if continuation or not await ctx.store.claim_pushed_request(request_id, client.client_id, browser, now,
                                                                        now + INTERACTION_TTL):
                raise InvalidRequestUri(unknown)
        elif not continuation:
            raise InvalidRequestUri("the request_uri was already used (it is single use): push the request again")
        elif row.browser_hash is not None and (browser is None
                                               or not constant_time_equals(browser, row.browser_hash)):
            raise InvalidRequestUri("this authorization request was started in another browser")
        return _Pushed(request_id, request_uri), row.params

    def _outer_error(self, params: Mapping[str, str], client: Client, exc: OAuthError) -> Outcome:
        """A request object that cannot be used (RFC 9101 §6.3): back to the outer redirect URI when it is one of
        the client's, else an error page."""
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None or not match_redirect_uri(redirect_uri, client.redirect_uris):
            return ErrorPage(exc.error, exc.description)
        mode = params.get("response_mode", "query")
        return self._redirect(redirect_uri, mode if mode in RESPONSE_MODES else "query", params.get("state"),
                              exc.error, exc.description)

    async def _conclude(self, pushed: _Pushed | None, outcome: Outcome) -> Outcome:
        """A flow that ends (a code or an error goes back to the client) spends its pushed request."""
        if pushed is not None and isinstance(outcome, AuthorizationResponse) and outcome.error is not None:
            await self.ctx.store.spend_pushed_request(pushed.request_id)
        return outcome

    def _redirect(self, redirect_uri: str, mode: str, state: str | None, error: str,
                  description: str) -> AuthorizationResponse:
        out = [("error", error), ("error_description", description)]
        if state is not None:
            out.append(("state", state))
        out.append(("iss", self.ctx.policy.issuer))
        return AuthorizationResponse(redirect_uri, mode, tuple(out), error=error)

    async def _decide(self, v: ValidAuthorization, pairs: tuple[tuple[str, str], ...], req: AuthorizationRequest,
                      pushed: _Pushed | None) -> Outcome:
        ctx = self.ctx
        # the parameters the sign-in and consent forms send back: a pushed request stays on the server
        carried = pairs if pushed is None else (("client_id", v.client.client_id),
                                                ("request_uri", pushed.request_uri), ("redirect_uri", v.redirect_uri))
        now = ctx.clock.now()
        s = req.session
        reason: str | None = None
        if s is None:
            reason = "login"
        elif not req.fresh_login:
            if "login" in v.prompt:
                reason = "prompt=login"
            elif v.max_age is not None and now - s.auth_time > v.max_age:
                reason = "max_age"
            elif ACR_MFA in v.acr_values and "otp" not in s.amr:
                reason = "mfa"
        user = await ctx.store.get_user(s.user_id) if s is not None else None
        if s is not None and (user is None or user.disabled):
            reason = "login"
        if reason is not None or s is None:
            if "none" in v.prompt:
                raise _Redirect("login_required", "the user must sign in")
            return NeedLogin(v.client, v.redirect_uri, carried, reason or "login", v.login_hint)
        if req.consent == "deny":
            raise _Redirect("access_denied", "the user denied the request")
        onward = _onward(pairs, fresh=req.fresh_login)
        if pushed is not None and onward != pairs:
            await ctx.store.update_pushed_params(pushed.request_id, onward)
        if req.consent == "allow":
            old = await ctx.store.get_consent(s.user_id, v.client.client_id)
            await ctx.store.save_consent(Consent(
                user_id=s.user_id, client_id=v.client.client_id, scopes=v.scopes | (old.scopes if old else frozenset()),
                granted_at=old.granted_at if old else now, updated_at=now))
            ctx.audit.emit(AuditEvent(type="consent.granted", outcome="success", at=now,
                                      client_id=v.client.client_id, subject=s.user_id, ip=req.client_ip,
                                      detail={"scope": " ".join(sorted(v.scopes))}))
        elif v.client.dynamic:
            # a client nobody vetted (RFC 7591 registration): the user is asked every time, never silently
            # (prompt=none cannot be answered with a code), whatever was approved before
            if "none" in v.prompt:
                raise _Redirect("consent_required", "the user must approve this application")
            return NeedConsent(v.client, v.redirect_uri, s.user_id, tuple(sorted(v.scopes)),
                               tuple(sorted(v.scopes)), onward)
        elif not v.client.first_party:
            consent = await ctx.store.get_consent(s.user_id, v.client.client_id)
            granted = consent.scopes if consent else frozenset()
            if "consent" in v.prompt or not v.scopes <= granted:
                if "none" in v.prompt:
                    raise _Redirect("consent_required", "the user must approve this application")
                return NeedConsent(v.client, v.redirect_uri, s.user_id, tuple(sorted(v.scopes)),
                                   tuple(sorted(v.scopes - granted)), onward if pushed is None else carried)
        return await self._issue_code(v, s, req, pushed)

    async def _issue_code(self, v: ValidAuthorization, s: SessionInfo, req: AuthorizationRequest,
                          pushed: _Pushed | None) -> AuthorizationResponse:
        ctx = self.ctx
        if pushed is not None and not await ctx.store.spend_pushed_request(pushed.request_id):
            raise InvalidRequestUri("the request_uri was already used (it is single use): push the request again")
        now = ctx.clock.now()
        code = new_token(32)
        await ctx.store.add_code(AuthorizationCode(
            code_hash=token_hash(code, ctx.secret_hash_key), client_id=v.client.client_id,
            redirect_uri=v.redirect_uri, code_challenge=v.challenge, scopes=v.scopes, user_id=s.user_id,
            session_id=s.session_id, auth_time=s.auth_time, amr=s.amr, family_id=new_token(16),
            created_at=now, expires_at=now + CODE_TTL, nonce=v.nonce, acr=acr_for(s.amr), audience=v.audience,
            dpop_jkt=v.dpop_jkt))
        ctx.audit.emit(AuditEvent(type="authorization.code_issued", outcome="success", at=now,
                                  client_id=v.client.client_id, subject=s.user_id, ip=req.client_ip,
                                  detail={"scope": " ".join(sorted(v.scopes))}))
        out = [("code", code)]
        if v.state is not None:
            out.append(("state", v.state))
        out.append(("iss", ctx.policy.issuer))
        return AuthorizationResponse(v.redirect_uri, v.response_mode, tuple(out))


def _onward(params: tuple[tuple[str, str], ...], *, fresh: bool) -> tuple[tuple[str, str], ...]:
    """The parameters to continue with after consent: a login that just happened satisfied prompt=login,
    max_age and acr_values, so they are not asked again."""
    if not fresh:
        return params
    out: list[tuple[str, str]] = []
    for k, val in params:
        if k in ("max_age", "acr_values"):
            continue
        if k == "prompt":
            val = " ".join(p for p in val.split() if p != "login")
            if not val:
                continue
        out.append((k, val))
    return tuple(out)
