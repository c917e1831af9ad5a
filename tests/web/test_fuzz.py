"""Property-based fuzzing of POST /token, /introspect and /revoke on a live server (SQLite), and of every other
route the app registers.

Whatever arrives (random forms, repeated keys, unicode and control characters, very long values, random
Authorization headers, content types and raw bytes, with valid grant types and client credentials mixed
in), the server answers with JSON and never a 5xx; errors carry an RFC error code; tokens verify.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote_plus, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from ..conftest import db_url_for
from ..support import LiveServer, start_server

API = "https://api.example.com"
FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RFC_ERRORS = frozenset({"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                        "unsupported_grant_type", "invalid_scope", "invalid_target", "unsupported_token_type",
                        "slow_down"})
#: RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION_CHARSET = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


class Target:
    """The live server, one HTTP client, a registered client, a valid token and the published keys."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=30)
        self.client = server.create_client(scopes=["api:read", "api:write"], audiences=[API, "urn:x:aud"],
                                           resource_audiences=[API])
        self.post_client = server.create_client(scopes=["api:read"], audiences=[API],
                                                token_endpoint_auth_method="client_secret_post")
        r = self.http.post("/token", data={"grant_type": "client_credentials"},
                           auth=(self.client["client_id"], self.client["client_secret"]))
        assert r.status_code == 200, r.text
        self.token: str = r.json()["access_token"]
        self.jwks = self.http.get("/jwks").json()
        self.kid = self.jwks["keys"][0]["kid"]
        self.browser_cookie = b""
        self.web_client: dict[str, Any] | None = None  # a first-party code-flow client, made when a test needs one
        self.par_client: dict[str, Any] | None = None  # a confidential one, for /par


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz")
    # failed authentications would lock the fuzzed client out after 10 tries; keep the deeper paths reachable
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}", tmp,
                       extra_env={"OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "1000000"})
    with serving(Target(srv)) as t:
        yield t


T = TypeVar("T", bound="Target")


@contextmanager
def serving(target: T) -> Iterator[T]:
    """``target`` for a module's tests; then its HTTP client closed, its server stopped, and no traceback in the
    server's log."""
    try:
        yield target
    finally:
        target.http.close()
        target.server.stop()
    assert "Traceback" not in target.server.log()


# ---------------------------------------------------------------- strategies

NAMES = ["grant_type", "scope", "resource", "audience", "client_id", "client_secret", "client_assertion",
         "client_assertion_type", "token", "token_type_hint", "code", "refresh_token", "redirect_uri",
         "code_verifier", "device_code", "username", "password", "subject_token", "requested_token_type"]
GRANTS = ["client_credentials", "password", "implicit", "authorization_code", "refresh_token",
          "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:token-exchange",
          "urn:ietf:params:oauth:grant-type:jwt-bearer", "CLIENT_CREDENTIALS", "client_credentials "]
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ASCII = "".join(chr(c) for c in range(0x21, 0x7F))

# unicode including NUL and lone surrogates (they survive JSON's \\u escapes inside a JWT; st.text drops them)
any_text = st.text(max_size=40) | st.lists(st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\x00"])
                                           | st.characters(max_codepoint=0x1F) | st.characters(),
                                           max_size=8).map("".join)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False),
                        any_text)
