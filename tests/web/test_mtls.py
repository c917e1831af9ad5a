"""Mutual TLS (RFC 8705) against a real server with a real TLS listener: a test PKI made here with
``cryptography``, httpx clients presenting certificates over TLS, the trusted-proxy header, and the resource
toolkit's binding check."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import secrets
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ostiary.core import jose
from ostiary.resource import ClientCertificates, InvalidToken, ProtectedResourceMetadata, TokenVerifier
from ostiary.resource.starlette import BearerAuthMiddleware

from ..support import BIN, LiveServer, base_env, free_port, ostiary
from ._codeflow import REDIRECT, Browser, get_code, new_user, pkce

API = "https://api.mtls.example"
PROXY_HEADER = "X-Client-Cert"
TRUSTED_PROXY = "127.0.0.2"  # the whole of 127/8 is loopback on Linux: a second local address to connect from


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ostiary Test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def thumbprint(self) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(self.der).digest()).rstrip(b"=").decode()


def _issue(directory: Path, label: str, subject: x509.Name, *, issuer: Issued | None = None, ca: bool = False,
           sans: list[x509.GeneralName] | None = None, server: bool = False) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if issuer is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                                        critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    cert_path, key_path = directory / f"{label}.crt", directory / f"{label}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Issued(cert, key, cert_path, key_path)


@dataclass
class Pki:
    server_ca: Issued
    client_ca: Issued
    other_ca: Issued
    server: Issued
    good: Issued  # CN=billing, SAN dns billing.internal, from the client CA
    other: Issued  # CN=reports, from the client CA
    wrong_ca: Issued  # CN=billing, from a CA nobody trusts
    wrong_ca_bundle: Path  # the handshake accepts it (it is in the listener's bundle), the app must not
    self_signed: Issued
    self_signed_other: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    server_ca = _issue(d, "server-ca", _name("Test Server CA"), ca=True)
    client_ca = _issue(d, "client-ca", _name("Test Client CA"), ca=True)
    other_ca = _issue(d, "other-ca", _name("Untrusted CA"), ca=True)
    server = _issue(d, "server", _name("localhost"), issuer=server_ca, server=True,
                    sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    good = _issue(d, "good", _name("billing"), issuer=client_ca, sans=[x509.DNSName("billing.internal")])
    other = _issue(d, "other", _name("reports"), issuer=client_ca)
    wrong_ca = _issue(d, "wrong-ca", _name("billing"), issuer=other_ca, sans=[x509.DNSName("billing.internal")])
    self_signed = _issue(d, "self-signed", _name("mobile-app"))
    self_signed_other = _issue(d, "self-signed-other", _name("mobile-app-2"))
    bundle = d / "wrong-ca-bundle.crt"
    bundle.write_text(other_ca.pem)
    return Pki(server_ca, client_ca, other_ca, server, good, other, wrong_ca, bundle, self_signed,
               self_signed_other)


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``ostiary serve`` with its own TLS listener asking for client certificates (optional), the proxy header
    believed from 127.0.0.2 only."""
    tmp = tmp_path_factory.mktemp("mtls-server")
    # The listener's handshake bundle: the client CA, and the self-signed certificates (Python's ssl verifies any
    # certificate a client presents; there is no "accept any" mode). The app's trust anchors: the client CA only.
    listener_bundle = tmp / "listener-clients.crt"
    listener_bundle.write_text(pki.client_ca.pem + pki.self_signed.pem + pki.self_signed_other.pem)
    anchors = tmp / "anchors.crt"
    anchors.write_text(pki.client_ca.pem)
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    admin_token = "admin-" + secrets.token_urlsafe(24)
    env = base_env(f"sqlite+aiosqlite:///{tmp / 'mtls.db'}", issuer, secrets.token_urlsafe(40), admin_token, {
        "OSTIARY_SERVER__TLS_CERT_FILE": str(pki.server.cert_path),
        "OSTIARY_SERVER__TLS_KEY_FILE": str(pki.server.key_path),
        "OSTIARY_SERVER__TLS_CLIENT_CA_FILE": str(listener_bundle),
        "OSTIARY_SERVER__TRUSTED_PROXIES": TRUSTED_PROXY,
        "OSTIARY_MTLS__CA_FILE": str(anchors),
        "OSTIARY_MTLS__PROXY_CERT_HEADER": PROXY_HEADER,
        # dynamic registration (RFC 7591) with initial access tokens: the mTLS clients of RFC 8705 register too
        "OSTIARY_REGISTRATION__POLICY": "initial_access_token",
        "OSTIARY_REGISTRATION__AUDIENCES": API,
        "OSTIARY_REGISTRATION__PER_IP": "1000",  # refused registrations count toward the per-address limit
    })
    ostiary(["migrate"], env)
    log_path = tmp / "server.log"
    srv = LiveServer(base_url=issuer, env=env, admin_token=admin_token, log_path=log_path, verify=_context(pki))
    with open(log_path, "ab") as log:
        srv.procs.append(subprocess.Popen([str(BIN / "ostiary"), "serve", "--port", str(port)], env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 90
    while True:
        if srv.procs[0].poll() is not None or time.monotonic() > deadline:
            srv.stop()
            raise AssertionError("TLS server did not start:\n" + srv.log())
        try:
            if httpx.get(issuer + "/readyz", verify=_context(pki), timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield srv
    srv.stop()


def _context(pki: Pki, client: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.server_ca.cert_path))
    if client is not None:
        ctx.load_cert_chain(str(client.cert_path), str(client.key_path))
    return ctx


def _http(pki: Pki, client: Issued | None = None, *, local_address: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(verify=_context(pki, client), local_address=local_address)
    return httpx.Client(transport=transport, timeout=30)


def _admin(srv: LiveServer, pki: Pki) -> httpx.Client:
    return httpx.Client(base_url=srv.base_url + "/admin/api", verify=_context(pki), timeout=30,
                        headers={"Authorization": f"Bearer {srv.admin_token}"})


def _register(srv: LiveServer, pki: Pki, **spec: Any) -> str:
    spec.setdefault("name", "mtls client " + secrets.token_hex(3))
    spec.setdefault("audiences", [API])
    with _admin(srv, pki) as admin:
        r = admin.post("/clients", json=spec)
    assert r.status_code == 201, r.text
    assert "client_secret" not in r.json()
    return str(r.json()["client_id"])


def _token(srv: LiveServer, pki: Pki, client_id: str, cert: Issued | None, **extra: str) -> httpx.Response:
    with _http(pki, cert) as c:
        return c.post(srv.base_url + "/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                     **extra})


def _claims(token: str) -> dict[str, Any]:
    _, claims = jose.decode_unverified(token)
    return claims


def _self_signed_jwks(cert: Issued) -> dict[str, Any]:
    jwk = jose.public_jwk(cert.key.public_key(), "mobile", "ES256")
    return {"keys": [{**jwk, "x5c": [base64.b64encode(cert.der).decode()]}]}


def test_discovery_advertises_mtls(tls_server: LiveServer, pki: Pki) -> None:
    with _http(pki) as c:
        meta = c.get(tls_server.base_url + "/.well-known/oauth-authorization-server").json()
    assert meta["tls_client_certificate_bound_access_tokens"] is True
    for method in ("tls_client_auth", "self_signed_tls_client_auth"):
        assert method in meta["token_endpoint_auth_methods_supported"]
        assert method in meta["introspection_endpoint_auth_methods_supported"]


def test_tls_client_auth_with_the_registered_subject_dn(tls_server: LiveServer, pki: Pki) -> None:
    cid = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                    tls_client_auth_subject_dn="CN=billing,O=Ostiary Test",
                    tls_client_certificate_bound_access_tokens=True)
    r = _token(tls_server, pki, cid, pki.good)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"  # RFC 8705 §3: still a Bearer token, bound by cnf
    assert _claims(body["access_token"])["cnf"] == {"x5t#S256": pki.good.thumbprint}

    # introspection (the client authenticating with its certificate again) shows the binding, RFC 8705 §3.2
    with _http(pki, pki.good) as c:
        info = c.post(tls_server.base_url + "/introspect",
                      data={"client_id": cid, "token": body["access_token"]}).json()
    assert info["active"] is True and info["cnf"] == {"x5t#S256": pki.good.thumbprint}



def test_subject_dn_attribute_types_are_case_insensitive(tls_server: LiveServer, pki: Pki) -> None:
    """RFC 4514 §3 names attribute types by RFC 4512 descriptors, which are case-insensitive (RFC 4512 §1.4):
    ``cn=billing,o=ostiary test`` is the same DN as the certificate's ``CN=billing,O=Ostiary Test`` (values
    compare ignoring case, as before); another DN is still refused."""
    cid = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                    tls_client_auth_subject_dn="cn=billing,o=ostiary test")
    r = _token(tls_server, pki, cid, pki.good)
    assert r.status_code == 200, r.text
    assert _token(tls_server, pki, cid, pki.other).status_code == 401
    mixed = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                      tls_client_auth_subject_dn="Cn=billing,o=Ostiary Test")
    assert _token(tls_server, pki, mixed, pki.good).status_code == 200

def test_tls_client_auth_by_san(tls_server: LiveServer, pki: Pki) -> None:
    cid = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                    tls_client_auth_san_dns="BILLING.internal")
    r = _token(tls_server, pki, cid, pki.good)
    assert r.status_code == 200, r.text
    assert "cnf" not in _claims(r.json()["access_token"])  # the client did not ask for bound tokens
    refused = _token(tls_server, pki, cid, pki.other)  # same CA, no such SAN
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_tls_client_auth_refusals(tls_server: LiveServer, pki: Pki) -> None:
    cid = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                    tls_client_auth_subject_dn="CN=billing,O=Ostiary Test")
    wrong_dn = _token(tls_server, pki, cid, pki.other)
    assert wrong_dn.status_code == 401 and wrong_dn.json()["error"] == "invalid_client"
    no_cert = _token(tls_server, pki, cid, None)
    assert no_cert.status_code == 401 and no_cert.json()["error"] == "invalid_client"
    # a certificate of an untrusted CA does not even complete the handshake with the listener
    with pytest.raises(httpx.TransportError):  # TLS 1.3: the server aborts after the client finished
        _token(tls_server, pki, cid, pki.wrong_ca)
    # a client secret is no way in for a certificate client
    with _http(pki, pki.good) as c:
        r = c.post(tls_server.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(cid, "guess"))
    assert r.status_code == 401


