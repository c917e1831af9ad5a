"""FAPI 2.0 mode (``profile = "fapi2"``) end to end with a person in Chromium: Ostiary on its own TLS listener,
a confidential client authenticating with private_key_jwt that pushes its authorization request (PAR, PKCE S256),
Chromium signing in and consenting, the redirect carrying ``iss`` (RFC 9207), the code exchanged at once for a
sender-constrained token: certificate-bound over mutual TLS (RFC 8705), or DPoP-bound (RFC 9449), which /userinfo
honours only with the certificate or a proof by the key. A plain /authorize, not pushed, is refused back to the
client with an error naming the rule.

The client side is made here with ``cryptography`` (keys, test PKI, DPoP keys) and PyJWT (client assertions, DPoP
proofs); the PKI helpers are the mTLS tests' (tests/web/test_mtls.py)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ..support import BIN, LiveServer, base_env, free_port, ostiary
from ..web._codeflow import new_user
from ..web.test_mtls import Issued, _issue, _name
from ._flow import SCOPE, RelyingParty, jwk_thumbprint, sign_in
from ._node_rp import StartRp, ensure_installed, read_line, rp_processes, send_callback

pytestmark = pytest.mark.browser

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class TlsPki:
    server_ca: Issued
    server: Issued
    client_ca: Issued
    client: Issued  # the relying party's certificate for mutual TLS

    def context(self, cert: Issued | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.server_ca.cert_path))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        return ctx


@dataclass
class TlsServer(LiveServer):
    pki: TlsPki | None = None

    def admin(self) -> httpx.Client:
        assert self.pki is not None
        return httpx.Client(base_url=self.base_url + "/admin/api", timeout=30, verify=self.pki.context(),
                            headers={"Authorization": f"Bearer {self.admin_token}"})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    d = tmp_path_factory.mktemp("fapi2-pki")
    server_ca = _issue(d, "server-ca", _name("FAPI Test Server CA"), ca=True)
    server = _issue(d, "server", _name("localhost"), issuer=server_ca, server=True,
                    sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_ca = _issue(d, "client-ca", _name("FAPI Test Client CA"), ca=True)
    client = _issue(d, "client", _name("fapi-rp"), issuer=client_ca)
    return TlsPki(server_ca, server, client_ca, client)


@pytest.fixture(scope="module")
def fapi(pki: TlsPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """``ostiary serve`` in FAPI 2.0 mode on its own TLS listener, asking for (optional) client certificates."""
    tmp = tmp_path_factory.mktemp("fapi2-browser")
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    admin_token = "admin-" + secrets.token_urlsafe(24)
    env = base_env(f"sqlite+aiosqlite:///{tmp / 'fapi2.db'}", issuer, secrets.token_urlsafe(40), admin_token, {
        "OSTIARY_PROFILE": "fapi2",
        "OSTIARY_SERVER__TLS_CERT_FILE": str(pki.server.cert_path),
        "OSTIARY_SERVER__TLS_KEY_FILE": str(pki.server.key_path),
        "OSTIARY_SERVER__TLS_CLIENT_CA_FILE": str(pki.client_ca.cert_path),
        "OSTIARY_MTLS__CA_FILE": str(pki.client_ca.cert_path),
    })
    ostiary(["migrate"], env)
    log_path = tmp / "server.log"
    srv = TlsServer(base_url=issuer, env=env, admin_token=admin_token, log_path=log_path, pki=pki)
    with open(log_path, "ab") as log:
        srv.procs.append(subprocess.Popen([str(BIN / "ostiary"), "serve", "--port", str(port)], env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 90
    while True:
        if srv.procs[0].poll() is not None or time.monotonic() > deadline:
            srv.stop()
            raise AssertionError("TLS server did not start:\n" + srv.log())
        try:
            if httpx.get(issuer + "/readyz", verify=pki.context(), timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def node_rp() -> Path:
    return ensure_installed()


@pytest.fixture
def rp_process(node_rp: Path) -> Iterator[StartRp]:
    with rp_processes(node_rp) as start:
        yield start


@pytest.fixture
def tls_page(chromium: Any) -> Iterator[Any]:
    """A page that accepts the test server CA's certificate (Chromium does not know the test CA)."""
    ctx = chromium.new_context(ignore_https_errors=True)
    ctx.set_default_timeout(15_000)
    yield ctx.new_page()
    ctx.close()


