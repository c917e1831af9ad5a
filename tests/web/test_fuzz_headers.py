"""Property-based fuzzing of the headers only some deployments read: those of a trusted reverse proxy (the
client address in ``X-Forwarded-For`` or RFC 7239 ``Forwarded``, the client certificate in ``X-Client-Cert``),
DPoP proofs (RFC 9449) and ``Host``, on every route, with Redis as the replay cache and the rate limiter.

``test_fuzz.py`` fuzzes paths, queries, bodies, cookies and ``Authorization`` on a server behind no proxy, where
these headers are ignored or stripped. Here the test client's address is a trusted proxy, so every value is read:
addresses of every shape and size, quoted strings with escapes, certificates that are truncated, corrupted,
doubled or not certificates at all, and DPoP proofs that are garbage, forged, or correctly signed with hostile
claims (so they reach the checks after the signature: ``htu`` parsing, ``iat``, the ``jti`` replay cache,
``nonce``, ``ath``). Whatever arrives, never a 5xx and never a traceback.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import event, given, reject, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey

from ..support import LiveServer, start_server
from .test_fuzz import (
    ASCII,
    B64URL,
    FUZZ,
    Target,
    any_requests,
    any_text,
    b64url,
    header_text,
    json_value,
    serving,
)

CERT_HEADER = "X-Client-Cert"


def _certificate(subject: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
                 ca: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))
    return cert, key


class Proxied(Target):
    """A server that trusts the test client as its reverse proxy, with an mTLS client, a self-signed mTLS client
    and a DPoP key. ``certs`` (PEM): the tls_client_auth client's, one with its subject from an untrusted issuer,
    the self-signed client's, the CA's."""

    def __init__(self, server: LiveServer, certs: list[str], self_signed_jwk: dict[str, Any]) -> None:
        super().__init__(server)
        self.certs = certs
        self.tls_client = server.create_client(scopes=["api:read"], token_endpoint_auth_method="tls_client_auth",
                                               tls_client_auth_subject_dn="CN=fuzz-client",
                                               tls_client_certificate_bound_access_tokens=True)
        self.self_signed_client = server.create_client(scopes=["api:read"], jwks={"keys": [self_signed_jwk]},
                                                       token_endpoint_auth_method="self_signed_tls_client_auth")
        self.dpop_key = ECKey.generate_key("P-256")


@pytest.fixture(scope="module", params=["x-forwarded-for", "forwarded"])
def proxied(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    tmp = tmp_path_factory.mktemp(f"fuzz-headers-{request.param}")
    ca_cert, ca_key = _certificate("fuzz CA", ca=True)
    good, _ = _certificate("fuzz-client", (ca_cert.subject, ca_key))
    stranger, _ = _certificate("fuzz-client")  # the right subject, signed by nobody trusted
    self_signed, self_key = _certificate("fuzz-self-signed")
    ca_file = Path(tmp / "ca.pem")
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}", tmp, extra_env={
        "OSTIARY_SERVER__TRUSTED_PROXIES": "127.0.0.1/32",
        "OSTIARY_SERVER__PROXY_HEADER": request.param,
        "OSTIARY_MTLS__CA_FILE": str(ca_file),
        "OSTIARY_MTLS__PROXY_CERT_HEADER": CERT_HEADER,
        "OSTIARY_REDIS_URL": "redis://127.0.0.1:6379/0",  # the prefix is the test server's own (tests/support.py)
        "OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "1000000",
    })
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (good, stranger, self_signed, ca_cert)]
    jwk = ECKey.import_key(self_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).as_dict(private=False)
    jwk["x5c"] = [base64.b64encode(self_signed.public_bytes(serialization.Encoding.DER)).decode()]
    with serving(Proxied(srv, pems, jwk)) as t:
        yield t


# ---------------------------------------------------------------- strategies

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(-1, 70000).map(str) | st.text(ASCII, max_size=6)
hop = st.one_of(
    ipv4, ipv6, ipv6.map(lambda a: f"[{a}]"),
    st.tuples(ipv4, port).map(":".join), st.tuples(ipv6, port).map(lambda p: f"[{p[0]}]:{p[1]}"),
    st.sampled_from(["unknown", "_hidden", "", " ", "[", "]", "[::1", "::1]", "1.2.3", "256.1.1.1", "0x7f.1",
                     "127.0.0.1%eth0", "[fe80::1%25eth0]", "01.02.03.04", "::ffff:127.0.0.1", "localhost"]),
    st.text(ASCII, max_size=20),
)


def forwarded_element(draw: st.DrawFn) -> str:
    pairs = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["for", "For", "FOR", "by", "proto", "host", "x", ""]) | st.text(ASCII, max_size=5))
        value = draw(hop | hop.map(lambda h: json.dumps(h)) | st.sampled_from(['"', '"\\"', '"a\\', '"[::1]:80"'])
                     | st.text(ASCII, max_size=12).map(lambda s: '"' + s + '"'))
        pairs.append(f"{name}={value}" if draw(st.integers(0, 5)) else name)
    return ";".join(pairs)


@st.composite
def forwarding(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(header_text)
    if kind == 1:  # very many hops
        return ", ".join(draw(st.sampled_from(["10.0.0.1", "for=10.0.0.1", "[::1]", "x"]))
                         for _ in range(draw(st.integers(50, 3000))))
    if kind == 2:
        return ",".join(forwarded_element(draw) for _ in range(draw(st.integers(1, 5))))
    return ", ".join(draw(st.lists(hop, min_size=1, max_size=8)))


@st.composite
def certificates(draw: st.DrawFn, target: Proxied, right: str | None = None) -> str:
    """``right``: the certificate the request's client would authenticate with, sent intact half of the time."""
    pem = right if right is not None and draw(st.booleans()) else draw(st.sampled_from(target.certs))
    kind = 0 if pem is right else draw(st.integers(0, 7))
    if kind == 0:  # as sent: URL-encoded PEM (nginx's $ssl_client_escaped_cert)
        return quote(pem, safe="")
    if kind == 1:  # quoted, or not encoded at all (line breaks are not header bytes: spaces instead)
        return '"' + quote(pem, safe="") + '"' if draw(st.booleans()) else pem.replace("\n", " ")
    if kind == 2:  # truncated
        return quote(pem[:draw(st.integers(0, len(pem)))], safe="")
    if kind == 3:  # one character of the body changed
        i = draw(st.integers(30, len(pem) - 30))
        return quote(pem[:i] + draw(st.sampled_from(list(B64URL + "=+/ \n!"))) + pem[i + 1:], safe="")
    if kind == 4:  # two certificates, armour only, DER without armour
        other = draw(st.sampled_from(target.certs))
        return quote(draw(st.sampled_from([pem + other, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
                                           pem.replace("CERTIFICATE", "PRIVATE KEY"),
                                           "".join(pem.splitlines()[1:-1])])), safe="")
    if kind == 5:
        return quote("-----BEGIN CERTIFICATE-----\n" + draw(st.text(B64URL + "+/=\n", max_size=400))
                     + "\n-----END CERTIFICATE-----", safe="")
    if kind == 6:
        return draw(st.sampled_from(["%", "%zz", "%00", "%FF%FE", "-----BEGIN CERTIFICATE-----" * 3, "x" * 20000]))
    return draw(header_text)


