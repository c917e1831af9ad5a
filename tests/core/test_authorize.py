"""The authorization endpoint and the code grant in core, on the memory store with a fixed clock."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from ostiary._secrets import sha256_b64url
from ostiary.admin.users import UserAdmin, UserCreate
from ostiary.core.endpoints.authorize import (
    AuthorizationRequest,
    AuthorizationResponse,
    AuthorizeEndpoint,
    ErrorPage,
    NeedConsent,
    NeedLogin,
    SessionInfo,
)
from ostiary.core.errors import InvalidGrant

VERIFIER = "v" * 50
CB = "https://app.example.com/cb"


async def _setup(engine):  # type: ignore[no-untyped-def]
    cid, _ = await engine.client(client_type="public", grant_types=["authorization_code", "refresh_token"],
                                 scopes=["openid", "profile", "offline_access"], redirect_uris=[CB])
    user = await UserAdmin(engine.store, engine.clock).create_user(UserCreate(username="alice"), "password123")
    session = SessionInfo(user.user_id, "sid-1", engine.clock.now(), ("pwd",))
    return cid, user, session


def _params(cid: str, **kw: str) -> tuple[tuple[str, str], ...]:
    p = {"response_type": "code", "client_id": cid, "redirect_uri": CB, "scope": "openid offline_access",
         "state": "s", "nonce": "n", "code_challenge": sha256_b64url(VERIFIER), "code_challenge_method": "S256"}
    p.update(kw)
    return tuple((k, v) for k, v in p.items() if v)


async def test_login_consent_code_and_single_use(engine) -> None:  # type: ignore[no-untyped-def]
    cid, user, session = await _setup(engine)
    ep = AuthorizeEndpoint(engine.ctx)
    assert isinstance(await ep.handle(AuthorizationRequest(_params(cid))), NeedLogin)
    need = await ep.handle(AuthorizationRequest(_params(cid), session=session))
    assert isinstance(need, NeedConsent) and need.new_scopes == ("offline_access", "openid")
    out = await ep.handle(AuthorizationRequest(_params(cid), session=session, consent="allow"))
    assert isinstance(out, AuthorizationResponse) and out.error is None
    q = parse_qs(urlsplit(out.location()).query)
    assert q["state"] == ["s"] and q["iss"] == [engine.policy.issuer]
    form = {"grant_type": "authorization_code", "code": q["code"][0], "redirect_uri": CB, "code_verifier": VERIFIER,
            "client_id": cid}
    tokens = await engine.token(form)
    assert tokens.id_token and tokens.refresh_token
    try:
        await engine.token(form)
        raise AssertionError("replay accepted")
    except InvalidGrant:
        pass
    assert await engine.store.is_access_token_revoked(
        __import__("jwt").decode(tokens.access_token, options={"verify_signature": False})["jti"])
    assert any(e.type == "security.authorization_code_replay" for e in engine.audit.events)


async def test_codes_expire_after_a_minute(engine) -> None:  # type: ignore[no-untyped-def]
    cid, _, session = await _setup(engine)
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(_params(cid), session=session,
                                                                          consent="allow"))
    assert isinstance(out, AuthorizationResponse)
    code = parse_qs(urlsplit(out.location()).query)["code"][0]
    engine.clock.advance(61)
    try:
        await engine.token({"grant_type": "authorization_code", "code": code, "redirect_uri": CB,
                            "code_verifier": VERIFIER, "client_id": cid})
        raise AssertionError("expired code accepted")
    except InvalidGrant:
        pass


async def test_errors_page_or_redirect(engine) -> None:  # type: ignore[no-untyped-def]
    cid, _, session = await _setup(engine)
    ep = AuthorizeEndpoint(engine.ctx)
    assert isinstance(await ep.handle(AuthorizationRequest(_params("nope"))), ErrorPage)
    assert isinstance(await ep.handle(AuthorizationRequest(_params(cid, redirect_uri=CB + "x"))), ErrorPage)
    out = await ep.handle(AuthorizationRequest(_params(cid, response_type="token")))
    assert isinstance(out, AuthorizationResponse) and out.error == "unsupported_response_type"
    out = await ep.handle(AuthorizationRequest(_params(cid, code_challenge_method="plain")))
    assert isinstance(out, AuthorizationResponse) and out.error == "invalid_request"
    out = await ep.handle(AuthorizationRequest(_params(cid, prompt="none")))
    assert isinstance(out, AuthorizationResponse) and out.error == "login_required"
    out = await ep.handle(AuthorizationRequest(_params(cid, prompt="none"), session=session))
    assert isinstance(out, AuthorizationResponse) and out.error == "consent_required"
    engine.clock.advance(100)
    out = await ep.handle(AuthorizationRequest(_params(cid, max_age="50"), session=session))
    assert isinstance(out, NeedLogin) and out.reason == "max_age"
    out = await ep.handle(AuthorizationRequest(_params(cid, max_age="50", prompt="login"), session=session,
                                               fresh_login=True))
    assert isinstance(out, NeedConsent) and ("max_age", "50") not in out.params
