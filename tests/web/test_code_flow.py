"""Authorization Code + PKCE with OpenID Connect over HTTP, on SQLite and PostgreSQL: sign-in form with CSRF,
consent, callback, token exchange, id_token verified with joserfc against /jwks, userinfo; and every rule's
negative case."""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

import httpx
import pyotp
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from ..support import LiveServer
from ._codeflow import (
    REDIRECT,
    Browser,
    auth_params,
    exchange,
    forms,
    get_code,
    new_user,
    pkce,
    query,
    refresh,
    web_client,
)


def _verify_id_token(server: LiveServer, token: str) -> dict:
    jwks = KeySet.import_key_set(httpx.get(server.base_url + "/jwks").json())
    decoded = jose_jwt.decode(token, jwks, algorithms=["ES256", "RS256", "EdDSA"])
    return dict(decoded.claims)


def _userinfo(server: LiveServer, at: str) -> httpx.Response:
    return httpx.get(server.base_url + "/userinfo", headers={"Authorization": "Bearer " + at})


@pytest.fixture
def browser(server: LiveServer):
    b = Browser(server)
    yield b
    b.close()


def test_full_code_flow_with_openid_connect(server: LiveServer, browser: Browser) -> None:
    client = web_client(server, name="Photo Book")
    user = new_user(server)
    verifier, challenge = pkce()
    params = auth_params(client, challenge)
    r = browser.authorize(**params)
    assert r.status_code == 200
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert "login-form" in forms(r.text) and "Photo Book" in r.text
    r = browser.login(r, user["username"], user["password"])
    assert r.status_code == 200
    cookie = r.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie if c.startswith("ostiary_session="))
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie.replace("Lax", "lax")
    assert "consent-form" in forms(r.text)
    for text in ("Photo Book", "Sign you in", "See your email address", "Keep access while you are away"):
        assert text in r.text
    assert "http://127.0.0.1:9" in r.headers["content-security-policy"]  # redirect after the form is allowed
    r = browser.submit(r, "consent-form", decision="allow")
    assert r.status_code == 303
    q = query(r.headers["location"])
    assert r.headers["location"].startswith(REDIRECT + "?")
    assert q["state"] == params["state"] and q["iss"] == server.issuer and len(q["code"]) >= 43
    t = exchange(server, client, q["code"], verifier)
    assert t.status_code == 200, t.text
    body = t.json()
    assert t.headers["cache-control"] == "no-store"
    assert body["refresh_token"].startswith("ost_rt_")
    assert set(body["scope"].split()) == {"openid", "profile", "email", "offline_access"}
    claims = _verify_id_token(server, body["id_token"])
    assert claims["iss"] == server.issuer and claims["aud"] == client["client_id"]
    assert claims["sub"] == user["id"] and claims["nonce"] == params["nonce"]
    assert claims["amr"] == ["pwd"] and abs(claims["auth_time"] - time.time()) < 120
    assert claims["exp"] > claims["iat"]
    import base64
    import hashlib
    digest = hashlib.sha256(body["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    info = _userinfo(server, body["access_token"])
    assert info.status_code == 200, info.text
    assert info.json() == {"sub": user["id"], "name": "Test User", "preferred_username": user["username"],
                           "updated_at": info.json()["updated_at"], "email": user["email"], "email_verified": False}
    # remembered consent: the same scopes again go straight back with a code
    _, challenge2 = pkce()
    r = browser.authorize(**auth_params(client, challenge2))
    assert r.status_code == 302 and "code" in query(r.headers["location"])
    # a new scope asks again
    client_scoped = web_client(server, scopes=["openid", "profile", "email", "offline_access"])
    r = browser.authorize(**auth_params(client_scoped, challenge2, scope="openid"))
    assert "consent-form" in forms(r.text)


def test_scope_claims_follow_the_scopes(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user, scope="openid email")
    body = exchange(server, client, code, verifier).json()
    assert "refresh_token" not in body  # openid without offline_access: no refresh token
    assert _userinfo(server, body["access_token"]).json() == {"sub": user["id"], "email": user["email"],
                                                               "email_verified": False}


@pytest.mark.parametrize("response_type", ["token", "id_token", "id_token token", "code id_token", "code token",
                                           "code id_token token"])
def test_implicit_and_hybrid_are_refused(server: LiveServer, browser: Browser, response_type: str) -> None:
    client = web_client(server)
    _, challenge = pkce()
    r = browser.authorize(**auth_params(client, challenge, response_type=response_type))
    assert r.status_code == 302
    q = query(r.headers["location"])
    assert q["error"] == "unsupported_response_type"
    assert "Authorization Code" in q["error_description"] and "PKCE" in q["error_description"]
    assert q["iss"] == server.issuer and "state" in q


@pytest.mark.parametrize("change", [{"code_challenge_method": "plain"}, {"code_challenge_method": ""},
                                    {"code_challenge": ""}, {"code_challenge": "short"}])
def test_pkce_s256_is_required(server: LiveServer, browser: Browser, change: dict) -> None:
    client = web_client(server, client_type="confidential")
    _, challenge = pkce()
    params = {k: v for k, v in {**auth_params(client, challenge), **change}.items() if v}
    r = browser.authorize(**params)
    assert r.status_code == 302
    q = query(r.headers["location"])
    assert q["error"] == "invalid_request" and q["state"] == params["state"]


@pytest.mark.parametrize("nonce", [None, "", "n-" + secrets.token_hex(8)])
def test_nonce_is_optional_with_pkce_and_goes_into_the_id_token_when_sent(server: LiveServer, browser: Browser,
                                                                          nonce: str | None) -> None:
    """OIDC Core §3.1.2.1: nonce is optional in the code flow (PKCE binds the code); a public client that sends
    none signs in; one that sends a nonce finds it in the id_token (an empty one counts as absent)."""
    client = web_client(server)
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user, nonce=nonce) if nonce is not None else _no_nonce_code(
        browser, client, user)
    t = exchange(server, client, code, verifier)
    assert t.status_code == 200, t.text
    claims = _verify_id_token(server, t.json()["id_token"])
    assert claims["sub"] == user["id"]
    if nonce:
        assert claims["nonce"] == nonce
    else:
        assert "nonce" not in claims


def _no_nonce_code(browser: Browser, client: dict, user: dict) -> tuple[str, str, dict[str, str]]:
    verifier, challenge = pkce()
    params = auth_params(client, challenge)
    del params["nonce"]
    r = browser.login(browser.authorize(**params), user["username"], user["password"])
    r = browser.submit(r, "consent-form", decision="allow")
    assert r.status_code == 303, r.text[:500]
    return query(r.headers["location"])["code"], verifier, params


def test_an_overlong_nonce_is_invalid_request(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    _, challenge = pkce()
    r = browser.authorize(**auth_params(client, challenge, nonce="n" * 513))
    assert query(r.headers["location"])["error"] == "invalid_request"


@pytest.mark.parametrize("redirect_uri", ["https://evil.example.com/callback", REDIRECT + "/../evil", REDIRECT + "x",
                                          "http://localhost:9/callback", REDIRECT + "?next=https://evil.example.com",
                                          "http://127.0.0.1.evil.example.com/callback", "//evil.example.com"])
def test_unregistered_redirect_uri_shows_an_error_and_never_redirects(server: LiveServer, browser: Browser,
                                                                      redirect_uri: str) -> None:
    client = web_client(server)
    _, challenge = pkce()
    r = browser.authorize(**auth_params(client, challenge, redirect_uri=redirect_uri))
    assert r.status_code == 400 and "location" not in r.headers
    assert "not registered" in r.text


def test_unknown_client_shows_an_error_page(server: LiveServer, browser: Browser) -> None:
    _, challenge = pkce()
    r = browser.authorize(**auth_params({"client_id": "nobody-" + secrets.token_hex(3)}, challenge))
    assert r.status_code == 400 and "location" not in r.headers


def test_loopback_redirect_may_use_any_port(server: LiveServer, browser: Browser) -> None:
    client = web_client(server, redirect_uris=["http://127.0.0.1/callback"])
    user = new_user(server)
    _, challenge = pkce()
    params = auth_params(client, challenge, redirect_uri="http://127.0.0.1:53124/callback")
    r = browser.login(browser.authorize(**params), user["username"], user["password"])
    r = browser.submit(r, "consent-form", decision="allow")
    assert r.headers["location"].startswith("http://127.0.0.1:53124/callback?code=")


def test_deny_returns_access_denied(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    user = new_user(server)
    _, challenge = pkce()
    params = auth_params(client, challenge)
    r = browser.login(browser.authorize(**params), user["username"], user["password"])
    r = browser.submit(r, "consent-form", decision="deny")
    q = query(r.headers["location"])
    assert q["error"] == "access_denied" and q["state"] == params["state"] and q["iss"] == server.issuer


def test_prompt_none_and_prompt_login(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    user = new_user(server)
    _, challenge = pkce()
    q = query(browser.authorize(**auth_params(client, challenge, prompt="none")).headers["location"])
    assert q["error"] == "login_required"
    r = browser.login(browser.authorize(**auth_params(client, challenge)), user["username"], user["password"])
    assert "consent-form" in forms(r.text)
    q = query(browser.authorize(**auth_params(client, challenge, prompt="none")).headers["location"])
    assert q["error"] == "consent_required"
    browser.submit(r, "consent-form", decision="allow")
    q = query(browser.authorize(**auth_params(client, challenge, prompt="none")).headers["location"])
    assert "code" in q
    r = browser.authorize(**auth_params(client, challenge, prompt="login"))
    assert "login-form" in forms(r.text)
    r = browser.login(r, user["username"], user["password"])
    assert r.status_code == 303 and "code" in query(r.headers["location"])
    r = browser.authorize(**auth_params(client, challenge, max_age="0"))
    assert "login-form" in forms(r.text)


def test_code_exchange_rules(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    other = web_client(server)
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    wrong = exchange(server, client, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert exchange(server, client, code, verifier, redirect_uri=REDIRECT + "x").json()["error"] == "invalid_grant"
    assert exchange(server, other, code, verifier).json()["error"] == "invalid_grant"
    missing = httpx.post(server.base_url + "/token", data={"grant_type": "authorization_code", "code": code,
                                                          "redirect_uri": REDIRECT, "client_id": client["client_id"]})
    assert missing.json()["error"] == "invalid_request"
    first = exchange(server, client, code, verifier)
    assert first.status_code == 200, first.text
    assert _userinfo(server, first.json()["access_token"]).status_code == 200
    replay = exchange(server, client, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: the tokens issued from the first use are revoked
    assert _userinfo(server, first.json()["access_token"]).status_code == 401
    assert refresh(server, client, first.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_confidential_clients_need_pkce_and_their_secret(server: LiveServer, browser: Browser) -> None:
    client = web_client(server, client_type="confidential")
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    no_secret = exchange(server, client, code, verifier)
    assert no_secret.status_code == 401
    ok = httpx.post(server.base_url + "/token", auth=(client["client_id"], client["client_secret"]),
                    data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                          "code_verifier": verifier})
    assert ok.status_code == 200, ok.text
    rt = ok.json()["refresh_token"]
    intro = httpx.post(server.base_url + "/introspect", auth=(client["client_id"], client["client_secret"]),
                       data={"token": rt}).json()
    assert intro["active"] is True and intro["token_type"] == "refresh_token" and intro["sub"] == user["id"]
    r = httpx.post(server.base_url + "/revoke", auth=(client["client_id"], client["client_secret"]), data={"token": rt})
    assert r.status_code == 200
    intro = httpx.post(server.base_url + "/introspect", auth=(client["client_id"], client["client_secret"]),
                       data={"token": rt}).json()
    assert intro == {"active": False}
    at_intro = httpx.post(server.base_url + "/introspect", auth=(client["client_id"], client["client_secret"]),
                          data={"token": ok.json()["access_token"]}).json()
    assert at_intro == {"active": False}  # revoking the refresh token revoked its family


def test_refresh_rotation_reuse_and_client_binding(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    other = web_client(server)
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    first = exchange(server, client, code, verifier).json()
    # another client presenting it: refused, family unharmed
    assert refresh(server, other, first["refresh_token"]).json()["error"] == "invalid_grant"
    widened = refresh(server, client, first["refresh_token"], scope="openid admin")
    assert widened.json()["error"] == "invalid_scope"
    second = refresh(server, client, first["refresh_token"], scope="openid profile")
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["scope"] == "openid profile" and body["refresh_token"] != first["refresh_token"]
    assert _userinfo(server, body["access_token"]).json().keys() == {"sub", "name", "preferred_username",
                                                                     "updated_at"}
    # the narrowed refresh token still carries the original grant
    third = refresh(server, client, body["refresh_token"])
    assert third.status_code == 200 and "email" in third.json()["scope"].split()
    # reuse of a spent token revokes the whole family
    reuse = refresh(server, client, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert refresh(server, client, third.json()["refresh_token"]).json()["error"] == "invalid_grant"
    for at in (first["access_token"], body["access_token"], third.json()["access_token"]):
        assert _userinfo(server, at).status_code == 401


def test_userinfo_refuses_tokens_outside_the_header(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    at = exchange(server, client, code, verifier).json()["access_token"]
    r = httpx.get(server.base_url + "/userinfo?" + urlencode({"access_token": at}))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = httpx.post(server.base_url + "/userinfo", data={"access_token": at})
    assert r.status_code == 400
    r = httpx.get(server.base_url + "/userinfo")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.post(server.base_url + "/userinfo", headers={"Authorization": "Bearer " + at})
    assert r.status_code == 200


def test_forms_require_the_csrf_token(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    user = new_user(server)
    _, challenge = pkce()
    r = browser.authorize(**auth_params(client, challenge))
    form = forms(r.text)["login-form"]
    fields = {**form["fields"], "username": user["username"], "password": user["password"]}
    bad = browser.http.post("/login", data={**fields, "csrf_token": "forged"})
    assert bad.status_code == 403
    missing = browser.http.post("/login", data={k: v for k, v in fields.items() if k != "csrf_token"})
    assert missing.status_code == 403
    # another browser (no CSRF cookie) replaying the token is refused too
    with httpx.Client(base_url=server.base_url) as stranger:
        assert stranger.post("/login", data=fields).status_code == 403
    r = browser.http.post("/login", data=fields)
    consent = forms(r.text)["consent-form"]
    assert browser.http.post("/authorize/consent", data={**consent["fields"], "csrf_token": "x",
                                                         "decision": "allow"}).status_code == 403


def test_failed_logins_look_the_same_and_are_throttled(server: LiveServer, browser: Browser) -> None:
    user = new_user(server)
    page = browser.http.get("/login")
    unknown = browser.login(page, "nobody-" + secrets.token_hex(4), "whatever password")
    wrong = browser.login(page, user["username"], "wrong password")
    assert unknown.status_code == wrong.status_code == 400
    assert "Incorrect username or password." in unknown.text and "Incorrect username or password." in wrong.text
    for _ in range(5):
        r = browser.login(page, user["username"], "wrong password")
    assert r.status_code == 429 and "Too many attempts. Try again in 15 minutes." in r.text
    # even the right password is refused while throttled
    assert browser.login(page, user["username"], user["password"]).status_code == 429


def test_form_post_response_mode(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    user = new_user(server)
    _, challenge = pkce()
    params = auth_params(client, challenge, response_mode="form_post")
    r = browser.login(browser.authorize(**params), user["username"], user["password"])
    r = browser.submit(r, "consent-form", decision="allow")
    assert r.status_code == 200
    form = forms(r.text)["form-post"]
    assert form["action"] == REDIRECT
    assert set(form["fields"]) == {"code", "state", "iss"} and form["fields"]["state"] == params["state"]
    csp = r.headers["content-security-policy"]
    assert "form-action 'self' http://127.0.0.1:9" in csp and "script-src 'self'" in csp and "unsafe" not in csp


def test_totp_enrolment_and_second_factor(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    user = new_user(server)
    page = browser.http.get("/login")
    r = browser.login(page, user["username"], user["password"])
    assert r.status_code == 303 and r.headers["location"] == "/account"
    enrol = browser.http.get("/account/totp")
    assert enrol.status_code == 200 and "<svg" in enrol.text
    secret = enrol.text.split('id="totp-secret">')[1].split("<")[0]
    r = browser.submit(enrol, "totp-enroll-form", code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert r.status_code == 400
    r = browser.submit(enrol, "totp-enroll-form", code=pyotp.TOTP(secret).now())
    assert r.status_code == 200, r.text
    codes = r.text.split('id="recovery-codes">')[1].split("</code>")[0].split()
    assert len(codes) == 10
    # a new sign-in now asks for the second factor
    other = Browser(server)
    try:
        verifier, challenge = pkce()
        params = auth_params(client, challenge)
        r = other.login(other.authorize(**params), user["username"], user["password"])
        assert "totp-form" in forms(r.text)
        assert query(other.authorize(**{**params, "prompt": "none"}).headers["location"])["error"] == "login_required"
        bad = other.submit(r, "totp-form", code="12345x")
        assert bad.status_code == 400
        r = other.submit(r, "totp-form", code=codes[0])  # a recovery code, once
        r = other.submit(r, "consent-form", decision="allow")
        q = query(r.headers["location"])
        claims = _verify_id_token(server, exchange(server, client, q["code"], verifier).json()["id_token"])
        assert claims["amr"] == ["pwd", "otp"] and claims["acr"] == "mfa"
    finally:
        other.close()
    third = Browser(server)
    try:
        r = third.login(third.http.get("/login"), user["username"], user["password"])
        assert third.submit(r, "totp-form", code=codes[0]).status_code == 400  # spent
    finally:
        third.close()


def test_account_page_lists_and_revokes_applications(server: LiveServer, browser: Browser) -> None:
    client = web_client(server, name="Revocable App")
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    tokens = exchange(server, client, code, verifier).json()
    page = browser.http.get("/account")
    assert page.status_code == 200 and "Revocable App" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    form = forms(page.text)
    revoke = next(f for f in form.values() if f["action"] == "/account/apps/revoke"
                  and f["fields"]["client_id"] == client["client_id"])
    r = browser.http.post("/account/apps/revoke", data=revoke["fields"])
    assert r.status_code == 200 and "Access revoked." in r.text
    assert refresh(server, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert _userinfo(server, tokens["access_token"]).status_code == 401
    _, challenge = pkce()
    assert "consent-form" in forms(browser.authorize(**auth_params(client, challenge)).text)


def test_rp_initiated_logout(server: LiveServer, browser: Browser) -> None:
    client = web_client(server, post_logout_redirect_uris=["https://app.example.com/bye"])
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    id_token = exchange(server, client, code, verifier).json()["id_token"]
    bad = browser.http.get("/logout?" + urlencode({"id_token_hint": id_token,
                                                    "post_logout_redirect_uri": "https://evil.example.com/"}))
    assert bad.status_code == 400 and "location" not in bad.headers
    r = browser.http.get("/logout?" + urlencode({"id_token_hint": id_token, "state": "s1",
                                                  "post_logout_redirect_uri": "https://app.example.com/bye"}))
    assert r.status_code == 303 and r.headers["location"] == "https://app.example.com/bye?state=s1"
    assert browser.http.get("/account").status_code == 303  # signed out
    _, challenge = pkce()
    assert query(browser.authorize(**auth_params(client, challenge, prompt="none")).headers["location"])["error"] \
        == "login_required"


def test_logout_without_hint_asks_first(server: LiveServer, browser: Browser) -> None:
    user = new_user(server)
    browser.login(browser.http.get("/login"), user["username"], user["password"])
    r = browser.http.get("/logout")
    assert "logout-form" in forms(r.text)
    assert browser.http.get("/account").status_code == 200
    r = browser.submit(r, "logout-form")
    assert r.status_code == 200 and "signed out" in r.text
    assert browser.http.get("/account").status_code == 303


def test_discovery_lists_the_code_flow(server: LiveServer) -> None:
    meta = httpx.get(server.base_url + "/.well-known/openid-configuration").json()
    assert meta["authorization_endpoint"] == server.issuer + "/authorize"
    assert meta["userinfo_endpoint"] == server.issuer + "/userinfo"
    assert meta["end_session_endpoint"] == server.issuer + "/logout"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_modes_supported"] == ["query", "form_post"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"authorization_code", "refresh_token"} <= set(meta["grant_types_supported"])
    assert "implicit" not in meta["grant_types_supported"]
    assert {"openid", "profile", "email", "offline_access"} == set(meta["scopes_supported"])


@pytest.mark.parametrize("action", ["/account/sessions/end", "/account/apps/revoke", "/account/totp/disable"])
def test_account_forms_need_their_csrf_token_and_a_session(server: LiveServer, action: str) -> None:
    user = new_user(server)
    signed_in = Browser(server)
    signed_out = Browser(server)
    try:
        signed_in.login(signed_in.http.get("/login"), user["username"], user["password"])
        assert signed_in.http.get("/account").status_code == 200
        assert signed_in.http.post(action, data={"session_id": "x", "client_id": "x"}).status_code == 403
        csrf = forms(signed_out.http.get("/login").text)["login-form"]["fields"]["csrf_token"]
        r = signed_out.http.post(action, data={"csrf_token": csrf, "session_id": "x", "client_id": "x"})
        assert r.status_code == 303 and r.headers["location"] == "/login"
    finally:
        signed_in.close()
        signed_out.close()

