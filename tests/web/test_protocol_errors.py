"""Protocol errors at POST /token, /introspect and /revoke, on SQLite and PostgreSQL.

Every refusal is an RFC 6749 §5.2 error response: JSON ``{"error": ..., "error_description": ...}``,
``Content-Type: application/json``, ``Cache-Control: no-store``, and the status the RFCs give
(400, or 401 for ``invalid_client``; 413/429 for requests refused before the protocol starts: a body of the
wrong type, or none, is a 400 ``invalid_request``). At /authorize, a redirect URI that is not registered
character for character shows an error page and never redirects.
No request yields a 500 or a traceback.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ..core.test_redirect_uri import HTTPS, LOOPBACK, VARIANTS
from ..support import LiveServer
from ..web._codeflow import auth_params, pkce, web_client

API = "https://api.example.com"
OTHER = "https://other.example.com"
ENDPOINTS = ["/token", "/introspect", "/revoke"]
#: every endpoint that reads a form from a client (RFC 6749 §5.2, RFC 7662 §2.3, RFC 7009 §2.2.1, RFC 8628 §3.2)
FORM_ENDPOINTS = [*ENDPOINTS, "/device_authorization"]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM = "application/x-www-form-urlencoded"
#: RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION_CHARSET = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")


def assert_oauth_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """The response is an RFC 6749 §5.2 error with ``status`` and ``error``."""
    assert "Traceback" not in r.text
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].split(";")[0].strip() == "application/json"
    assert r.headers.get("cache-control") == "no-store"
    body = r.json()
    assert isinstance(body, dict)
    assert body.get("error") == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    if "error_description" in body:
        assert isinstance(body["error_description"], str)
        assert DESCRIPTION_CHARSET.match(body["error_description"]), body["error_description"]
    return body


def basic(user: str | bytes, password: str | bytes = "x") -> str:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":" + (
        password if isinstance(password, bytes) else password.encode())
    return "Basic " + base64.b64encode(raw).decode()


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def client(server: LiveServer) -> dict[str, Any]:
    """A confidential client (client_secret_basic) allowed two audiences."""
    return server.create_client(scopes=["api:read", "api:write"], audiences=[API, OTHER])


def post_form(http: httpx.Client, path: str, body: str | bytes, *, headers: dict[str, str] | None = None,
              content_type: str | None = FORM) -> httpx.Response:
    h = dict(headers or {})
    if content_type is not None:
        h["Content-Type"] = content_type
    return http.post(path, content=body.encode() if isinstance(body, str) else body, headers=h)


def valid_body(path: str) -> str:
    """A body each endpoint would accept from an authenticated client."""
    return "grant_type=client_credentials" if path == "/token" else "token=not-a-token"


# ---------------------------------------------------------------- repeated parameters (RFC 6749 §3.1, §3.2)

@pytest.mark.parametrize("body", [
    "grant_type=client_credentials&grant_type=client_credentials",
    "grant_type=client_credentials&scope=api:read&scope=api:write",
    "grant_type=client_credentials&scope=api:read&scope=",
])
def test_repeated_parameter_at_token_is_invalid_request(http: httpx.Client, client: dict[str, Any],
                                                        body: str) -> None:
    r = post_form(http, "/token", body, headers={"Authorization": basic(client["client_id"],
                                                                        client["client_secret"])})
    body = assert_oauth_error(r, 400, "invalid_request")
    assert "repeated" in body.get("error_description", "")


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_repeated_token_parameter_is_invalid_request(http: httpx.Client, client: dict[str, Any], path: str) -> None:
    r = post_form(http, path, "token=a&token=b",
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert_oauth_error(r, 400, "invalid_request")


def test_repeated_client_id_is_invalid_request(http: httpx.Client, client: dict[str, Any]) -> None:
    cid = client["client_id"]
    r = post_form(http, "/token", f"grant_type=client_credentials&client_id={cid}&client_id={cid}"
                                  f"&client_secret={client['client_secret']}")
    assert_oauth_error(r, 400, "invalid_request")


def test_resource_may_repeat(http: httpx.Client, client: dict[str, Any]) -> None:
    """RFC 8707 §2: several ``resource`` parameters name several audiences."""
    r = post_form(http, "/token", f"grant_type=client_credentials&resource={API}&resource={OTHER}",
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert r.status_code == 200, r.text
    payload = r.json()["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert sorted(claims["aud"]) == sorted([API, OTHER])


def test_error_description_stays_in_the_rfc_charset_for_hostile_parameter_names(http: httpx.Client) -> None:
    """RFC 6749 §5.2: error_description excludes '"', '\\' and anything outside printable ASCII."""
    name = 'sc"op\\e\u00e9\u2028'
    body = httpx.QueryParams([(name, "a"), (name, "b"), ("grant_type", "client_credentials")])
    r = post_form(http, "/token", str(body))
    assert_oauth_error(r, 400, "invalid_request")


# ---------------------------------------------------------------- the body: type, size, encoding

CONTENT_TYPES: dict[str, Callable[[httpx.Client, str], httpx.Response]] = {
    "json": lambda http, path: http.post(path, json={"grant_type": "client_credentials", "token": "x"}),
    "multipart": lambda http, path: http.post(path, data={"grant_type": "client_credentials", "token": "x"},
                                              files={"f": ("f.txt", b"x")}),
    "text": lambda http, path: post_form(http, path, valid_body(path), content_type="text/plain"),
    "missing": lambda http, path: post_form(http, path, valid_body(path), content_type=None),
    "latin1": lambda http, path: post_form(http, path, valid_body(path), content_type=FORM + "; charset=iso-8859-1"),
    "form-prefix": lambda http, path: post_form(http, path, valid_body(path), content_type=FORM + "x"),
    "no-body": lambda http, path: http.post(path),
    "no-body-json": lambda http, path: http.post(path, headers={"Content-Type": "application/json"}),
}


@pytest.mark.parametrize("path", FORM_ENDPOINTS)
@pytest.mark.parametrize("kind", sorted(CONTENT_TYPES))
def test_wrong_or_missing_content_type_is_400_invalid_request(http: httpx.Client, path: str, kind: str) -> None:
    """RFC 6749 §3.2: the body is application/x-www-form-urlencoded (UTF-8), nothing else; anything else is a
    malformed request, answered as RFC 6749 §5.2 / RFC 7662 §2.3 / RFC 7009 §2.2.1 say: 400 invalid_request
    (never 415, which no OAuth client library expects)."""
    r = CONTENT_TYPES[kind](http, path)
    assert_oauth_error(r, 400, "invalid_request")


@pytest.mark.parametrize("ctype", [FORM + "; charset=UTF-8", FORM + '; charset="utf-8"',
                                   "Application/X-WWW-Form-URLEncoded"])
def test_form_content_type_variants_are_accepted(http: httpx.Client, client: dict[str, Any], ctype: str) -> None:
    r = post_form(http, "/token", "grant_type=client_credentials", content_type=ctype,
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ENDPOINTS)
def test_body_over_64_kib_is_413(http: httpx.Client, path: str) -> None:
    body = "grant_type=client_credentials&pad=" + "a" * (64 * 1024)
    assert_oauth_error(post_form(http, path, body), 413, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_chunked_body_over_64_kib_is_413(http: httpx.Client, path: str) -> None:
    """Without a Content-Length the server still stops reading at the limit."""
    def chunks() -> Iterator[bytes]:
        yield b"grant_type=client_credentials&pad="
        for _ in range(20):
            yield b"a" * 4096

    r = http.post(path, content=chunks(), headers={"Content-Type": FORM})
    assert "content-length" not in r.request.headers
    assert_oauth_error(r, 413, "invalid_request")


def test_body_of_exactly_64_kib_is_read(http: httpx.Client) -> None:
    prefix = "grant_type=unknown-grant&pad="
    body = prefix + "a" * (64 * 1024 - len(prefix))
    assert len(body) == 64 * 1024
    r = post_form(http, "/token", body)
    assert r.status_code == 400, r.text  # read and refused by the protocol, not by size
    assert r.json()["error"] == "invalid_request"  # the pad is longer than a parameter may be


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("body", [
    b"grant_type=client_credentials&token=\xff\xfe",     # raw invalid UTF-8
    b"grant_type=client_credentials&token=%ff%fe",       # invalid UTF-8 in a percent-escape
    b"grant_type=client_credentials&token=%c0%af",       # overlong encoding
    b"grant_type=client_credentials&token=%ed%a0%80",    # an encoded UTF-16 surrogate
    b"grant_type=client_credentials&to%ffken=x",         # in a name
], ids=["raw", "escaped", "overlong", "surrogate", "name"])
def test_invalid_utf8_is_invalid_request(http: httpx.Client, path: str, body: bytes) -> None:
    assert_oauth_error(post_form(http, path, body), 400, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("body", [
    b"grant_type=client_credentials&token=a%00b",
    b"grant_type=client_credentials&token=a\x00b",
    b"grant_type=client_credentials&to%00ken=x",
], ids=["escaped", "raw", "name"])
def test_nul_byte_is_invalid_request(http: httpx.Client, path: str, body: bytes) -> None:
    assert_oauth_error(post_form(http, path, body), 400, "invalid_request")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_too_many_parameters_is_invalid_request(http: httpx.Client, path: str) -> None:
    body = "&".join(f"p{i}=v" for i in range(500))
    assert_oauth_error(post_form(http, path, body), 400, "invalid_request")


def test_overlong_parameter_is_invalid_request(http: httpx.Client, client: dict[str, Any]) -> None:
    r = post_form(http, "/token", "grant_type=client_credentials&scope=" + "a" * 9000,
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert_oauth_error(r, 400, "invalid_request")


# ---------------------------------------------------------------- grant_type (RFC 6749 §5.2)

def test_unknown_grant_type_is_unsupported_grant_type(http: httpx.Client, client: dict[str, Any]) -> None:
    assert_oauth_error(post_form(http, "/token", "grant_type=urn:example:nope"), 400, "unsupported_grant_type")
    r = post_form(http, "/token", "grant_type=urn:example:nope",
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert_oauth_error(r, 400, "unsupported_grant_type")


@pytest.mark.parametrize("body", ["", "scope=api:read", "grant_type=", "grant_type"])
def test_missing_grant_type_is_invalid_request(http: httpx.Client, client: dict[str, Any], body: str) -> None:
    r = post_form(http, "/token", body, headers={"Authorization": basic(client["client_id"],
                                                                        client["client_secret"])})
    assert_oauth_error(r, 400, "invalid_request")


def test_password_grant_is_refused_naming_the_replacements(http: httpx.Client) -> None:
    """OAuth 2.1 removes the resource owner password grant; the answer says what to use instead."""
    r = post_form(http, "/token", "grant_type=password&username=alice&password=secret")
    body = assert_oauth_error(r, 400, "unsupported_grant_type")
    desc = body["error_description"].lower()
    assert "authorization code" in desc and "pkce" in desc
    assert "device" in desc


# ---------------------------------------------------------------- the query string is ignored

def test_client_secret_in_the_query_string_does_not_authenticate(http: httpx.Client, server: LiveServer) -> None:
    client = server.create_client(audiences=[API], token_endpoint_auth_method="client_secret_post")
    query = {"client_id": client["client_id"], "client_secret": client["client_secret"]}
    # sanity: the same credentials in the body work
    ok = post_form(http, "/token", str(httpx.QueryParams({"grant_type": "client_credentials", **query})))
    assert ok.status_code == 200, ok.text
    r = http.post("/token", params=query, content=b"grant_type=client_credentials", headers={"Content-Type": FORM})
    assert_oauth_error(r, 401, "invalid_client")
    r = http.post("/introspect", params=query, content=b"token=x", headers={"Content-Type": FORM})
    assert_oauth_error(r, 401, "invalid_client")


def test_grant_type_in_the_query_string_is_ignored(http: httpx.Client, client: dict[str, Any]) -> None:
    r = http.post("/token", params={"grant_type": "client_credentials"}, content=b"",
                  headers={"Content-Type": FORM, "Authorization": basic(client["client_id"], client["client_secret"])})
    assert_oauth_error(r, 400, "invalid_request")


# ---------------------------------------------------------------- client authentication (RFC 6749 §2.3)

@pytest.mark.parametrize("path", ENDPOINTS)
def test_two_client_authentication_methods_is_invalid_request(http: httpx.Client, client: dict[str, Any],
                                                              path: str) -> None:
    """RFC 6749 §2.3: a client MUST NOT use more than one authentication method in each request."""
    auth = {"Authorization": basic(client["client_id"], client["client_secret"])}
    body = valid_body(path) + f"&client_id={client['client_id']}&client_secret={client['client_secret']}"
    assert_oauth_error(post_form(http, path, body, headers=auth), 400, "invalid_request")
    body = valid_body(path) + f"&client_assertion_type={ASSERTION_TYPE}&client_assertion=a.b.c"
    assert_oauth_error(post_form(http, path, body, headers=auth), 400, "invalid_request")


def test_client_id_in_body_differing_from_basic_is_invalid_request(http: httpx.Client,
                                                                   client: dict[str, Any]) -> None:
    r = post_form(http, "/token", "grant_type=client_credentials&client_id=someone-else",
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert_oauth_error(r, 400, "invalid_request")


def _unique() -> str:
    # failed authentications are counted per claimed client id: keep each test's id its own
    return "nobody-" + secrets.token_hex(6)


MALFORMED_BASIC: dict[str, Callable[[], str]] = {
    "bad-base64": lambda: "Basic !!!not*base64!!!",
    "truncated-base64": lambda: "Basic " + base64.b64encode(_unique().encode() + b":x").decode()[:-3],
    "no-colon": lambda: "Basic " + base64.b64encode(_unique().encode()).decode(),
    "not-utf8": lambda: basic(b"\xff\xfe" + _unique().encode(), b"\xff"),
    "empty": lambda: "Basic " + base64.b64encode(b":").decode(),
}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("kind", sorted(MALFORMED_BASIC))
def test_malformed_basic_header_is_invalid_client_with_www_authenticate(http: httpx.Client, path: str,
                                                                        kind: str) -> None:
    """RFC 6749 §5.2: 401 and WWW-Authenticate when the client tried the Authorization header."""
    r = post_form(http, path, valid_body(path), headers={"Authorization": MALFORMED_BASIC[kind]()})
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].lower().startswith("basic")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("user", [b"a\x00b", b"a%00b", b"a%ff%fe\x01"], ids=["nul", "escaped-nul", "junk"])
def test_control_characters_in_basic_credentials_are_invalid_client(http: httpx.Client, path: str,
                                                                    user: bytes) -> None:
    """The credentials are looked up in the database: hostile bytes must not turn into a 500."""
    r = post_form(http, path, valid_body(path), headers={"Authorization": basic(user + secrets.token_hex(4).encode())})
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].lower().startswith("basic")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("iss", ["a\u0000b", "a\ud800b", "x" * 2000], ids=["nul", "lone-surrogate", "long"])
def test_hostile_client_assertion_issuer_is_invalid_client(http: httpx.Client, path: str, iss: str) -> None:
    """RFC 7523 §3: an assertion naming no registered client is invalid_client, whatever its iss holds."""
    header = base64.urlsafe_b64encode(b'{"alg":"ES256","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(
        json.dumps({"iss": iss, "sub": iss, "aud": "x", "exp": 9999999999, "jti": "j"}).encode()
    ).rstrip(b"=").decode()
    body = str(httpx.QueryParams({"client_assertion_type": ASSERTION_TYPE,
                                  "client_assertion": f"{header}.{payload}.AAAA"}))
    r = post_form(http, path, valid_body(path) + "&" + body)
    assert_oauth_error(r, 401, "invalid_client")


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_introspection_and_revocation_require_client_authentication(http: httpx.Client, server: LiveServer,
                                                                    path: str) -> None:
    assert_oauth_error(post_form(http, path, "token=abc"), 401, "invalid_client")
    # a Bearer token is not client authentication
    assert_oauth_error(post_form(http, path, "token=abc", headers={"Authorization": "Bearer abc"}),
                       401, "invalid_client")
    # nor is a bare client_id, for a confidential or a public client
    confidential = server.create_client(audiences=[API])
    assert_oauth_error(post_form(http, path, f"token=abc&client_id={confidential['client_id']}"),
                       401, "invalid_client")
    if path == "/introspect":  # RFC 7662 §2.1: introspection is for authenticated clients only
        public = server.create_client(client_type="public", grant_types=[])
        assert_oauth_error(post_form(http, path, f"token=abc&client_id={public['client_id']}"), 401,
                           "invalid_client")
    # a client_id naming no client, or a confidential one, is not a public client's identification either
    assert_oauth_error(post_form(http, path, "token=abc&client_id=" + _unique()), 401, "invalid_client")


def test_a_public_client_identifies_itself_at_revoke_with_client_id(http: httpx.Client, server: LiveServer) -> None:
    """RFC 7009 §2.1, §5: a public client sends its client_id; an unknown token is still 200 (§2.2)."""
    public = server.create_client(client_type="public", grant_types=[])
    r = post_form(http, "/revoke", f"token=abc&client_id={public['client_id']}")
    assert r.status_code == 200 and r.content == b"", r.text


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_missing_token_is_invalid_request(http: httpx.Client, client: dict[str, Any], path: str) -> None:
    r = post_form(http, path, "token_type_hint=access_token",
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert_oauth_error(r, 400, "invalid_request")


@pytest.mark.parametrize("hint", ["bogus", "id_token", "ACCESS_TOKEN"])
def test_revoke_with_unknown_token_type_hint_is_unsupported_token_type(http: httpx.Client, client: dict[str, Any],
                                                                       hint: str) -> None:
    """RFC 7009 §2.2.1."""
    r = post_form(http, "/revoke", f"token=abc&token_type_hint={hint}",
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert_oauth_error(r, 400, "unsupported_token_type")


@pytest.mark.parametrize("hint", ["access_token", "refresh_token"])
def test_revoke_with_known_hint_and_unknown_token_is_200(http: httpx.Client, client: dict[str, Any],
                                                         hint: str) -> None:
    """RFC 7009 §2.2: an invalid token does not cause an error response."""
    r = post_form(http, "/revoke", f"token=abc&token_type_hint={hint}",
                  headers={"Authorization": basic(client["client_id"], client["client_secret"])})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"


# ---------------------------------------------------------------- methods

@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(http: httpx.Client, path: str, method: str) -> None:
    r = http.request(method, path, params={"grant_type": "client_credentials"})
    assert r.status_code == 405, r.text
    assert "POST" in r.headers["allow"]
    assert "Traceback" not in r.text


# ---------------------------------------------------------------- rate limiting (RFC 6585 §4)

def test_lock_out_after_failed_authentication_is_429_with_retry_after(make_server: Any) -> None:
    srv: LiveServer = make_server("sqlite", extra_env={"OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "2"})
    client = srv.create_client(audiences=[API])
    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        wrong = {"Authorization": basic(client["client_id"], "wrong")}
        for _ in range(2):
            assert_oauth_error(post_form(http, "/token", "grant_type=client_credentials", headers=wrong),
                               401, "invalid_client")
        right = {"Authorization": basic(client["client_id"], client["client_secret"])}
        for path in ENDPOINTS:
            r = post_form(http, path, valid_body(path), headers=right)
            assert_oauth_error(r, 429, "slow_down")
            assert int(r.headers["retry-after"]) >= 1


# ---------------------------------------------------------------- redirect URIs at /authorize (RFC 9700 §4.1.3)

@pytest.fixture
def two_redirects(server: LiveServer) -> dict[str, Any]:
    return web_client(server, redirect_uris=[LOOPBACK, HTTPS])


def _authorize(http: httpx.Client, client: dict[str, Any], redirect_uri: str) -> httpx.Response:
    _, challenge = pkce()
    return http.get("/authorize", params=auth_params(client, challenge, redirect_uri=redirect_uri))


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_a_variant_of_a_registered_redirect_uri_shows_the_error_page(http: httpx.Client, two_redirects: dict[str, Any],
                                                                    kind: str) -> None:
    """Exact string comparison (OAuth 2.1 §2.3.1): no case folding of scheme, host or path, no trailing slash,
    dot segments, percent-decoding or userinfo. Only a loopback URI's port may vary (RFC 8252 §7.3)."""
    for variant in VARIANTS[kind]:
        r = _authorize(http, two_redirects, variant)
        assert r.status_code == 400, (variant, r.status_code, r.headers.get("location"))
        assert "location" not in r.headers
        assert "not registered" in r.text and "Traceback" not in r.text


@pytest.mark.parametrize("redirect_uri", [LOOPBACK, HTTPS, LOOPBACK.replace(":8400", ":51234"),
                                          LOOPBACK.replace(":8400", "")])
def test_a_registered_redirect_uri_or_a_loopback_port_redirects(http: httpx.Client, two_redirects: dict[str, Any],
                                                               redirect_uri: str) -> None:
    """The same request with the registered URI (or another loopback port) goes on to sign-in: the error page
    above is the redirect URI's doing."""
    r = _authorize(http, two_redirects, redirect_uri)
    assert r.status_code == 200 and "login-form" in r.text, r.text[:500]