@dataclass
class FapiClient:
    """The relying party's side: its registration, its signing key, its TLS certificate."""

    server: TlsServer
    client_id: str
    key: ec.EllipticCurvePrivateKey
    kid: str
    cert: Issued

    def assertion(self) -> dict[str, str]:
        """private_key_jwt (RFC 7523 §2.2), audience the issuer (FAPI 2.0 Security Profile 5.3.2.1)."""
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.server.issuer, "iat": now,
                  "exp": now + 60, "jti": str(uuid.uuid4())}
        return {"client_assertion_type": ASSERTION_TYPE,
                "client_assertion": jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})}

    def http(self, *, with_certificate: bool = True) -> httpx.Client:
        assert self.server.pki is not None
        return httpx.Client(verify=self.server.pki.context(self.cert if with_certificate else None), timeout=30)


def _public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y), "kid": kid, "alg": "ES256",
            "use": "sig"}


@dataclass
class DPoPKey:
    """The client's DPoP key (RFC 9449) and the proofs it signs, made with cryptography + PyJWT."""

    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> DPoPKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def jwk(self) -> dict[str, str]:
        return {k: v for k, v in _public_jwk(self.key, "").items() if k in ("kty", "crv", "x", "y")}

    @property
    def jkt(self) -> str:
        return jwk_thumbprint(self.jwk)

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        claims: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url,
                                  "iat": int(time.time())}
        if access_token is not None:  # RFC 9449 §4.2: ath, the hash of the access token presented with it
            claims["ath"] = base64.urlsafe_b64encode(
                hashlib.sha256(access_token.encode()).digest()).rstrip(b"=").decode()
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": self.jwk})


def _register(fapi: TlsServer, rp: RelyingParty, pki: TlsPki, **binding: bool) -> FapiClient:
    key, kid = ec.generate_private_key(ec.SECP256R1()), secrets.token_hex(4)
    client = fapi.create_client(
        name="FAPI RP", client_type="confidential", token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [_public_jwk(key, kid)]}, grant_types=["authorization_code", "refresh_token"],
        scopes=SCOPE.split(), redirect_uris=[rp.callback], **binding)
    return FapiClient(fapi, client["client_id"], key, kid, pki.client)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _verify_id_token(fapi: TlsServer, token: str, audience: str) -> dict[str, Any]:
    assert fapi.pki is not None
    keys = httpx.get(fapi.base_url + "/jwks", verify=fapi.pki.context()).json()["keys"]
    kid = jwt.get_unverified_header(token).get("kid")
    jwk = next(k for k in keys if k.get("kid") == kid)
    claims: dict[str, Any] = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256", "RS256", "EdDSA"],
                                        audience=audience, issuer=fapi.issuer)
    return claims


@dataclass
class Authorized:
    code: str
    verifier: str
    nonce: str

    def token_form(self, rp: RelyingParty) -> dict[str, str]:
        return {"grant_type": "authorization_code", "code": self.code, "redirect_uri": rp.callback,
                "code_verifier": self.verifier}


def _authorize_in_chromium(fapi: TlsServer, client: FapiClient, rp: RelyingParty, page: Any, user: dict[str, Any],
                           headers: dict[str, str] | None = None) -> Authorized:
    """Push the request (PKCE S256, state, nonce) with the client's assertion over mutual TLS, then the person's
    part in Chromium: the authorization URL carries only client_id and request_uri; sign in, consent; the
    redirect's ``iss`` is checked (RFC 9207) before the code is used."""
    verifier, challenge = _pkce()
    state, nonce = "st-" + secrets.token_hex(6), "n-" + secrets.token_hex(6)
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": rp.callback, "scope": SCOPE,
              "state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"}
    with client.http() as http:
        pushed = http.post(fapi.base_url + "/par", data={**params, **client.assertion()}, headers=headers or {})
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]
    assert 0 < pushed.json()["expires_in"] <= 60

    page.goto(fapi.base_url + "/authorize?" + urlencode({"client_id": client.client_id, "request_uri": request_uri}))
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    assert page.text_content("#consent-client").strip() == "FAPI RP"
    page.click("#consent-allow")
    page.wait_for_selector("#rp-callback")
    q = rp.last()
    # RFC 9207: the authorization response names its issuer; the client checks it before using the code
    assert q["iss"] == fapi.issuer and q["state"] == state and "code" in q and "error" not in q
    return Authorized(q["code"], verifier, nonce)


