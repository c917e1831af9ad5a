"""Pushed authorization requests (RFC 9126) over HTTP against real servers (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from ostiary.config import ConfigError, load_settings

from ..support import LiveServer
from ._codeflow import REDIRECT, Browser, auth_params, forms, new_user, pkce, query, web_client
from ._pushed import (
    assertion,
    error_code,
    finish,
    keyed_client,
    new_key,
    push,
    pushed_code,
    pushed_uri,
    redeem,
)


def test_discovery_advertises_par(server: LiveServer) -> None:
    meta = httpx.get(server.base_url + "/.well-known/openid-configuration").json()
    assert meta["pushed_authorization_request_endpoint"] == server.issuer + "/par"
    assert meta["require_pushed_authorization_requests"] is False


def test_pushed_request_runs_once(server: LiveServer) -> None:
    key = new_key()
    client, user = keyed_client(server, key), new_user(server)
    b = Browser(server)
    try:
        verifier, challenge = pkce()
        params = auth_params(client, challenge)
        r = push(server, {**params, **assertion(server, key, client["client_id"])})
        assert r.status_code == 201, r.text
        assert r.headers["cache-control"].startswith("no-store")
        body = r.json()
        assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:") and 0 < body["expires_in"] <= 60
        opened = b.authorize(client_id=client["client_id"], request_uri=body["request_uri"])
        assert opened.status_code == 200 and "login-form" in forms(opened.text)
        # the pushed parameters stay on the server: the sign-in form carries the reference only
        assert params["code_challenge"] not in opened.text
        # a second /authorize with the same request_uri is refused (single use), even before sign-in ends
        again = b.authorize(client_id=client["client_id"], request_uri=body["request_uri"])
        assert again.status_code == 400 and error_code(again) == "invalid_request_uri"
        q = finish(b, opened, user)
        assert q["state"] == params["state"] and q["iss"] == server.issuer
        tokens = redeem(server, client, key, q["code"], verifier)
        assert tokens.status_code == 200, tokens.text
        spent = b.authorize(client_id=client["client_id"], request_uri=body["request_uri"])
        assert spent.status_code == 400 and error_code(spent) == "invalid_request_uri"
    finally:
        b.close()


def test_pushed_values_win(server: LiveServer) -> None:
    key = new_key()
    client, user = keyed_client(server, key), new_user(server)
    verifier, challenge = pkce()
    uri = pushed_uri(server, client, key, auth_params(client, challenge, state="pushed-state"))
    b = Browser(server)
    try:
        q = finish(b, b.authorize(client_id=client["client_id"], request_uri=uri, state="outer",
                                  redirect_uri="http://127.0.0.1:9/other", code_challenge="x" * 43), user)
        assert q["state"] == "pushed-state"
        assert redeem(server, client, key, q["code"], verifier).status_code == 200
    finally:
        b.close()


def test_another_clients_request_uri_is_refused(server: LiveServer) -> None:
    key = new_key()
    client, other = keyed_client(server, key), keyed_client(server, new_key())
    uri = pushed_uri(server, client, key, auth_params(client, pkce()[1]))
    b = Browser(server)
    try:
        r = b.authorize(client_id=other["client_id"], request_uri=uri)
        assert r.status_code == 400 and error_code(r) == "invalid_request_uri"
        assert "location" not in r.headers
        # and the owner can still use it: the refused attempt did not spend it
        assert b.authorize(client_id=client["client_id"], request_uri=uri).status_code == 200
    finally:
        b.close()


def test_the_sign_in_must_continue_in_the_same_browser(server: LiveServer) -> None:
    key = new_key()
    client, user = keyed_client(server, key), new_user(server)
    uri = pushed_uri(server, client, key, auth_params(client, pkce()[1]))
    victim, attacker = Browser(server), Browser(server)
    try:
        page = victim.authorize(client_id=client["client_id"], request_uri=uri)
        authz = forms(page.text)["login-form"]["fields"]["authz"]
        login = attacker.http.get("/login")  # the attacker's own CSRF cookie and token
        fields = forms(login.text)["login-form"]["fields"]
        r = attacker.http.post("/login", data={**fields, "authz": authz, "username": user["username"],
                                               "password": user["password"]})
        assert r.status_code == 400 and error_code(r) == "invalid_request_uri", r.text[:500]
    finally:
        victim.close()
        attacker.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405(server: LiveServer, method: str) -> None:
    r = httpx.request(method, server.base_url + "/par")
    assert r.status_code == 405 and "POST" in r.headers["allow"]


def test_par_authenticates_the_client_and_validates_the_request(server: LiveServer) -> None:
    key = new_key()
    client = keyed_client(server, key)
    params = auth_params(client, pkce()[1])
    r = push(server, params)  # no assertion: a confidential client must authenticate
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    auth = assertion(server, key, client["client_id"])
    r = push(server, {**params, **auth, "code_challenge_method": "plain"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = push(server, {**params, **assertion(server, key, client["client_id"]), "scope": "openid admin"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = push(server, {**params, **assertion(server, key, client["client_id"]),
                      "request_uri": "urn:ietf:params:oauth:request_uri:x"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    secret_client = web_client(server, client_type="confidential")
    r = push(server, auth_params(secret_client, pkce()[1]),
             auth=(secret_client["client_id"], secret_client["client_secret"]))
    assert r.status_code == 201, r.text


def test_public_clients_push_with_their_client_id(server: LiveServer) -> None:
    client, user = web_client(server), new_user(server)
    verifier, challenge = pkce()
    r = push(server, auth_params(client, challenge))
    assert r.status_code == 201, r.text
    b = Browser(server)
    try:
        q = finish(b, b.authorize(client_id=client["client_id"], request_uri=r.json()["request_uri"]), user)
        tokens = httpx.post(server.base_url + "/token", data={
            "grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client["client_id"]})
        assert tokens.status_code == 200, tokens.text
    finally:
        b.close()


def test_required_per_client_with_the_cli_and_admin_api(server: LiveServer) -> None:
    key = new_key()
    client, user = keyed_client(server, key, require_pushed_authorization_requests=True), new_user(server)
    assert client["require_pushed_authorization_requests"] is True
    b = Browser(server)
    try:
        verifier, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge))
        assert r.status_code == 302
        q = query(r.headers["location"])
        assert q["error"] == "invalid_request" and "/par" in q["error_description"]
        pushed_code(server, b, client, key, user)
        out = server.cli("client", "update", client["client_id"], "--no-require-par", "--json")
        assert '"require_pushed_authorization_requests": false' in out.stdout
        r = b.authorize(**auth_params(client, challenge))
        assert r.status_code in (200, 302) and "error" not in query(r.headers.get("location", "?"))
        out = server.cli("client", "update", client["client_id"], "--require-par", "--json")
        assert '"require_pushed_authorization_requests": true' in out.stdout
    finally:
        b.close()


def test_required_globally_and_short_lived(make_server: Any) -> None:
    srv: LiveServer = make_server("sqlite", extra_env={"OSTIARY_PAR__REQUIRED": "true",
                                                        "OSTIARY_PAR__EXPIRES_IN": "1"})
    meta = httpx.get(srv.base_url + "/.well-known/oauth-authorization-server").json()
    assert meta["require_pushed_authorization_requests"] is True
    client = web_client(srv)
    b = Browser(srv)
    try:
        r = b.authorize(**auth_params(client, pkce()[1]))
        assert r.status_code == 302 and query(r.headers["location"])["error"] == "invalid_request"
        pushed = push(srv, auth_params(client, pkce()[1]))
        assert pushed.status_code == 201 and pushed.json()["expires_in"] == 1
        time.sleep(1.5)
        r = b.authorize(client_id=client["client_id"], request_uri=pushed.json()["request_uri"])
        assert r.status_code == 400 and error_code(r) == "invalid_request_uri"
    finally:
        b.close()


def test_a_request_uri_lives_at_most_a_minute() -> None:
    with pytest.raises(ConfigError, match="par.expires_in"):
        load_settings(environ={"OSTIARY_PAR__EXPIRES_IN": "120"})


@pytest.mark.parametrize("body, ctype", [
    (b"", "application/x-www-form-urlencoded"),
    (b"client_id=x", "text/plain"),
    (b"client_id=%ff%fe&response_type=code", "application/x-www-form-urlencoded"),
    (b"client_id=a&client_id=b", "application/x-www-form-urlencoded"),
    (b"client_id=nobody&request=" + b"a." * 5000, "application/x-www-form-urlencoded"),
    (b"client_id=nobody&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Ax", "application/x-www-form-urlencoded"),
])
def test_malformed_pushes_are_4xx(server: LiveServer, body: bytes, ctype: str) -> None:
    r = httpx.post(server.base_url + "/par", content=body, headers={"Content-Type": ctype})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"] in ("invalid_request", "invalid_client") and "Traceback" not in r.text


@pytest.mark.parametrize("uri", ["urn:ietf:params:oauth:request_uri:", "urn:ietf:params:oauth:request_uri:\u00e9\u0000",
                                 "urn:ietf:params:oauth:request_uri:" + "x" * 5000, "https://evil.example/r",
                                 "urn:ietf:params:oauth:request_uri:%00"])
def test_malformed_request_uris_are_an_error_page(server: LiveServer, uri: str) -> None:
    client = web_client(server)
    r = httpx.get(server.base_url + "/authorize", params={"client_id": client["client_id"], "request_uri": uri})
    assert r.status_code == 400 and "location" not in r.headers and "Traceback" not in r.text
    assert error_code(r) in ("invalid_request_uri", "request_uri_not_supported", "invalid_request")


def test_nul_characters_in_query_parameters_are_refused(server: LiveServer) -> None:
    """A NUL in a query parameter (a form refuses it already: web/http.py read_form) reached the code's nonce: a 500
    once the user signed in, on PostgreSQL, which cannot store NUL in text. Now refused before anything is stored,
    an error page (RFC 6749 §4.1.2.1: invalid_request)."""
    client = keyed_client(server, new_key())
    for extra in ({"nonce": "n\x00"}, {"state": "\x00"}, {"login_hint": "a\x00b"}):
        r = httpx.get(server.base_url + "/authorize", params=auth_params(client, pkce()[1], **extra))
        assert r.status_code == 400 and "location" not in r.headers, (extra, r.text[:300])
        assert error_code(r) == "invalid_request"