def test_self_signed_tls_client_auth(tls_server: LiveServer, pki: Pki) -> None:
    cid = _register(tls_server, pki, token_endpoint_auth_method="self_signed_tls_client_auth",
                    jwks=_self_signed_jwks(pki.self_signed), tls_client_certificate_bound_access_tokens=True)
    r = _token(tls_server, pki, cid, pki.self_signed)
    assert r.status_code == 200, r.text
    assert _claims(r.json()["access_token"])["cnf"] == {"x5t#S256": pki.self_signed.thumbprint}
    for cert in (pki.self_signed_other, pki.good, None):  # another key, a CA-issued one, none
        refused = _token(tls_server, pki, cid, cert)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", cert


def test_self_signed_matched_by_public_key_without_x5c(tls_server: LiveServer, pki: Pki) -> None:
    cid = _register(tls_server, pki, token_endpoint_auth_method="self_signed_tls_client_auth",
                    jwks={"keys": [jose.public_jwk(pki.self_signed.key.public_key(), "k1", "ES256")]})
    assert _token(tls_server, pki, cid, pki.self_signed).status_code == 200
    assert _token(tls_server, pki, cid, pki.self_signed_other).status_code == 401


def test_self_signed_with_jwks_uri(tls_server: LiveServer, pki: Pki, jwks_host: tuple[str, dict]) -> None:
    """RFC 8705 §2.2: the client registers its certificates as x5c in ``jwks`` or at ``jwks_uri``. Fetched as
    private_key_jwt's keys are; a certificate no key matches refetches once (the client rotated it), and one that
    matches nothing after that is ``invalid_client``."""
    uri, state = jwks_host
    state["jwks"] = _self_signed_jwks(pki.self_signed)
    cid = _register(tls_server, pki, token_endpoint_auth_method="self_signed_tls_client_auth", jwks_uri=uri,
                    tls_client_certificate_bound_access_tokens=True)
    r = _token(tls_server, pki, cid, pki.self_signed)
    assert r.status_code == 200, r.text
    assert _claims(r.json()["access_token"])["cnf"] == {"x5t#S256": pki.self_signed.thumbprint}
    fetched = state["hits"]
    assert fetched >= 1
    # the client adds a certificate: the cached JWKS does not hold it, the forced refetch does
    state["jwks"] = {"keys": [*_self_signed_jwks(pki.self_signed)["keys"],
                              *_self_signed_jwks(pki.self_signed_other)["keys"]]}
    rotated = _token(tls_server, pki, cid, pki.self_signed_other)
    assert rotated.status_code == 200, rotated.text
    assert _claims(rotated.json()["access_token"])["cnf"] == {"x5t#S256": pki.self_signed_other.thumbprint}
    assert state["hits"] == fetched + 1
    for cert in (pki.good, None):  # a key the JWKS does not hold, even after the refetch; no certificate
        refused = _token(tls_server, pki, cid, cert)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text