def test_fapi2_code_flow_in_chromium_with_a_certificate_bound_token(fapi: TlsServer, pki: TlsPki,
                                                                    rp: RelyingParty, tls_page: Any) -> None:
    client = _register(fapi, rp, pki, tls_client_certificate_bound_access_tokens=True)
    user = new_user(fapi, name="FAPI User")
    auth = _authorize_in_chromium(fapi, client, rp, tls_page, user)
    token_form = auth.token_form(rp)
    with client.http(with_certificate=False) as http:  # no certificate, nothing to bind the token to: refused
        unbound = http.post(fapi.base_url + "/token", data={**token_form, **client.assertion()})
    assert unbound.status_code == 400 and unbound.json()["error"] == "invalid_request", unbound.text
    with client.http() as http:  # at once: FAPI 2.0 codes live at most 60 seconds
        r = http.post(fapi.base_url + "/token", data={**token_form, **client.assertion()})
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    tokens = r.json()
    assert tokens["token_type"] == "Bearer"  # RFC 8705 §3: bound by cnf, still presented as Bearer
    assert _claims(tokens["access_token"])["cnf"] == {"x5t#S256": client.cert.thumbprint}
    id_claims = _verify_id_token(fapi, tokens["id_token"], client.client_id)
    assert id_claims["sub"] == user["id"] and id_claims["nonce"] == auth.nonce

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    with client.http() as http:
        info = http.get(fapi.base_url + "/userinfo", headers=bearer)
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == user["id"] and info.json()["name"] == "FAPI User"
    with client.http(with_certificate=False) as stolen:  # the token alone, without the certificate: refused
        refused = stolen.get(fapi.base_url + "/userinfo", headers=bearer)
    assert refused.status_code == 401, refused.text


def test_fapi2_code_flow_in_chromium_with_a_dpop_bound_token(fapi: TlsServer, pki: TlsPki, rp: RelyingParty,
                                                              tls_page: Any) -> None:
    """The same flow, sender-constrained by DPoP instead: the proof at /par binds the code to the key (RFC 9449
    §10.1), the token is DPoP-bound (``cnf.jkt``), and /userinfo wants it with a proof by that key. No client
    certificate at the token endpoint or /userinfo: DPoP alone constrains the token."""
    client = _register(fapi, rp, pki, dpop_bound_access_tokens=True)
    user = new_user(fapi, name="FAPI User")
    dpop, thief = DPoPKey.generate(), DPoPKey.generate()
    token_url, userinfo_url = fapi.issuer + "/token", fapi.issuer + "/userinfo"
    auth = _authorize_in_chromium(fapi, client, rp, tls_page, user,
                                  headers={"DPoP": dpop.proof("POST", fapi.issuer + "/par")})
    token_form = auth.token_form(rp)
    with client.http(with_certificate=False) as http:
        # the code is bound to the key that pushed the request: a proof by another key does not redeem it
        other = http.post(fapi.base_url + "/token", data={**token_form, **client.assertion()},
                          headers={"DPoP": thief.proof("POST", token_url)})
        assert other.status_code == 400 and other.json()["error"] == "invalid_grant", other.text
        r = http.post(fapi.base_url + "/token", data={**token_form, **client.assertion()},
                      headers={"DPoP": dpop.proof("POST", token_url)})
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    tokens = r.json()
    assert tokens["token_type"] == "DPoP"  # RFC 9449 §5
    assert _claims(tokens["access_token"])["cnf"] == {"jkt": dpop.jkt}
    id_claims = _verify_id_token(fapi, tokens["id_token"], client.client_id)
    assert id_claims["sub"] == user["id"] and id_claims["nonce"] == auth.nonce

    at = tokens["access_token"]
    with client.http(with_certificate=False) as http:
        info = http.get(fapi.base_url + "/userinfo", headers={
            "Authorization": f"DPoP {at}", "DPoP": dpop.proof("GET", userinfo_url, at)})
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == user["id"] and info.json()["name"] == "FAPI User"
        # the token without the key: as Bearer, or with a proof by another key, refused
        downgrade = http.get(fapi.base_url + "/userinfo", headers={"Authorization": f"Bearer {at}"})
        assert downgrade.status_code == 401, downgrade.text
        assert downgrade.headers["www-authenticate"].startswith("DPoP ")  # RFC 9449 §7.1
        stolen = http.get(fapi.base_url + "/userinfo", headers={
            "Authorization": f"DPoP {at}", "DPoP": thief.proof("GET", userinfo_url, at)})
        assert stolen.status_code == 401 and stolen.json()["error"] == "invalid_dpop_proof", stolen.text
        # the refresh token is the key's too (a confidential client's; RFC 9449 §5 binds it for public ones)
        refreshed = http.post(fapi.base_url + "/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **client.assertion()},
            headers={"DPoP": dpop.proof("POST", token_url)})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["token_type"] == "DPoP"
    assert _claims(refreshed.json()["access_token"])["cnf"] == {"jkt": dpop.jkt}