json_value = st.recursive(json_scalar, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(any_text, kids,
                                                                                                 max_size=3),
                          max_leaves=6)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def forged_jwts(draw: st.DrawFn, target: Target) -> str:
    """JWT-shaped strings: plausible headers and claims (ours, the client's, random) with a bad signature."""
    header: dict[str, Any] = {"alg": draw(st.sampled_from(["ES256", "RS256", "EdDSA", "none", "HS256", "PS256"])),
                              "typ": draw(st.sampled_from(["at+jwt", "JWT", "application/at+jwt", "x"]))}
    if draw(st.booleans()):
        header["kid"] = draw(st.sampled_from([target.kid, "nope"]) | json_value)
    header.update(draw(st.dictionaries(st.sampled_from(["crit", "jku", "x5u", "b64", "zip", "cty"]), json_value,
                                       max_size=2)))
    cid = target.client["client_id"]
    claims: dict[str, Any] = {
        "iss": draw(st.sampled_from([target.server.issuer, cid]) | any_text | json_value),
        "sub": draw(st.sampled_from([cid]) | any_text | json_value),
        "aud": draw(st.sampled_from([target.server.issuer, target.server.issuer + "/token", API]) | json_value),
        "client_id": cid,
    }
    if draw(st.booleans()):
        claims["sub"] = claims["iss"]  # RFC 7523 §3: a client assertion has iss == sub
    claims.update(draw(st.dictionaries(st.sampled_from(["exp", "iat", "nbf", "jti", "scope", "act", "cnf"]),
                                       json_value, max_size=4)))
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(claims).encode())
    sig = draw(st.sampled_from(["", "AAAA", target.token.split(".")[2]]) | st.text(B64URL, max_size=90))
    return f"{h}.{p}.{sig}"


def values(target: Target) -> st.SearchStrategy[str]:
    cid, secret = target.client["client_id"], target.client["client_secret"]
    known = st.sampled_from([*GRANTS, cid, secret, target.post_client["client_id"],
                             target.post_client["client_secret"], API, "urn:x:aud", "api:read", "api:read api:write",
                             "admin", "access_token", "refresh_token", "bogus", ASSERTION_TYPE, target.token,
                             target.token + "x", "", " ", "https://evil.example/#frag"])
    return st.one_of(
        known, known, known,
        st.text(max_size=60),
        st.text(st.characters(max_codepoint=0x1F), max_size=10),              # control characters, NUL included
        st.builds(lambda c, n: c * n, st.characters(), st.integers(8000, 9000)),  # around the per-value limit
        forged_jwts(target),
        st.lists(st.text(B64URL, max_size=40), min_size=1, max_size=4).map(".".join),
    )


@st.composite
def form_bodies(draw: st.DrawFn, target: Target) -> bytes:
    names = st.sampled_from(NAMES) | st.text(max_size=20)
    pairs = draw(st.lists(st.tuples(names, values(target)), max_size=12))
    if draw(st.booleans()):  # repeat some of them
        pairs += draw(st.lists(st.sampled_from(pairs), max_size=3)) if pairs else []
    body = urlencode(pairs, quote_via=quote_plus)
    if draw(st.integers(0, 4)) == 0:  # splice in raw escapes and separators
        junk = draw(st.lists(st.sampled_from(["%", "%f", "%ff", "%00", "%c3", "%e2%80", "&", "=", "+", ";", "&&",
                                              "%26", "%3D", "\x00", "\u00e9", "%ED%A0%80"]), max_size=6))
        at = draw(st.integers(0, len(body)))
        body = body[:at] + "".join(junk) + body[at:]
    return body.encode("utf-8", "surrogatepass")


def bodies(target: Target) -> st.SearchStrategy[bytes]:
    return st.one_of(
        form_bodies(target), form_bodies(target), form_bodies(target),
        st.binary(max_size=300),
        st.integers(60 * 1024, 70 * 1024).map(lambda n: b"grant_type=client_credentials&pad=" + b"a" * n),
        st.integers(150, 260).map(lambda n: "&".join(f"p{i}=v" for i in range(n)).encode()),
    )


header_text = st.text(ASCII + " ", max_size=80).map(str.strip)