def test_self_signed_with_a_jwks_uri_that_cannot_be_fetched(tls_server: LiveServer, pki: Pki) -> None:
    """As for private_key_jwt: the client's keys cannot be loaded, so it is not authenticated (401
    ``invalid_client``), never a server error."""
    cid = _register(tls_server, pki, token_endpoint_auth_method="self_signed_tls_client_auth",
                    jwks_uri=f"http://127.0.0.1:{free_port()}/jwks.json")
    r = _token(tls_server, pki, cid, pki.self_signed)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text


def test_cli_registers_a_self_signed_client_with_jwks_uri(tls_server: LiveServer, pki: Pki,
                                                          jwks_host: tuple[str, dict]) -> None:
    uri, state = jwks_host
    state["jwks"] = _self_signed_jwks(pki.self_signed)
    proc = tls_server.cli("client", "create", "--name", "cli self-signed", "--auth-method",
                          "self_signed_tls_client_auth", "--jwks-uri", uri, "--audience", API, "--json")
    view = json.loads(proc.stdout)
    assert view["token_endpoint_auth_method"] == "self_signed_tls_client_auth" and view["jwks_uri"] == uri
    assert _token(tls_server, pki, view["client_id"], pki.self_signed).status_code == 200
    bad = tls_server.cli("client", "create", "--name", "no keys", "--auth-method", "self_signed_tls_client_auth",
                         "--audience", API, check=False)
    assert bad.returncode != 0 and "--jwks-uri" in bad.stdout + bad.stderr