def test_fapi2_plain_authorize_is_refused_in_chromium(fapi: TlsServer, pki: TlsPki, rp: RelyingParty,
                                                      tls_page: Any) -> None:
    """Not pushed: before any sign-in, the browser goes back to the client with an error naming the FAPI 2.0
    rule and where to push, and ``iss`` (the redirect URI is the client's registered one, so the error can go
    there, RFC 6749 §4.1.2.1)."""
    page = tls_page
    client = _register(fapi, rp, pki)
    _, challenge = _pkce()
    state = "st-" + secrets.token_hex(6)
    page.goto(fapi.base_url + "/authorize?" + urlencode({
        "response_type": "code", "client_id": client.client_id, "redirect_uri": rp.callback, "scope": SCOPE,
        "state": state, "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"}))
    page.wait_for_selector("#rp-callback")
    assert page.locator("#username").count() == 0
    q = rp.last()
    assert q["state"] == state and q["error"] == "invalid_request" and "code" not in q
    assert "FAPI 2.0" in q["error_description"] and "/par" in q["error_description"]
    assert q["iss"] == fapi.issuer
    assert urlsplit(page.url).path == "/callback" and "error" in parse_qs(urlsplit(page.url).query)


def test_openid_client_in_fapi2_mode(fapi: TlsServer, pki: TlsPki, rp: RelyingParty, tls_page: Any,
                                     rp_process: StartRp) -> None:
    """panva's openid-client as the FAPI 2.0 client: private_key_jwt (its own assertions), PAR, PKCE S256 and
    DPoP (getDPoPHandle) at /par, the token endpoint, /userinfo and the refresh; it checks ``iss`` in the
    redirect itself (the server advertises it, RFC 9207 §3). Chromium signs in and consents."""
    key, kid = ec.generate_private_key(ec.SECP256R1()), secrets.token_hex(4)
    registered = fapi.create_client(
        name="Node FAPI RP", client_type="confidential", token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [_public_jwk(key, kid)]}, grant_types=["authorization_code", "refresh_token"],
        scopes=SCOPE.split(), redirect_uris=[rp.callback], dpop_bound_access_tokens=True)
    user = new_user(fapi, name="FAPI Node User")
    private_jwk = {**{k: v for k, v in _public_jwk(key, kid).items() if k in ("kty", "crv", "x", "y", "kid")},
                   "d": base64.urlsafe_b64encode(key.private_numbers().private_value.to_bytes(32, "big"))
                   .rstrip(b"=").decode()}
    proc = rp_process(fapi.issuer, registered["client_id"], rp.callback, "--par", "--dpop", "--private-key-jwt",
                      env={"RP_PRIVATE_JWK": json.dumps(private_jwk),
                           "NODE_EXTRA_CA_CERTS": str(pki.server_ca.cert_path)})
    start = read_line(proc)
    parts = urlsplit(start["authorization_url"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == fapi.issuer + "/authorize"
    assert set(parse_qs(parts.query)) == {"client_id", "request_uri"}
    tls_page.goto(start["authorization_url"])
    sign_in(tls_page, user)
    tls_page.wait_for_selector("#consent-form")
    assert tls_page.text_content("#consent-client").strip() == "Node FAPI RP"
    tls_page.click("#consent-allow")
    tls_page.wait_for_selector("#rp-callback")
    assert rp.last()["iss"] == fapi.issuer and rp.last()["state"] == start["state"]
    result = send_callback(proc, tls_page.url)

    jkt = jwk_thumbprint(result["dpop_public_jwk"])
    assert result["issuer"] == fapi.issuer
    assert result["token_type"].lower() == "dpop" and result["refreshed_token_type"].lower() == "dpop"
    assert _claims(result["access_token"])["cnf"] == {"jkt": jkt}
    assert _claims(result["refreshed"]["access_token"])["cnf"] == {"jkt": jkt}
    assert result["claims"]["sub"] == user["id"] and result["claims"]["nonce"] == start["nonce"]
    assert result["claims"]["aud"] == registered["client_id"]
    assert result["userinfo"]["sub"] == user["id"] and result["refreshed_userinfo_sub"] == user["id"]
