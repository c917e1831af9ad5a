"""The consent page for a client that registered itself (RFC 7591), in a real browser (Chromium): it names
the client's origin, says the administrator has not verified it, shows a logo only from the client's own
origin, and asks again on the next sign-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support import LiveServer, start_server
from ..web._codeflow import new_user, pkce
from ._flow import SCOPE, RelyingParty, authorize_url, exchange, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def open_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("browser-registration")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'ost.db'}", tmp,
                       extra_env={"OSTIARY_REGISTRATION__POLICY": "open"})
    yield srv
    srv.stop()


def _register(server: LiveServer, rp: RelyingParty, **meta: Any) -> dict[str, Any]:
    body = {"client_name": "Totally Official Bank", "redirect_uris": [rp.callback],
            "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none",
            "scope": SCOPE, **meta}
    r = httpx.post(server.base_url + "/register", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_consent_names_the_origin_and_warns(open_live: LiveServer, rp: RelyingParty, page: Any) -> None:
    client = _register(open_live, rp, logo_uri=rp.base_url + "/logo.png")
    user = new_user(open_live)
    verifier, challenge = pkce()
    url, params = authorize_url(open_live, rp, client, challenge)
    page.goto(url)
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    assert page.text_content("#consent-origin").strip() == rp.base_url
    warning = page.text_content("#consent-unverified")
    assert "Not verified by the administrator" in warning and "Totally Official Bank" in warning
    assert rp.base_url in page.text_content("#consent-title")
    assert page.get_attribute("#consent-logo", "src") == rp.base_url + "/logo.png"  # its own origin: shown
    page.click("#consent-allow")
    page.wait_for_url(re.compile(re.escape(rp.callback) + r"\?"))
    q = rp.last()
    assert q["state"] == params["state"]
    tokens = exchange(open_live, client, rp, q["code"], verifier)
    assert tokens["access_token"]

    # the next time: asked again (a client nobody vetted never gets silent consent)
    verifier, challenge = pkce()
    url, _ = authorize_url(open_live, rp, client, challenge)
    page.goto(url)
    page.wait_for_selector("#consent-form")
    assert page.text_content("#consent-origin").strip() == rp.base_url


def test_a_logo_from_another_origin_is_not_shown(open_live: LiveServer, rp: RelyingParty, page: Any) -> None:
    client = _register(open_live, rp, logo_uri="https://images.example.net/bank-logo.png")
    user = new_user(open_live)
    _, challenge = pkce()
    url, _ = authorize_url(open_live, rp, client, challenge)
    page.goto(url)
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    assert page.query_selector("#consent-logo") is None
    assert "images.example.net" not in page.content()
    assert page.text_content("#consent-origin").strip() == rp.base_url


def test_a_vetted_client_gets_no_warning(open_live: LiveServer, rp: RelyingParty, page: Any) -> None:
    client = open_live.create_client(name="Vetted App", client_type="public",
                                     grant_types=["authorization_code", "refresh_token"],
                                     scopes=SCOPE.split(), redirect_uris=[rp.callback])
    user = new_user(open_live)
    _, challenge = pkce()
    url, _ = authorize_url(open_live, rp, client, challenge)
    page.goto(url)
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    assert page.query_selector("#consent-unverified") is None
    assert page.text_content("#consent-client").strip() == "Vetted App"