def authorizations(target: Target) -> st.SearchStrategy[str | None]:
    cid, secret = target.client["client_id"], target.client["client_secret"]

    def basic(raw: bytes) -> str:
        return "Basic " + base64.b64encode(raw).decode()

    return st.one_of(
        st.none(), st.none(),
        st.just(basic(f"{cid}:{secret}".encode())),
        st.builds(lambda s: basic(f"{cid}:{s}".encode()), st.text(max_size=40)),
        st.builds(lambda u, p: basic(u.encode("utf-8", "surrogatepass") + b":" + p.encode()), any_text,
                  st.text(max_size=20)),
        st.binary(max_size=60).map(basic),
        st.builds(lambda scheme, v: f"{scheme} {v}".strip(),
                  st.sampled_from(["Basic", "basic", "BASIC", "Bearer", "DPoP", "Digest", "Negotiate"])
                  | st.text(ASCII, min_size=1, max_size=10), header_text),
        st.just(f"Bearer {target.token}"),
    )


content_types = st.one_of(
    st.just(FORM), st.just(FORM), st.just(FORM), st.just(FORM),
    st.sampled_from([FORM + "; charset=utf-8", FORM + "; charset=latin-1", FORM + ";",
                     "APPLICATION/X-WWW-FORM-URLENCODED", "application/json", "multipart/form-data; boundary=x",
                     "text/plain", "*/*", ""]),
    header_text,
    st.none(),
)


# ---------------------------------------------------------------- the properties

def check_response(target: Target, path: str, r: httpx.Response, authorization: str | None) -> None:
    assert r.status_code < 500, f"{r.status_code} {r.text}"
    assert "Traceback" not in r.text
    if path == "/revoke" and r.status_code == 200:
        assert r.content == b""  # RFC 7009 §2.2: 200 with no content
        assert r.headers["cache-control"] == "no-store"
        return
    assert r.headers["content-type"].split(";")[0].strip() == "application/json", r.headers
    body = r.json()
    assert isinstance(body, dict), body
    if r.status_code >= 400:
        assert r.status_code in (400, 401, 413, 415, 429), f"{r.status_code} {r.text}"
        assert isinstance(body.get("error"), str) and body["error"] in RFC_ERRORS, body
        assert set(body) <= {"error", "error_description", "error_uri"}, body
        desc = body.get("error_description", "")
        assert isinstance(desc, str) and DESCRIPTION_CHARSET.match(desc), desc
        assert r.headers["cache-control"] == "no-store"
        if r.status_code == 429:
            assert body["error"] == "slow_down"
            assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
        if r.status_code == 401:
            assert body["error"] == "invalid_client"
            if authorization is not None and authorization.lower().startswith("basic "):
                assert r.headers["www-authenticate"].lower().startswith("basic")
        return
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    assert r.headers["cache-control"] == "no-store"
    if path == "/token":
        assert body["token_type"] == "Bearer"
        assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
        token = jose_jwt.decode(body["access_token"], KeySet.import_key_set(target.jwks), algorithms=["ES256"])
        assert token.header["typ"] == "at+jwt"
        assert token.claims["iss"] == target.server.issuer
        assert token.claims["client_id"] in (target.client["client_id"], target.post_client["client_id"])
    else:
        assert isinstance(body.get("active"), bool), body
        if body["active"]:
            assert body["iss"] == target.server.issuer
            assert body["client_id"] == target.client["client_id"]


def send(target: Target, path: str, body: bytes, content_type: str | None, authorization: str | None
         ) -> httpx.Response:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if authorization:
        headers["Authorization"] = authorization  # already stripped: HTTP trims field values (RFC 9110 §5.5)
    return target.http.post(path, content=body, headers=headers)


@pytest.fixture(params=["/token", "/introspect", "/revoke"])
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@FUZZ
@given(data=st.data())
def test_random_requests_get_rfc_answers(target: Target, path: str, data: st.DataObject) -> None:
    body = data.draw(bodies(target), label="body")
    content_type = data.draw(content_types, label="content_type")
    authorization = data.draw(authorizations(target).map(lambda a: a and a.strip()), label="authorization")
    r = send(target, path, body, content_type, authorization)
    check_response(target, path, r, authorization)


