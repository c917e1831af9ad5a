"""The audit's own attacker issuer: discovery, JWKS and an X.509 certificate served on a loopback port, and a
signing key of its own. An API that accepts tokens signed by this key trusts something it must not."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..core import jose

__all__ = ["Attacker", "attacker_issuer"]


@dataclass
class Attacker:
    base: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    kid: str
    cert_pem: bytes = field(repr=False)

    @property
    def jwk(self) -> dict[str, Any]:
        return jose.public_jwk(self.key, self.kid)

    @property
    def jwks_url(self) -> str:
        return self.base + "/jwks"

    @property
    def x5u_url(self) -> str:
        return self.base + "/cert.pem"

    def cert_der_b64(self) -> str:
        import base64

        cert = x509.load_pem_x509_certificate(self.cert_pem)
        return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    def sign(self, claims: Mapping[str, Any], *, typ: str, kid: str | None = None,
             headers: Mapping[str, Any] | None = None) -> str:
        return jose.sign_jwt(claims, self.key, alg="ES256", kid=kid or self.kid, typ=typ,
                             extra_headers=dict(headers or {}) or None)


def _certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ostiary-audit attacker")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@contextmanager
def attacker_issuer(host: str = "127.0.0.1") -> Iterator[Attacker]:
    """Serve the attacker's discovery document, JWKS and certificate until the block ends."""
    key = ec.generate_private_key(ec.SECP256R1())
    kid = "ostiary-audit-" + secrets.token_hex(4)
    box: dict[str, Attacker] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            a = box["a"]
            path = self.path.split("?")[0]
            if path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
                body, ctype = json.dumps({"issuer": a.base, "jwks_uri": a.jwks_url,
                                          "token_endpoint": a.base + "/token",
                                          "response_types_supported": ["code"]}).encode(), "application/json"
            elif path == "/jwks":
                body, ctype = json.dumps({"keys": [a.jwk]}).encode(), "application/json"
            elif path == "/cert.pem":
                body, ctype = a.cert_pem, "application/x-pem-file"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    box["a"] = Attacker(f"http://{host}:{port}", key, kid, _certificate(key))
    thread = threading.Thread(target=server.serve_forever, name="ostiary-audit-attacker", daemon=True)
    thread.start()
    try:
        yield box["a"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