def test_bound_tokens_need_a_certificate_whatever_the_auth_method(tls_server: LiveServer, pki: Pki) -> None:
    with _admin(tls_server, pki) as admin:
        r = admin.post("/clients", json={"name": "secret + binding", "audiences": [API],
                                         "tls_client_certificate_bound_access_tokens": True})
    client = r.json()
    with _http(pki, pki.other) as c:
        ok = c.post(tls_server.base_url + "/token", data={"grant_type": "client_credentials"},
                    auth=(client["client_id"], client["client_secret"]))
    assert ok.status_code == 200, ok.text
    assert _claims(ok.json()["access_token"])["cnf"] == {"x5t#S256": pki.other.thumbprint}
    with _http(pki) as c:
        refused = c.post(tls_server.base_url + "/token", data={"grant_type": "client_credentials"},
                         auth=(client["client_id"], client["client_secret"]))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"


def test_proxy_header_only_from_a_trusted_proxy(tls_server: LiveServer, pki: Pki) -> None:
    cid = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                    tls_client_auth_subject_dn="CN=billing,O=Ostiary Test",
                    tls_client_certificate_bound_access_tokens=True)
    header = {PROXY_HEADER: quote(pki.good.pem)}  # nginx's $ssl_client_escaped_cert
    data = {"grant_type": "client_credentials", "client_id": cid}
    with _http(pki, local_address=TRUSTED_PROXY) as proxy:
        r = proxy.post(tls_server.base_url + "/token", data=data, headers=header)
        assert r.status_code == 200, r.text
        assert _claims(r.json()["access_token"])["cnf"] == {"x5t#S256": pki.good.thumbprint}
        # the app checks the chain itself: a proxy that accepts any certificate cannot let a foreign CA in
        foreign = proxy.post(tls_server.base_url + "/token", data=data,
                             headers={PROXY_HEADER: quote(pki.wrong_ca.pem)})
        assert foreign.status_code == 401
        # from a trusted proxy the header is the only source: without it, no certificate
        assert proxy.post(tls_server.base_url + "/token", data=data).status_code == 401
    with _http(pki, local_address="127.0.0.1") as stranger:
        ignored = stranger.post(tls_server.base_url + "/token", data=data, headers=header)
    assert ignored.status_code == 401 and ignored.json()["error"] == "invalid_client"
    # and a stranger's header does not override its own TLS certificate either
    with _http(pki, pki.other, local_address="127.0.0.1") as stranger:
        ignored = stranger.post(tls_server.base_url + "/token", data=data, headers=header)
    assert ignored.status_code == 401