@settings(FUZZ, max_examples=75)
@given(data=st.data())
def test_random_forms_with_valid_client_authentication(target: Target, path: str, data: st.DataObject) -> None:
    """The client authenticates correctly; everything else in the form is random."""
    _valid_client_forms(target, path, data)


def _valid_client_forms(target: Target, path: str, data: st.DataObject) -> None:
    body = data.draw(form_bodies(target), label="body")
    cid, secret = target.client["client_id"], target.client["client_secret"]
    authorization = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
    r = send(target, path, body, FORM, authorization)
    check_response(target, path, r, authorization)


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_random_forms_with_valid_client_authentication_on_postgresql(pg_browser_target: Target, path: str,
                                                                     data: st.DataObject) -> None:
    """The same on PostgreSQL, which refuses text SQLite stores."""
    _valid_client_forms(pg_browser_target, path, data)


@settings(FUZZ, max_examples=75)
@given(scope=st.one_of(st.sampled_from(["api:read", "api:write", "api:read api:write", "admin"]),
                       st.text(max_size=30)),
       resources=st.lists(st.sampled_from([API, "urn:x:aud", "https://evil.example", "x"]) | st.text(max_size=20),
                          max_size=3),
       extra=st.lists(st.tuples(st.sampled_from(NAMES) | st.text(max_size=10), st.text(max_size=30)), max_size=3))
def test_client_credentials_variations(target: Target, scope: str, resources: list[str],
                                       extra: list[tuple[str, str]]) -> None:
    """A valid client-credentials request with random scope, resources and extra parameters."""
    pairs = [("grant_type", "client_credentials"), ("scope", scope), *(("resource", r) for r in resources), *extra]
    authorization = "Basic " + base64.b64encode(
        f"{target.client['client_id']}:{target.client['client_secret']}".encode()).decode()
    r = send(target, "/token", urlencode(pairs, quote_via=quote_plus).encode(), FORM, authorization)
    check_response(target, "/token", r, authorization)
    if r.status_code == 200:
        claims = jose_jwt.decode(r.json()["access_token"], KeySet.import_key_set(target.jwks),
                                 algorithms=["ES256"]).claims
        granted = set(claims["scope"].split())
        assert granted <= {"api:read", "api:write"}
        assert set(scope.split()) == granted or not scope.strip(" ")
        aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        assert set(aud) <= {API, "urn:x:aud"}


@settings(FUZZ, max_examples=75)
@given(data=st.data())
def test_random_client_assertions(target: Target, path: str, data: st.DataObject) -> None:
    """private_key_jwt (RFC 7523 §2.2) with forged assertions: always invalid_client, never a crash."""
    pairs = [("client_assertion_type", ASSERTION_TYPE), ("client_assertion", data.draw(forged_jwts(target)))]
    if path == "/token":
        pairs.append(("grant_type", data.draw(st.sampled_from(GRANTS), label="grant_type")))
    else:
        pairs.append(("token", data.draw(st.sampled_from([target.token, "x"]), label="token")))
    if data.draw(st.booleans(), label="with client_id"):
        pairs.append(("client_id", data.draw(st.sampled_from([target.client["client_id"]]) | any_text)))
    body = urlencode(pairs, quote_via=quote_plus, encoding="utf-8", errors="surrogatepass").encode()
    r = send(target, path, body, FORM, None)
    check_response(target, path, r, None)
    assert r.status_code in (400, 401), r.text


# ---------------------------------------------------------------- every route (issue 10.2)

