"""Authorization Code + PKCE in a real browser (Chromium): sign-in, TOTP, consent, the redirect to the relying
party (allowed by the pages' CSP form-action), form_post with its script, prompt=none and RP-initiated logout."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import httpx
import pyotp
import pytest

from ..support import LiveServer
from ..web._codeflow import new_user, pkce
from ._flow import RelyingParty, authorize_url, enrol_totp, exchange, register, sign_in, verify_id_token

pytestmark = pytest.mark.browser

def test_sign_in_with_totp_consent_and_tokens(live: LiveServer, rp: RelyingParty, chromium: Any, page: Any) -> None:
    client = register(live, rp, name="Browser Photo Book")
    user = new_user(live, name="Brow Ser")
    secret = enrol_totp(page, live, user)
    ctx = chromium.new_context()  # a second browser: a fresh sign-in
    try:
        p2 = ctx.new_page()
        verifier, challenge = pkce()
        url, params = authorize_url(live, rp, client, challenge)
        p2.goto(url)
        assert "Browser Photo Book" in p2.content()
        sign_in(p2, user)
        p2.wait_for_selector("#totp-form")
        p2.fill("#code", pyotp.TOTP(secret).now())
        p2.click("#totp-submit")
        p2.wait_for_selector("#consent-form")
        assert p2.text_content("#consent-client").strip() == "Browser Photo Book"
        scopes = {li.get_attribute("data-scope") for li in p2.query_selector_all("#consent-scopes li[data-scope]")}
        assert {"openid", "profile", "email", "offline_access"} >= scopes >= {"profile", "email", "offline_access"}
        p2.click("#consent-allow")
        p2.wait_for_url(re.compile(re.escape(rp.callback) + r"\?"))
        p2.wait_for_selector("#rp-callback")
        q = rp.last()
        assert q["state"] == params["state"] and q["iss"] == live.issuer and len(q["code"]) >= 43
        assert "error" not in q
        tokens = exchange(live, client, rp, q["code"], verifier)
        assert tokens["token_type"].lower() in ("bearer", "dpop") and tokens["refresh_token"].startswith("ost_rt_")
        claims = verify_id_token(live, tokens["id_token"])
        assert claims["iss"] == live.issuer and claims["aud"] == client["client_id"]
        assert claims["sub"] == user["id"] and claims["nonce"] == params["nonce"]
        assert claims["amr"] == ["pwd", "otp"] and claims["acr"] == "mfa" and claims["sid"]
        info = httpx.get(live.base_url + "/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]})
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == user["id"] and info.json()["name"] == "Brow Ser"
        assert info.json()["email"] == user["email"]
        # the code is single use
        again = httpx.post(live.base_url + "/token", data={
            "grant_type": "authorization_code", "code": q["code"], "redirect_uri": rp.callback,
            "code_verifier": verifier, "client_id": client["client_id"]})
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    finally:
        ctx.close()


def test_deny_comes_back_as_access_denied(live: LiveServer, rp: RelyingParty, page: Any) -> None:
    client = register(live, rp)
    user = new_user(live)
    _, challenge = pkce()
    url, params = authorize_url(live, rp, client, challenge)
    page.goto(url)
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    page.click("#consent-deny")
    page.wait_for_selector("#rp-callback")
    q = rp.last()
    assert q["error"] == "access_denied" and q["state"] == params["state"] and q["iss"] == live.issuer
    assert "code" not in q


def test_wrong_password_stays_on_the_login_page(live: LiveServer, rp: RelyingParty, page: Any) -> None:
    client = register(live, rp)
    user = new_user(live)
    _, challenge = pkce()
    page.goto(authorize_url(live, rp, client, challenge)[0])
    sign_in(page, {**user, "password": "not the password"})
    page.wait_for_selector("#login-error")
    assert "Incorrect username or password." in page.text_content("#login-error")
    assert page.locator("#login-form").count() == 1


def test_prompt_none_with_and_without_a_session(live: LiveServer, rp: RelyingParty, page: Any) -> None:
    client = register(live, rp)
    user = new_user(live)
    _, challenge = pkce()
    url, params = authorize_url(live, rp, client, challenge, prompt="none")
    page.goto(url)
    page.wait_for_selector("#rp-callback")
    q = rp.last()
    assert q["error"] == "login_required" and q["state"] == params["state"] and q["iss"] == live.issuer
    page.goto(authorize_url(live, rp, client, challenge)[0])
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    page.click("#consent-allow")
    page.wait_for_selector("#rp-callback")
    assert "code" in rp.last()
    verifier, challenge = pkce()
    url, params = authorize_url(live, rp, client, challenge, prompt="none")
    page.goto(url)
    page.wait_for_selector("#rp-callback")
    q = rp.last()
    assert q["state"] == params["state"] and "error" not in q
    assert verify_id_token(live, exchange(live, client, rp, q["code"], verifier)["id_token"])["sub"] == user["id"]


def test_form_post_response_mode_runs_its_script(live: LiveServer, rp: RelyingParty, page: Any) -> None:
    client = register(live, rp)
    user = new_user(live)
    verifier, challenge = pkce()
    url, params = authorize_url(live, rp, client, challenge, response_mode="form_post")
    page.goto(url)
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    page.click("#consent-allow")
    page.wait_for_selector("#rp-callback")  # submitted by /static/form_post.js, no click
    method, fields = rp.last_hit("/callback")
    assert method == "POST"
    assert fields["state"] == params["state"] and fields["iss"] == live.issuer
    assert exchange(live, client, rp, fields["code"], verifier)["access_token"]


def test_rp_initiated_logout_ends_the_session(live: LiveServer, rp: RelyingParty, page: Any) -> None:
    client = register(live, rp)
    user = new_user(live)
    verifier, challenge = pkce()
    page.goto(authorize_url(live, rp, client, challenge)[0])
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    page.click("#consent-allow")
    page.wait_for_selector("#rp-callback")
    id_token = exchange(live, client, rp, rp.last()["code"], verifier)["id_token"]
    page.goto(live.base_url + "/logout?" + urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": rp.bye,
                                                      "state": "bye-1"}))
    page.wait_for_selector("#rp-bye")
    assert rp.last("/bye") == {"state": "bye-1"}
    _, challenge = pkce()
    url, params = authorize_url(live, rp, client, challenge, prompt="none")
    page.goto(url)
    page.wait_for_selector("#rp-callback")
    q = rp.last()
    assert q["error"] == "login_required" and q["state"] == params["state"]
    page.goto(live.base_url + "/account")
    page.wait_for_selector("#login-form")


def test_logout_without_a_hint_asks_first(live: LiveServer, rp: RelyingParty, page: Any) -> None:
    user = new_user(live)
    page.goto(live.base_url + "/login")
    sign_in(page, user)
    page.wait_for_selector("#account-username")
    page.goto(live.base_url + "/logout")
    page.wait_for_selector("#logout-form")
    page.click("#logout-confirm")
    page.wait_for_selector("#signed-out-title")
    page.goto(live.base_url + "/account")
    page.wait_for_selector("#login-form")