def test_cli_registers_a_tls_client(tls_server: LiveServer, pki: Pki) -> None:
    proc = tls_server.cli("client", "create", "--name", "cli mtls", "--auth-method", "tls_client_auth",
                          "--tls-subject-dn", "CN=billing,O=Ostiary Test", "--cert-bound-tokens",
                          "--audience", API, "--json")
    view = json.loads(proc.stdout)
    assert view["token_endpoint_auth_method"] == "tls_client_auth"
    assert view["tls_client_auth_subject_dn"] == "CN=billing,O=Ostiary Test"
    assert view["tls_client_certificate_bound_access_tokens"] is True
    assert _token(tls_server, pki, view["client_id"], pki.good).status_code == 200
    bad = tls_server.cli("client", "create", "--name", "no dn", "--auth-method", "tls_client_auth",
                         "--audience", API, check=False)
    assert bad.returncode != 0 and "--tls-subject-dn" in bad.stdout + bad.stderr


# -- the resource toolkit ---------------------------------------------------------------------------


def _api(verifier: TokenVerifier, certificates: ClientCertificates) -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.state.access_token.subject})

    app = Starlette(routes=[Route("/whoami", whoami)])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, certificates=certificates)
    return app


def _with_tls_extension(app: Any, pem: str | None) -> Any:
    """What a TLS-terminating ASGI server (Hypercorn, Ostiary's) puts in the scope."""
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "extensions": {"tls": {"client_cert_chain": [pem] if pem else []}}}
        await app(scope, receive, send)
    return wrapped


@pytest.fixture(scope="module")
def bound_token(tls_server: LiveServer, pki: Pki) -> str:
    cid = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                    tls_client_auth_subject_dn="CN=billing,O=Ostiary Test",
                    tls_client_certificate_bound_access_tokens=True)
    r = _token(tls_server, pki, cid, pki.good)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def verifier(tls_server: LiveServer, pki: Pki) -> Iterator[TokenVerifier]:
    http = httpx.Client(verify=_context(pki), timeout=30)
    v = TokenVerifier(tls_server.issuer, API, http_client=http, async_http_client=httpx.AsyncClient(
        verify=_context(pki), timeout=30))
    yield v
    http.close()


def test_resource_verifier_checks_the_binding(verifier: TokenVerifier, bound_token: str, pki: Pki) -> None:
    assert verifier.verify(bound_token, client_cert=pki.good.pem).subject
    assert verifier.verify(bound_token, client_cert=pki.good.der).subject  # DER as well
    with pytest.raises(InvalidToken):
        verifier.verify(bound_token, client_cert=pki.other.pem)
    with pytest.raises(InvalidToken):
        verifier.verify(bound_token)  # cached as valid, still refused without the certificate


@pytest.mark.parametrize("presented, status", [("good", 200), ("other", 401), (None, 401)])
async def test_resource_middleware_tls_extension(verifier: TokenVerifier, bound_token: str, pki: Pki,
                                                 presented: str | None, status: int) -> None:
    pem = getattr(pki, presented).pem if presented else None
    app = _with_tls_extension(_api(verifier, ClientCertificates()), pem)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        r = await c.get("/whoami", headers={"Authorization": f"Bearer {bound_token}"})
    assert r.status_code == status, r.text
    if status == 401:
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_resource_middleware_proxy_header(verifier: TokenVerifier, bound_token: str, pki: Pki) -> None:
    header = {"Authorization": f"Bearer {bound_token}", PROXY_HEADER: quote(pki.good.pem)}
    # httpx's ASGITransport connects from 127.0.0.1
    trusted = ClientCertificates(header=PROXY_HEADER, trusted_proxies=["127.0.0.0/8"])
    untrusted = ClientCertificates(header=PROXY_HEADER, trusted_proxies=["10.0.0.0/8"])
    for certificates, status in ((trusted, 200), (untrusted, 401)):
        app = _api(verifier, certificates)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
            r = await c.get("/whoami", headers=header)
        assert r.status_code == status, r.text