def _app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the app registers, the static mount included."""
    from starlette.routing import Mount, Route

    from ostiary.config import Settings
    from ostiary.web.app import create_app

    app = create_app(Settings(secret_key="x" * 40, database_url="sqlite+aiosqlite:///unused.db"))
    out = []
    for route in app.routes:
        if isinstance(route, Route):
            out += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
        elif isinstance(route, Mount):
            out.append(("GET", route.path + "/{path}"))
    return out


ROUTES = _app_routes()
DESTRUCTIVE = ("/admin/api/keys",)  # a valid admin token never rotates or retires the fuzzed server's keys
COOKIE_NAMES = ["ostiary_session", "ostiary_csrf", "__Host-ostiary_session", "x"]


def test_the_fuzzed_routes_are_every_route() -> None:
    paths = {p for _, p in ROUTES}
    for expected in ("/authorize", "/authorize/consent", "/device", "/device/confirm", "/login", "/logout",
                     "/account", "/account/totp", "/userinfo", "/admin/api/clients/{client_id}",
                     "/admin/api/users/{ref}", "/static/{path}", "/token"):
        assert expected in paths, sorted(paths)


def queries(target: Target) -> st.SearchStrategy[str]:
    pairs = st.lists(st.tuples(st.sampled_from(["client_id", "redirect_uri", "response_type", "scope", "state",
                                                "user_code", "id_token_hint", "post_logout_redirect_uri",
                                                "access_token", "now", "issuer"]) | st.text(max_size=10),
                               values(target)), max_size=8)
    return st.one_of(
        st.just(""),
        pairs.map(lambda p: urlencode(p, quote_via=quote_plus, encoding="utf-8", errors="surrogatepass")),
        st.integers(150, 1200).map(lambda n: "&" * n),  # Python's parse_qsl field limit is 200 (issue 10.2)
        st.integers(150, 400).map(lambda n: "&".join(f"p{i}=v" for i in range(n))),
        st.text(ASCII, max_size=60),
        st.lists(st.sampled_from(["%", "%f", "%ff", "%00", "%c3", "%ED%A0%80", "&", "=", ";", "+", "a"]),
                 max_size=20).map("".join),
    )


def cookies(target: Target) -> st.SearchStrategy[bytes | None]:
    value = st.text(ASCII.replace(";", ""), max_size=120) | st.binary(max_size=40).map(lambda b: b.hex())
    junk = st.lists(st.tuples(st.sampled_from(COOKIE_NAMES) | st.text(ASCII.replace(";", "").replace("=", ""),
                                                                      min_size=1, max_size=8), value),
                    max_size=4).map(lambda kv: "; ".join(f"{k}={v}" for k, v in kv).encode())
    # bytes HTTP allows in a field value (obs-text included), as a client library would send them
    raw = st.binary(max_size=80).map(lambda b: bytes(c for c in b if c == 9 or 0x20 <= c != 0x7F).strip(b" \t"))
    return st.one_of(st.none(), st.just(target.browser_cookie), junk, raw)


@st.composite
def any_requests(draw: st.DrawFn, target: Target) -> tuple[str, str, dict[str, Any]]:
    method, template = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD", "GET", "POST"]))
    path = template
    for name in re.findall(r"{(\w+)}", template):
        raw = draw(st.sampled_from([target.client["client_id"], "nope", "", ".."]) | any_text | st.text(max_size=300))
        path = path.replace("{" + name + "}", quote_plus(raw.encode("utf-8", "surrogatepass"), safe="") or "x")
    query = draw(queries(target))[:6000]  # httpx refuses URLs over 64 KiB
    headers: dict[str, Any] = {}
    auth = draw(st.one_of(authorizations(target), st.just(f"Bearer {target.server.admin_token}")))
    if auth and not (auth.endswith(target.server.admin_token) and template.startswith(DESTRUCTIVE)):
        headers["Authorization"] = auth.strip()
    cookie = draw(cookies(target))
    if cookie:
        headers["Cookie"] = cookie
    headers["Accept"] = draw(st.sampled_from(["text/html", "application/json", "*/*", "text/html,*/*;q=0.8"])
                             | header_text)
    if draw(st.booleans()):
        headers["Origin"] = draw(st.sampled_from(["https://app.example", "null"]) | header_text)
    kwargs: dict[str, Any] = {"headers": headers}
    if method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
        content_type = draw(content_types | st.just("application/json"))
        if content_type is not None:
            headers["Content-Type"] = content_type
        kwargs["content"] = draw(bodies(target) | json_value.map(lambda v: json.dumps(v).encode("utf-8",
                                                                                             "surrogatepass")))
    url = path + ("?" + query if query else "")
    return method, url, kwargs


@pytest.fixture(scope="module")
def browser_target(target: Target) -> Target:
    """The target with a signed-in browser's cookies, so the account pages get past their sign-in check."""
    return _signed_in(target)


