"""DPoP proofs (RFC 9449 §4.2) for the tests, made with ``cryptography`` and PyJWT (not with ``ostiary``)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DPoPKey:
    """A client's DPoP key: makes proofs, knows its RFC 7638 thumbprint."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        full = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwk: dict[str, Any] = {k: full[k] for k in ("kty", "crv", "x", "y")}

    @property
    def jkt(self) -> str:
        members = json.dumps({k: self.jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"),
                             sort_keys=True)
        return b64url(hashlib.sha256(members.encode()).digest())

    def proof(self, url: str, method: str = "POST", *, access_token: str | None = None, nonce: str | None = None,
              header: dict[str, Any] | None = None, **claims: Any) -> str:
        """A proof; ``claims`` override (None removes one), ``header`` overrides header members."""
        body: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": int(time.time())}
        if access_token is not None:
            body["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        if nonce is not None:
            body["nonce"] = nonce
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        hdr: dict[str, Any] = {"typ": "dpop+jwt", "jwk": self.jwk}
        hdr.update(header or {})
        hdr = {k: v for k, v in hdr.items() if v is not None}
        return jwt.encode(body, self.key, algorithm="ES256", headers=hdr)


def unverified(token: str) -> dict[str, Any]:
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out