async def test_resource_metadata_says_it_takes_certificate_bound_tokens(verifier: TokenVerifier, bound_token: str,
                                                                       pki: Pki) -> None:
    """RFC 9728 §2: an API that receives client certificates (here from a trusted proxy) says it accepts
    certificate-bound tokens, and does: the bound token with its certificate passes, without it it does not."""
    metadata = ProtectedResourceMetadata(API, [verifier.issuer], tls_client_certificate_bound_access_tokens=True)
    app = Starlette(routes=[Route("/whoami", lambda r: JSONResponse({"sub": r.state.access_token.subject}))])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, metadata=metadata,
                       certificates=ClientCertificates(header=PROXY_HEADER, trusted_proxies=["127.0.0.0/8"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API) as c:
        doc = (await c.get("/.well-known/oauth-protected-resource")).json()
        assert doc["tls_client_certificate_bound_access_tokens"] is True
        auth = {"Authorization": f"Bearer {bound_token}"}
        assert (await c.get("/whoami", headers={**auth, PROXY_HEADER: quote(pki.good.pem)})).status_code == 200
        assert (await c.get("/whoami", headers=auth)).status_code == 401


def test_an_unbound_token_needs_no_certificate(tls_server: LiveServer, pki: Pki, verifier: TokenVerifier) -> None:
    cid = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                    tls_client_auth_subject_dn="CN=billing,O=Ostiary Test")
    token = _token(tls_server, pki, cid, pki.good).json()["access_token"]
    assert verifier.verify(token).client_id == cid


# -- pushed authorization requests (RFC 9126) ---------------------------------------------------------


def test_pushed_authorization_request_authenticates_with_the_certificate(tls_server: LiveServer, pki: Pki) -> None:
    """RFC 9126 §2: the client authenticates at the PAR endpoint as at the token endpoint, so a
    ``tls_client_auth`` or ``self_signed_tls_client_auth`` client (RFC 8705 §2) with its TLS certificate."""
    code_flow = {"grant_types": ["authorization_code"], "redirect_uris": [REDIRECT], "scopes": ["openid"]}
    pki_client = _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                           tls_client_auth_subject_dn="CN=billing,O=Ostiary Test", **code_flow)
    self_signed = _register(tls_server, pki, token_endpoint_auth_method="self_signed_tls_client_auth",
                            jwks=_self_signed_jwks(pki.self_signed), **code_flow)
    for cid, cert, stranger in ((pki_client, pki.good, pki.other), (self_signed, pki.self_signed, pki.good)):
        params = {"client_id": cid, "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid",
                  "code_challenge": pkce()[1], "code_challenge_method": "S256", "state": secrets.token_hex(8)}
        with _http(pki, cert) as c:
            r = c.post(tls_server.base_url + "/par", data=params)
        assert r.status_code == 201, r.text
        assert r.json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
        for other in (stranger, None):  # another certificate, or none: refused as at the token endpoint
            with _http(pki, other) as c:
                refused = c.post(tls_server.base_url + "/par", data=params)
            assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text


# -- certificates that parse, but whose parts do not ----------------------------------------------------


