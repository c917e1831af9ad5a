"""Pushed authorization requests (RFC 9126), signed request objects (RFC 9101) and FAPI 2.0 mode, in core:
the memory store and a fixed clock."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ostiary._secrets import sha256_b64url, token_hash
from ostiary.admin.service import ClientUpdate
from ostiary.admin.users import UserAdmin, UserCreate
from ostiary.core import jose
from ostiary.core.client_auth import ASSERTION_TYPE
from ostiary.core.endpoints.authorize import (
    AuthorizationRequest,
    AuthorizationResponse,
    AuthorizeEndpoint,
    ErrorPage,
    NeedConsent,
    NeedLogin,
    SessionInfo,
)
from ostiary.core.endpoints.metadata import server_metadata
from ostiary.core.endpoints.par import PushedAuthorizationEndpoint
from ostiary.core.endpoints.token import TokenEndpoint
from ostiary.core.errors import (
    InvalidClient,
    InvalidRequest,
    InvalidRequestObject,
    InvalidScope,
    OAuthError,
    UnauthorizedClient,
)
from ostiary.core.grants import default_grants
from ostiary.core.requests import EndpointRequest
from ostiary.core.users import Consent

from .conftest import ISSUER, Engine

VERIFIER = "v" * 50
CB = "https://app.example.com/cb"


@dataclasses.dataclass
class Setup:
    cid: str
    key: jose.PrivateKey
    session: SessionInfo
    secret_cid: str
    secret: str


async def _setup(engine: Engine) -> Setup:
    key = jose.generate_private_key("ES256")
    cid, _ = await engine.client(token_endpoint_auth_method="private_key_jwt",
                                 jwks={"keys": [jose.public_jwk(key, "k1")]},
                                 grant_types=["authorization_code", "refresh_token"],
                                 scopes=["openid", "profile", "offline_access"], redirect_uris=[CB])
    scid, secret = await engine.client(grant_types=["authorization_code"], scopes=["openid"], redirect_uris=[CB])
    assert secret is not None
    user = await UserAdmin(engine.store, engine.clock).create_user(UserCreate(username="alice"), "password123")
    session = SessionInfo(user.user_id, "sid-1", engine.clock.now(), ("pwd",))
    return Setup(cid, key, session, scid, secret)


def _auth(**kw: str) -> dict[str, str]:
    p = {"response_type": "code", "redirect_uri": CB, "scope": "openid offline_access", "state": "s",
         "nonce": "n", "code_challenge": sha256_b64url(VERIFIER), "code_challenge_method": "S256"}
    p.update(kw)
    return {k: v for k, v in p.items() if v}


def _assertion(engine: Engine, s: Setup) -> dict[str, str]:
    now = int(engine.clock.now())
    claims = {"iss": s.cid, "sub": s.cid, "aud": ISSUER, "iat": now, "exp": now + 60,
              "jti": secrets.token_urlsafe(16)}
    return {"client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jose.sign_jwt(claims, s.key, alg="ES256", kid="k1")}


async def _push(engine: Engine, s: Setup, dpop: str | None = None, **params: str) -> str:
    form = {"client_id": s.cid, **_assertion(engine, s), **params}
    req = EndpointRequest(endpoint=ISSUER + "/par", params=tuple(form.items()), dpop=dpop)
    res = await PushedAuthorizationEndpoint(engine.ctx).handle(req)
    assert res.expires_in == engine.policy.par_expires_in <= 60
    assert res.request_uri.startswith("urn:ietf:params:oauth:request_uri:")
    return res.request_uri


def _request_object(engine: Engine, s: Setup, key: Any = None, alg: str = "ES256", **claims: Any) -> str:
    now = int(engine.clock.now())
    body: dict[str, Any] = {"iss": s.cid, "aud": ISSUER, "exp": now + 300, "nbf": now, "iat": now,
                            "client_id": s.cid, **_auth()}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jose.sign_jwt(body, key or s.key, alg=alg, kid="k1", typ="oauth-authz-req+jwt")


def _code(out: object) -> str:
    assert isinstance(out, AuthorizationResponse) and out.error is None, out
    q = parse_qs(urlsplit(out.location()).query)
    assert q["iss"] == [ISSUER] and q["state"] == ["s"]
    return q["code"][0]


async def test_pushed_request_runs_the_flow_once(engine: Engine) -> None:
    s = await _setup(engine)
    uri = await _push(engine, s, **_auth())
    ep = AuthorizeEndpoint(engine.ctx)
    first = AuthorizationRequest((("client_id", s.cid), ("request_uri", uri)), browser="b1")
    need = await ep.handle(first)
    assert isinstance(need, NeedLogin)
    # the sign-in form carries the reference only, never the pushed parameters
    assert dict(need.params) == {"client_id": s.cid, "request_uri": uri, "redirect_uri": CB}
    # a second plain /authorize with it is refused: single use
    again = await ep.handle(first)
    assert isinstance(again, ErrorPage) and again.error == "invalid_request_uri"
    # the sign-in form continues it (same browser), then the consent form
    consent = await ep.handle(AuthorizationRequest(need.params, session=s.session, fresh_login=True, browser="b1"))
    assert isinstance(consent, NeedConsent)
    elsewhere = await ep.handle(AuthorizationRequest(consent.params, session=s.session, consent="allow",
                                                     browser="b2"))
    assert isinstance(elsewhere, ErrorPage) and elsewhere.error == "invalid_request_uri"
    code = _code(await ep.handle(AuthorizationRequest(consent.params, session=s.session, consent="allow",
                                                      browser="b1")))
    # spent: neither the forms nor /authorize can use it again
    for req in (AuthorizationRequest(consent.params, session=s.session, consent="allow", browser="b1"), first):
        out = await ep.handle(req)
        assert isinstance(out, ErrorPage) and out.error == "invalid_request_uri"
    tokens = await engine.token({"grant_type": "authorization_code", "code": code, "redirect_uri": CB,
                                 "code_verifier": VERIFIER, **_assertion(engine, s)})
    assert tokens.access_token and tokens.id_token


async def test_pushed_values_win_and_the_client_must_match(engine: Engine) -> None:
    s = await _setup(engine)
    uri = await _push(engine, s, **_auth(state="pushed"))
    ep = AuthorizeEndpoint(engine.ctx)
    other = await ep.handle(AuthorizationRequest((("client_id", s.secret_cid), ("request_uri", uri))))
    assert isinstance(other, ErrorPage) and other.error == "invalid_request_uri"
    await engine.store.save_consent(Consent(
        user_id=s.session.user_id, client_id=s.cid, scopes=frozenset({"openid", "offline_access"}),
        granted_at=engine.clock.now(), updated_at=engine.clock.now()))
    out = await ep.handle(AuthorizationRequest((("client_id", s.cid), ("request_uri", uri), ("state", "outer"),
                                                ("scope", "profile")), session=s.session))
    assert isinstance(out, AuthorizationResponse) and out.error is None
    assert parse_qs(urlsplit(out.location()).query)["state"] == ["pushed"]


async def test_pushed_request_expires(engine: Engine) -> None:
    s = await _setup(engine)
    uri = await _push(engine, s, **_auth())
    engine.clock.advance(engine.policy.par_expires_in + 1)
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest((("client_id", s.cid),
                                                                           ("request_uri", uri))))
    assert isinstance(out, ErrorPage) and out.error == "invalid_request_uri"


async def test_request_uri_by_reference_is_not_supported(engine: Engine) -> None:
    s = await _setup(engine)
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(
        (("client_id", s.cid), ("request_uri", "https://app.example.com/request.jwt"))))
    assert isinstance(out, ErrorPage) and out.error == "request_uri_not_supported"


async def test_par_validates_as_authorize_would(engine: Engine) -> None:
    s = await _setup(engine)
    with pytest.raises(InvalidRequest):
        await _push(engine, s, **_auth(code_challenge_method="plain"))
    with pytest.raises(InvalidScope):
        await _push(engine, s, **_auth(scope="openid admin"))
    with pytest.raises(InvalidRequest):
        await _push(engine, s, **_auth(redirect_uri=CB + "/other"))
    with pytest.raises(InvalidRequest):
        await _push(engine, s, **_auth(request_uri="urn:ietf:params:oauth:request_uri:x"))
    with pytest.raises(InvalidClient):  # a secret client with a wrong secret
        await PushedAuthorizationEndpoint(engine.ctx).handle(EndpointRequest(
            endpoint=ISSUER + "/par", params=tuple({"client_id": s.secret_cid, "client_secret": "nope",
                                                    **_auth()}.items())))


async def test_required_par_per_client_and_globally(engine: Engine) -> None:
    s = await _setup(engine)
    plain = AuthorizationRequest((("client_id", s.cid), *_auth().items()), session=s.session)
    assert isinstance(await AuthorizeEndpoint(engine.ctx).handle(plain), NeedConsent)
    client = await engine.store.get_client(s.cid)
    assert client is not None
    await engine.store.update_client(dataclasses.replace(client, require_pushed_authorization_requests=True))
    out = await AuthorizeEndpoint(engine.ctx).handle(plain)
    assert isinstance(out, AuthorizationResponse) and out.error == "invalid_request"
    assert "pushed" in dict(out.params)["error_description"]
    engine.policy = dataclasses.replace(engine.policy, require_pushed_authorization_requests=True)
    other = AuthorizationRequest((("client_id", s.secret_cid), *_auth(scope="openid").items()), session=s.session)
    out = await AuthorizeEndpoint(engine.ctx).handle(other)
    assert isinstance(out, AuthorizationResponse) and out.error == "invalid_request"
    assert server_metadata(engine.policy, default_grants())["require_pushed_authorization_requests"] is True


# --- request objects (RFC 9101) -------------------------------------------------------------------------------

async def test_a_request_object_replaces_the_outer_parameters(engine: Engine) -> None:
    s = await _setup(engine)
    ro = _request_object(engine, s, state="inner", resource=None)
    need = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(
        (("client_id", s.cid), ("request", ro), ("state", "outer"), ("scope", "profile")), session=s.session))
    assert isinstance(need, NeedConsent) and need.scopes == ("offline_access", "openid")
    assert dict(need.params)["state"] == "inner" and "request" not in dict(need.params)
    uri = await _push(engine, s, request=_request_object(engine, s))
    assert isinstance(await AuthorizeEndpoint(engine.ctx).handle(
        AuthorizationRequest((("client_id", s.cid), ("request_uri", uri)), session=s.session)), NeedConsent)


def _hs256(claims: dict[str, Any], secret: str) -> str:
    import jwt

    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "k1"})


def _unsigned(claims: dict[str, Any]) -> str:
    import jwt

    return jwt.encode(claims, None, algorithm="none")


@pytest.mark.parametrize("case", ["none", "hs256", "wrong_aud", "aud_list", "expired", "far_exp", "no_exp",
                                  "nbf_future", "nbf_old", "iss", "client_id", "unknown_key", "garbage", "nested",
                                  "typ", "object_value"])
async def test_request_object_negatives(engine: Engine, case: str) -> None:
    s = await _setup(engine)
    now = int(engine.clock.now())
    base: dict[str, Any] = {"iss": s.cid, "aud": ISSUER, "exp": now + 300, "client_id": s.cid, **_auth()}
    token = {
        "none": lambda: _unsigned(base),
        "hs256": lambda: _hs256(base, s.secret),
        "wrong_aud": lambda: _request_object(engine, s, aud=ISSUER + "/authorize"),
        "aud_list": lambda: _request_object(engine, s, aud=[ISSUER, "https://other.example"]),
        "expired": lambda: _request_object(engine, s, exp=now - 120),
        "far_exp": lambda: _request_object(engine, s, exp=now + 7200),
        "no_exp": lambda: jose.sign_jwt({k: v for k, v in base.items() if k != "exp"}, s.key, alg="ES256",
                                        kid="k1"),
        "nbf_future": lambda: _request_object(engine, s, nbf=now + 600),
        "nbf_old": lambda: _request_object(engine, s, nbf=now - 7200),
        "iss": lambda: _request_object(engine, s, iss=s.secret_cid),
        "client_id": lambda: _request_object(engine, s, client_id=s.secret_cid),
        "unknown_key": lambda: _request_object(engine, s, key=jose.generate_private_key("ES256")),
        "garbage": lambda: "not.a.jwt",
        "nested": lambda: _request_object(engine, s, request_uri="urn:x"),
        "typ": lambda: jose.sign_jwt(base, s.key, alg="ES256", kid="k1", typ="dpop+jwt"),
        "object_value": lambda: _request_object(engine, s, state={"userinfo": {}}),
    }[case]()
    # at /authorize: back to the (registered) outer redirect URI with invalid_request_object
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(
        (("client_id", s.cid), ("request", token), ("redirect_uri", CB), ("state", "outer")), session=s.session))
    assert isinstance(out, AuthorizationResponse) and out.error == "invalid_request_object", out
    # without a usable outer redirect URI: an error page
    page = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest((("client_id", s.cid),
                                                                           ("request", token))))
    assert isinstance(page, ErrorPage) and page.error == "invalid_request_object"
    # at /par: the JSON error
    with pytest.raises(InvalidRequestObject):
        await _push(engine, s, request=token)


async def test_a_client_without_keys_cannot_send_request_objects(engine: Engine) -> None:
    s = await _setup(engine)
    now = int(engine.clock.now())
    token = _hs256({"iss": s.secret_cid, "aud": ISSUER, "exp": now + 60, **_auth(scope="openid")}, s.secret)
    page = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest((("client_id", s.secret_cid),
                                                                           ("request", token))))
    assert isinstance(page, ErrorPage) and page.error == "invalid_request_object"


# --- FAPI 2.0 mode --------------------------------------------------------------------------------------------

async def test_fapi2_mode(engine: Engine) -> None:
    s = await _setup(engine)
    engine.policy = dataclasses.replace(engine.policy, profile="fapi2")
    # a client registered before the switch, whose ID tokens are RS256: refused for openid requests (FAPI 2.0
    # Security Profile §5.4.1), with a message saying what to change
    with pytest.raises(UnauthorizedClient, match="id_token_signed_response_alg"):
        await _push(engine, s, **_auth())
    await engine.admin.update_client(s.cid, ClientUpdate(id_token_signed_response_alg="ES256"))
    ep = AuthorizeEndpoint(engine.ctx)
    plain = await ep.handle(AuthorizationRequest((("client_id", s.cid), *_auth().items()), session=s.session))
    assert isinstance(plain, AuthorizationResponse) and plain.error == "invalid_request"
    assert "FAPI 2.0" in dict(plain.params)["error_description"]
    with pytest.raises(InvalidRequest, match="redirect_uri"):
        await _push(engine, s, **_auth(redirect_uri=""))
    with pytest.raises(InvalidClient, match="FAPI 2.0"):  # client_secret_post
        await PushedAuthorizationEndpoint(engine.ctx).handle(EndpointRequest(
            endpoint=ISSUER + "/par", params=tuple({"client_id": s.secret_cid, "client_secret": s.secret,
                                                    **_auth(scope="openid")}.items())))
    uri = await _push(engine, s, **_auth())
    await engine.store.save_consent(Consent(
        user_id=s.session.user_id, client_id=s.cid, scopes=frozenset({"openid", "offline_access"}),
        granted_at=engine.clock.now(), updated_at=engine.clock.now()))
    code = _code(await ep.handle(AuthorizationRequest((("client_id", s.cid), ("request_uri", uri)),
                                                      session=s.session)))
    stored = await engine.store.get_code(token_hash(code, engine.hash_key))
    assert stored is not None and stored.expires_at - stored.created_at <= 60  # FAPI 2.0: codes live <= 60 s
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB, "code_verifier": VERIFIER,
            **_assertion(engine, s)}
    with pytest.raises(InvalidRequest, match="sender-constrained"):
        await TokenEndpoint(engine.ctx, default_grants()).handle(
            EndpointRequest(endpoint=ISSUER + "/token", params=tuple(form.items())))
    meta = server_metadata(engine.policy, default_grants())
    assert meta["require_pushed_authorization_requests"] is True
    assert meta["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert meta["authorization_response_iss_parameter_supported"] is True


async def test_fapi2_refuses_public_clients(engine: Engine) -> None:
    pub, _ = await engine.client(client_type="public", grant_types=["authorization_code"], scopes=["openid"],
                                 redirect_uris=[CB])
    engine.policy = dataclasses.replace(engine.policy, profile="fapi2")
    with pytest.raises(InvalidClient, match="public clients"):
        await PushedAuthorizationEndpoint(engine.ctx).handle(EndpointRequest(
            endpoint=ISSUER + "/par", params=tuple({"client_id": pub, **_auth(scope="openid")}.items())))
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest((("client_id", pub),
                                                                           *_auth(scope="openid").items())))
    assert isinstance(out, AuthorizationResponse) and out.error == "unauthorized_client"
    with pytest.raises(OAuthError, match="public clients"):
        await engine.token({"grant_type": "authorization_code", "code": "x", "redirect_uri": CB,
                            "code_verifier": VERIFIER, "client_id": pub})


async def test_a_pushed_prompt_login_is_satisfied_by_the_sign_in(engine: Engine) -> None:
    """The sign-in that prompt=login asked for is recorded on the pushed request: the consent form that follows
    continues to the code instead of asking for another sign-in."""
    s = await _setup(engine)
    uri = await _push(engine, s, **_auth(prompt="login", max_age="0"))
    ep = AuthorizeEndpoint(engine.ctx)
    need = await ep.handle(AuthorizationRequest((("client_id", s.cid), ("request_uri", uri)), session=s.session,
                                                browser="b"))
    assert isinstance(need, NeedLogin) and need.reason == "prompt=login"
    engine.clock.advance(5)
    consent = await ep.handle(AuthorizationRequest(need.params, session=s.session, fresh_login=True, browser="b"))
    assert isinstance(consent, NeedConsent)
    _code(await ep.handle(AuthorizationRequest(consent.params, session=s.session, consent="allow", browser="b")))


async def test_fapi2_accepts_certificate_bound_tokens_instead_of_dpop(engine: Engine) -> None:
    from ostiary.core import mtls

    from .test_mtls import NOW, _cert, _der, _token

    engine.clock.set(NOW.timestamp())
    engine.policy = dataclasses.replace(engine.policy, profile="fapi2")
    root = _cert("Root", ca=True)
    anchors = mtls.TrustAnchors((root[0],))
    cert = _der(_cert("svc", issuer=root)[0])
    bound, _ = await engine.client(token_endpoint_auth_method="tls_client_auth", tls_client_auth_subject_dn="CN=svc,O=Ex",
                                   tls_client_certificate_bound_access_tokens=True)
    t = await _token(engine, {"grant_type": "client_credentials", "client_id": bound}, cert, anchors)
    assert jose.decode_unverified(t.access_token)[1]["cnf"] == {"x5t#S256": mtls.certificate_thumbprint(cert)}
    unbound, _ = await engine.client(token_endpoint_auth_method="tls_client_auth",
                                     tls_client_auth_subject_dn="CN=svc,O=Ex")
    with pytest.raises(InvalidRequest, match="sender-constrained"):  # a certificate alone binds nothing
        await _token(engine, {"grant_type": "client_credentials", "client_id": unbound}, cert, anchors)