@pytest.fixture(scope="module")
def pg_browser_target(tmp_path_factory: pytest.TempPathFactory, pg_url_factory: object) -> Iterator[Target]:
    """The same on PostgreSQL, which refuses what SQLite stores (a NUL in text, a string longer than its column):
    a value that reaches the database unchecked is a 500 there only."""
    tmp = tmp_path_factory.mktemp("fuzz-pg")
    srv = start_server(db_url_for("postgres", tmp, pg_url_factory), tmp,
                       extra_env={"OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "1000000"})
    with serving(Target(srv)) as t:
        yield _signed_in(t)


def _signed_in(target: Target) -> Target:
    from ._codeflow import new_user

    user = new_user(target.server)
    page = target.http.get("/login")
    csrf = re.search(r'name="csrf_token" id="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text
    r = target.http.post("/login", data={"csrf_token": csrf.group(1), "username": user["username"],
                                         "password": user["password"]})
    assert r.status_code in (200, 303), r.text
    target.browser_cookie = "; ".join(f"{k}={v}" for k, v in target.http.cookies.items()).encode()
    target.http.cookies.clear()
    return target


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_no_request_to_any_route_gets_a_5xx(browser_target: Target, data: st.DataObject) -> None:
    """Every route and method the app registers (protocol endpoints, authorize, login, consent, logout, device
    and account pages, userinfo, admin API, static files), with malformed paths, query strings, bodies, content
    types, cookies and headers: never a 5xx, never a traceback."""
    _no_5xx(browser_target, data)


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_no_request_to_any_route_gets_a_5xx_on_postgresql(pg_browser_target: Target, data: st.DataObject) -> None:
    """The same on PostgreSQL (a NUL in a query string's nonce was a 500 there, and only there)."""
    _no_5xx(pg_browser_target, data)


#: text a browser can put in a query string that no database or parser should meet unchecked
HOSTILE_TEXT = st.one_of(
    st.sampled_from(["a\x00b", "\x00", "\ud800", "a\udfffb", "\u202e", "é" * 3000, "x" * 8193, " ", "%00", "\\",
                     '"><script>', "1e400", "-1", "99999999999999999999", "[" * 1500]),
    st.text(max_size=40),
)
AUTHORIZE_PARAMETERS = ["response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
                        "code_challenge_method", "login_hint", "prompt", "max_age", "ui_locales", "acr_values",
                        "claims", "resource", "dpop_jkt", "response_mode", "request", "request_uri", "id_token_hint"]


@settings(FUZZ, max_examples=60)
@given(data=st.data())
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_authorization_request_with_one_hostile_parameter(backend: str, browser_target: Target,
                                                             pg_browser_target: Target, data: st.DataObject) -> None:
    """A valid code-flow request from a signed-in browser (first-party client: the code is issued, so every
    value reaches the database) with one parameter replaced by hostile text: never a 5xx. A NUL in the nonce
    was a 500 on PostgreSQL, and only there."""
    from ._codeflow import auth_params, pkce

    target = pg_browser_target if backend == "postgres" else browser_target
    if target.web_client is None:
        target.web_client = target.server.create_client(
            client_type="public", grant_types=["authorization_code", "refresh_token"], first_party=True,
            scopes=["openid", "profile", "email", "offline_access"], redirect_uris=["http://127.0.0.1:9/callback"])
    params: dict[str, str] = auth_params(target.web_client, pkce()[1])
    name = data.draw(st.sampled_from(AUTHORIZE_PARAMETERS), label="parameter")
    params[name] = data.draw(HOSTILE_TEXT, label="value")
    query = urlencode(params, quote_via=quote_plus, encoding="utf-8", errors="surrogatepass")
    r = target.http.get("/authorize?" + query, headers={"Cookie": target.browser_cookie.decode("latin-1")})
    assert r.status_code < 500, f"{name}={params[name][:80]!r}: {r.status_code} {r.text[:300]}"
    assert "Traceback" not in r.text


@settings(FUZZ, max_examples=60)
@given(data=st.data())
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_pushed_request_with_one_hostile_parameter(backend: str, target: Target, pg_browser_target: Target,
                                                     data: st.DataObject) -> None:
    """RFC 9126 §2: a pushed request is stored as sent before anyone looks at it again; one hostile parameter in
    an otherwise valid push is a 400 with the RFC's error, or a 201, never a 5xx."""
    from ._codeflow import auth_params, pkce

    t = pg_browser_target if backend == "postgres" else target
    if t.par_client is None:
        t.par_client = t.server.create_client(
            grant_types=["authorization_code", "refresh_token"], first_party=True,
            scopes=["openid", "profile", "email", "offline_access"], redirect_uris=["http://127.0.0.1:9/callback"])
    params: dict[str, str] = auth_params(t.par_client, pkce()[1])
    name = data.draw(st.sampled_from(AUTHORIZE_PARAMETERS), label="parameter")
    params[name] = data.draw(HOSTILE_TEXT, label="value")
    body = urlencode(params, quote_via=quote_plus, encoding="utf-8", errors="surrogatepass")
    r = t.http.post("/par", content=body, headers={"Content-Type": FORM},
                    auth=(t.par_client["client_id"], t.par_client["client_secret"]))
    assert r.status_code in (201, 400, 401, 413), f"{name}={params[name][:80]!r}: {r.status_code} {r.text[:300]}"
    assert r.status_code == 201 or r.json()["error"], r.text


def _no_5xx(target: Target, data: st.DataObject) -> None:
    method, url, kwargs = data.draw(any_requests(target), label="request")
    try:
        r = target.http.request(method, url, **kwargs)
    except (httpx.LocalProtocolError, httpx.InvalidURL):  # httpx would not send it: the raw-socket tests do
        reject()
    assert r.status_code < 500, f"{method} {url}: {r.status_code} {r.text[:500]}"
    assert "Traceback" not in r.text and 'File "' not in r.text


RAW_REQUESTS = [
    b"GET /authorize?" + b"&" * 250 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # the example
    b"GET /logout?" + b"&" * 60 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /authorize?client_id=%ff%fe&x=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /device?user_code=\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\xff\xfe/%ff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /static/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /account HTTP/1.1\r\nHost: x\r\nCookie: ostiary_session=\xff\xfe; ostiary_csrf=\"\\\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: x\r\nCookie: " + b"a=b; " * 5000 + b"\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: x\r\nbroken header line\r\n\r\n",
    b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /authorize HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
    b"Content-Length: 5\r\n\r\n--x--",
    b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /userinfo?access_token=x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\r\n\r\n",
]


@pytest.mark.parametrize("raw", RAW_REQUESTS, ids=range(len(RAW_REQUESTS)))
def test_malformed_raw_requests_get_4xx(target: Target, raw: bytes) -> None:
    """What an HTTP client library would refuse to send: never a 5xx, never a traceback."""
    port = int(target.server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)  # no half-close: the server would take it for a client gone before its answer
        answer = b""
        while b"\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    assert status is None or status < 500, answer[:500]  # (closing the connection is an answer too)
    assert b"Traceback" not in answer


def test_too_many_query_fields_is_a_counted_400(target: Target) -> None:
    r = target.http.get("/authorize?" + "&" * 250, headers={"Accept": "text/html"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html"), r.text
    metrics = target.http.get("/metrics").text
    assert 'ostiary_http_requests_total{route="authorize",status="400"}' in metrics