def _unreadable(pki: Pki, flaw: str) -> str:
    """A PEM certificate whose outer DER is well formed (``cryptography`` loads it), with one part that is not:
    what a TLS-terminating proxy that does not check certificates (nginx ``optional_no_ca``) may forward."""
    key = pki.good.key
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name("billing")).issuer_name(pki.client_ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
    if flaw == "truncated SAN":
        builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.17"),
                                                                   b"\x30\x03\x82\x01"), critical=False)
    else:  # both: a SAN and an issuer alternative name, renamed below
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("billing.internal")]), False)
                   .add_extension(x509.IssuerAlternativeName([x509.DNSName("billing.internal")]), False))
    der = builder.sign(pki.client_ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    if flaw == "duplicate SAN":  # the issuer alternative name's OID (2.5.29.18) becomes a second SAN (2.5.29.17)
        der = der.replace(bytes.fromhex("0603551d12"), bytes.fromhex("0603551d11"))
    elif flaw == "unknown key type":  # id-ecPublicKey (1.2.840.10045.2.1) becomes an OID nobody knows
        der = der.replace(bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d0209"))
    x509.load_der_x509_certificate(der)  # the outer structure still loads
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("flaw", ["truncated SAN", "duplicate SAN", "unknown key type"])
def test_an_unreadable_certificate_is_invalid_client_not_a_server_error(tls_server: LiveServer, pki: Pki,
                                                                        flaw: str) -> None:
    """RFC 8705 §2 / RFC 6749 §5.2: a certificate that cannot be read authenticates nobody: 401
    ``invalid_client``, whichever registered name or key it is checked against, never a 5xx."""
    clients = [
        _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                  tls_client_auth_subject_dn="CN=billing,O=Ostiary Test"),
        _register(tls_server, pki, token_endpoint_auth_method="tls_client_auth",
                  tls_client_auth_san_dns="billing.internal"),
        _register(tls_server, pki, token_endpoint_auth_method="self_signed_tls_client_auth",
                  jwks={"keys": [jose.public_jwk(pki.good.key.public_key(), "k1", "ES256")]}),
    ]
    header = {PROXY_HEADER: quote(_unreadable(pki, flaw))}
    with _http(pki, local_address=TRUSTED_PROXY) as proxy:
        for cid in clients:
            r = proxy.post(tls_server.base_url + "/token", headers=header,
                           data={"grant_type": "client_credentials", "client_id": cid})
            assert r.status_code == 401, (cid, r.status_code, r.text)
            assert r.json()["error"] == "invalid_client"


# -- dynamic client registration (RFC 7591 with RFC 8705 §2.1.2, §2.2.2, §3.4) -----------------------------------


def _iat(srv: LiveServer, uses: int = 1) -> str:
    out = json.loads(srv.cli("client", "registration-token", "create", "--json", "--uses", str(uses)).stdout)
    return str(out["initial_access_token"])


def _dynamic(srv: LiveServer, pki: Pki, token: str | None, **metadata: Any) -> httpx.Response:
    body = {"client_name": "dynamic mtls", "redirect_uris": [REDIRECT], "grant_types": ["authorization_code"],
            "response_types": ["code"], **metadata}
    with _http(pki) as c:
        return c.post(srv.base_url + "/register", json=body,
                      headers={"Authorization": "Bearer " + token} if token else {})


def _code_flow_token(srv: LiveServer, pki: Pki, client_id: str, cert: Issued | None) -> httpx.Response:
    """A person signs in and consents; the client exchanges the code at /token over TLS with ``cert``."""
    b = Browser(srv)
    try:
        code, verifier, _ = get_code(b, {"client_id": client_id}, new_user(srv))
    finally:
        b.close()
    with _http(pki, cert) as c:
        return c.post(srv.base_url + "/token", data={"grant_type": "authorization_code", "code": code,
                                                     "redirect_uri": REDIRECT, "code_verifier": verifier,
                                                     "client_id": client_id})


def test_dynamic_registration_of_a_tls_client_auth_client(tls_server: LiveServer, pki: Pki) -> None:
    r = _dynamic(tls_server, pki, _iat(tls_server), token_endpoint_auth_method="tls_client_auth",
                 tls_client_auth_san_dns="billing.internal", tls_client_certificate_bound_access_tokens=True)
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["token_endpoint_auth_method"] == "tls_client_auth" and "client_secret" not in reg
    assert reg["tls_client_auth_san_dns"] == "billing.internal"
    assert reg["tls_client_certificate_bound_access_tokens"] is True
    cid = reg["client_id"]
    refused = _code_flow_token(tls_server, pki, cid, pki.other)  # same CA, not the registered SAN
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text
    ok = _code_flow_token(tls_server, pki, cid, pki.good)
    assert ok.status_code == 200, ok.text
    assert _claims(ok.json()["access_token"])["cnf"] == {"x5t#S256": pki.good.thumbprint}

    # RFC 7592: read shows the registration; an update replaces the certificate's name
    auth = {"Authorization": "Bearer " + reg["registration_access_token"]}
    with _http(pki) as c:
        read = c.get(reg["registration_client_uri"], headers=auth).json()
        assert read["tls_client_auth_san_dns"] == "billing.internal"
        assert read["tls_client_certificate_bound_access_tokens"] is True
        update = {"client_id": cid, "redirect_uris": [REDIRECT], "grant_types": ["authorization_code"],
                  "token_endpoint_auth_method": "tls_client_auth",
                  "tls_client_auth_subject_dn": "CN=reports,O=Ostiary Test"}
        updated = c.put(reg["registration_client_uri"], headers=auth, json=update)
    assert updated.status_code == 200, updated.text
    assert updated.json()["tls_client_auth_subject_dn"] == "CN=reports,O=Ostiary Test"
    assert "tls_client_auth_san_dns" not in updated.json()
    assert updated.json()["tls_client_certificate_bound_access_tokens"] is False  # left out: the default
    assert _code_flow_token(tls_server, pki, cid, pki.good).status_code == 401
    now_ok = _code_flow_token(tls_server, pki, cid, pki.other)
    assert now_ok.status_code == 200, now_ok.text
    assert "cnf" not in _claims(now_ok.json()["access_token"])


@pytest.mark.parametrize("where", ["jwks", "jwks_uri"])
def test_dynamic_registration_of_a_self_signed_client(tls_server: LiveServer, pki: Pki, where: str,
                                                      jwks_host: tuple[str, dict]) -> None:
    uri, state = jwks_host
    state["jwks"] = _self_signed_jwks(pki.self_signed)
    keys = {"jwks": state["jwks"]} if where == "jwks" else {"jwks_uri": uri}
    r = _dynamic(tls_server, pki, _iat(tls_server), token_endpoint_auth_method="self_signed_tls_client_auth",
                 tls_client_certificate_bound_access_tokens=True, **keys)
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["token_endpoint_auth_method"] == "self_signed_tls_client_auth"
    assert reg[where] == keys[where] and reg["tls_client_certificate_bound_access_tokens"] is True
    refused = _code_flow_token(tls_server, pki, reg["client_id"], pki.self_signed_other)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text
    ok = _code_flow_token(tls_server, pki, reg["client_id"], pki.self_signed)
    assert ok.status_code == 200, ok.text
    assert _claims(ok.json()["access_token"])["cnf"] == {"x5t#S256": pki.self_signed.thumbprint}


@pytest.mark.parametrize("metadata, names", [
    ({"token_endpoint_auth_method": "tls_client_auth"}, ["tls_client_auth_subject_dn", "tls_client_auth_san_dns"]),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN=billing,O=Ostiary Test",
      "tls_client_auth_san_dns": "billing.internal"}, ["tls_client_auth_subject_dn", "tls_client_auth_san_dns"]),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "not a DN"},
     ["tls_client_auth_subject_dn", "RFC 4514"]),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_ip": "not-an-ip"},
     ["tls_client_auth_san_ip"]),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "a" * 300},
     ["tls_client_auth_san_dns", "253"]),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "billing.internal",
      "tls_client_certificate_bound_access_tokens": "true"}, ["tls_client_certificate_bound_access_tokens"]),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth"}, ["jwks", "jwks_uri"]),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": {"keys": []},
      "jwks_uri": "https://client.example/jwks.json"}, ["jwks", "jwks_uri"]),
    ({"token_endpoint_auth_method": "client_secret_basic", "tls_client_auth_san_dns": "billing.internal"},
     ["tls_client_auth_san_dns", "only for"]),
    ({"token_endpoint_auth_method": "client_secret_basic", "jwks_uri": "https://client.example/jwks.json"},
     ["private_key_jwt and self_signed_tls_client_auth"]),
])
def test_dynamic_registration_refuses_incomplete_mtls_metadata(tls_server: LiveServer, pki: Pki,
                                                               metadata: dict[str, Any], names: list[str]) -> None:
    token = _iat(tls_server)
    r = _dynamic(tls_server, pki, token, **metadata)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_client_metadata"
    for name in names:
        assert name in r.json()["error_description"], r.json()
    # a refused registration does not spend the token (RFC 7591 §3: it registered nothing)
    assert _dynamic(tls_server, pki, token, token_endpoint_auth_method="self_signed_tls_client_auth",
                    jwks=_self_signed_jwks(pki.self_signed)).status_code == 201