@st.composite
def proofs(draw: st.DrawFn, target: Proxied, method: str, path: str, token: str) -> str:
    """DPoP proofs: garbage, forged, or signed by a real key with each claim hostile or right."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(header_text | st.text(B64URL + ".", max_size=200))
    url = target.server.base_url + path
    right: dict[str, Any] = {"htm": method, "htu": url, "iat": int(time.time()), "jti": secrets.token_urlsafe(12),
                             "ath": b64url(hashlib.sha256(token.encode()).digest())}
    hostile: dict[str, Any] = {
        "htm": json_value | st.sampled_from(["get", "POST ", ""]),
        "htu": json_value | st.sampled_from([url.upper(), url + "?x#y", "https://[::1/x", "http://h:99999/",
                                             "//x", "", "https://user@evil/x", url.replace("/", "\\")]),
        "iat": json_value | st.sampled_from([10**400, -(10**30), 1e308, float("nan"), "1", 2**63]),
        "jti": json_value | any_text | st.text(max_size=2000),
        "ath": json_value | any_text,
        "nonce": json_value | any_text,
    }
    claims = dict(right)
    for name in draw(st.lists(st.sampled_from(sorted(hostile)), max_size=3, unique=True)):
        claims[name] = draw(hostile[name])
    for name in draw(st.lists(st.sampled_from(sorted(right)), max_size=1)):
        claims.pop(name, None)
    header: dict[str, Any] = {"typ": "dpop+jwt", "alg": "ES256", "jwk": target.dpop_key.as_dict(private=False)}
    if kind == 1:  # hostile header, forged signature
        header.update(draw(st.dictionaries(st.sampled_from(["typ", "alg", "jwk", "kid", "crit", "x5c"]), json_value,
                                           max_size=2)))
        body = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims, allow_nan=True).encode())
        return body + "." + draw(st.text(B64URL, max_size=90))
    # signed: what the key really signed, so every claim check runs
    payload = json.dumps(claims, allow_nan=True).encode()
    return jws.serialize_compact(header, payload, target.dpop_key, algorithms=["ES256"])


@st.composite
def hosts(draw: st.DrawFn, target: Proxied) -> str | None:
    real = target.server.base_url.split("//", 1)[1]
    return draw(st.none() | st.just(real) | st.sampled_from(["", "[::1]", "[::1", "a:b:c", "x:99999", "ex ample",
                                                              real + ".", real.upper(), "127.0.0.1:0"])
                | st.text(ASCII, max_size=40))


def _send(target: Proxied, method: str, url: str, kwargs: dict[str, Any]) -> None:
    try:
        r = target.http.request(method, url, **kwargs)
    except (httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError):  # httpx would not send it
        reject()
    assert r.status_code < 500, f"{method} {url} {kwargs.get('headers')}: {r.status_code} {r.text[:500]}"
    body = r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else None
    error = body.get("error") if isinstance(body, dict) else None
    event(f"{url.split('?', 1)[0][:20]} {r.status_code}" + (f" {error}" if error else ""))  # --hypothesis-show-statistics
    assert "Traceback" not in r.text and 'File "' not in r.text


def _with(kwargs: dict[str, Any], extra: list[tuple[str, str]]) -> dict[str, Any]:
    headers = list((kwargs.get("headers") or {}).items())
    names = {k.lower() for k, _ in extra}
    return {**kwargs, "headers": [(k, v) for k, v in headers if k.lower() not in names] + extra}


# ---------------------------------------------------------------- properties

@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_proxy_and_dpop_headers_on_every_route(proxied: Proxied, data: st.DataObject) -> None:
    """Any route, any request of test_fuzz's kind, with hostile forwarding, certificate, DPoP and Host headers
    from a trusted proxy: never a 5xx."""
    method, url, kwargs = data.draw(any_requests(proxied), label="request")
    path = url.split("?", 1)[0]
    extra: list[tuple[str, str]] = []
    forwarded_name = "Forwarded" if data.draw(st.booleans()) else "X-Forwarded-For"
    for _ in range(data.draw(st.integers(0, 2), label="forwarding headers")):
        extra.append((forwarded_name, data.draw(forwarding(), label="forwarding")))
    for _ in range(data.draw(st.integers(0, 2), label="certificate headers")):
        extra.append((CERT_HEADER, data.draw(certificates(proxied), label="certificate")))
    for _ in range(data.draw(st.integers(0, 2), label="DPoP headers")):
        extra.append(("DPoP", data.draw(proofs(proxied, method, path, proxied.token), label="proof")))
    host = data.draw(hosts(proxied), label="host")
    if host is not None:
        extra.append(("Host", host))
    _send(proxied, method, url, _with(kwargs, extra))


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_certificate_and_dpop_headers_at_the_token_endpoints(proxied: Proxied, data: st.DataObject) -> None:
    """/token, /par, /introspect and /revoke as the mTLS clients (so a certificate is parsed, matched
    against a subject DN or a registered key, and bound), each with a hostile certificate header and DPoP proof."""
    path = data.draw(st.sampled_from(["/token", "/token", "/par", "/introspect", "/revoke"]), label="path")
    which = data.draw(st.integers(0, 1), label="client")
    client = (proxied.tls_client, proxied.self_signed_client)[which]
    form = {"client_id": client["client_id"], "grant_type": "client_credentials", "scope": "api:read"}
    if path == "/par":
        form = {"client_id": client["client_id"], "response_type": "code", "redirect_uri": "https://x.example/cb",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHgoeRp9oSU3gkyswMF2p4g", "code_challenge_method": "S256"}
    elif path in ("/introspect", "/revoke"):
        form = {"client_id": client["client_id"], "token": data.draw(st.sampled_from([proxied.token, "x"]))}
    right = proxied.certs[0] if which == 0 else proxied.certs[2]
    extra = [(CERT_HEADER, data.draw(certificates(proxied, right), label="certificate"))]
    if data.draw(st.booleans(), label="dpop"):
        extra.append(("DPoP", data.draw(proofs(proxied, "POST", path, proxied.token), label="proof")))
    _send(proxied, "POST", path, {"headers": extra, "data": form})
