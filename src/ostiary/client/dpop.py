"""DPoP proofs for the client toolkit (RFC 9449): a key per token set and the proof JWTs that show possession.

A :class:`DpopKey` is an ES256 key made once per token set and kept with the tokens (the token store holds it
as PEM). :meth:`DpopKey.proof` makes one proof: header ``typ: dpop+jwt``, ``alg: ES256`` and the *public*
``jwk``; claims ``htm``, ``htu`` (the URL without query and fragment, §4.2), ``iat``, a fresh random ``jti``,
``ath`` (base64url SHA-256 of the access token) for requests to APIs, and ``nonce`` when the server gave one.

Servers may demand a nonce (§8, §9): the token endpoint with 400 ``use_dpop_nonce``, an API with 401 and
``WWW-Authenticate: DPoP error="use_dpop_nonce"``, both with a ``DPoP-Nonce`` header. :class:`DpopNonces`
remembers the last nonce per server (origin), so that the one retry that follows carries it, and later
proofs too.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .._json import loads as json_loads
from .._secrets import b64url, sha256_b64url
from ..core.jose import jwk_thumbprint

__all__ = ["DPOP_ALG", "DpopKey", "DpopNonces", "dpop_advertised", "htu", "nonce_challenge"]

DPOP_ALG: Final = "ES256"


def htu(url: str | httpx.URL) -> str:
    """RFC 9449 §4.2: the request URL without query and fragment."""
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"


def _origin(url: str | httpx.URL) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class DpopKey:
    """An ES256 key that proves possession of the tokens bound to it. Never appears in ``repr`` or logs."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._key = private_key or ec.generate_private_key(ec.SECP256R1())
        if not isinstance(self._key.curve, ec.SECP256R1):
            raise ValueError("a DPoP key of the client toolkit is a P-256 (ES256) key")
        numbers = self._key.public_key().public_numbers()
        self.jwk: dict[str, str] = {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
                                    "y": b64url(numbers.y.to_bytes(32, "big"))}
        self.thumbprint = jwk_thumbprint(self.jwk)
        header = {"typ": "dpop+jwt", "alg": DPOP_ALG, "jwk": self.jwk}
        self._header = b64url(json.dumps(header, separators=(",", ":")).encode())

    def __repr__(self) -> str:
        return f"DpopKey(jkt={self.thumbprint!r})"

    @classmethod
    def generate(cls) -> DpopKey:
        return cls()

    def to_pem(self) -> str:
        """The private key as unencrypted PKCS#8 PEM, for a token store that encrypts what it keeps."""
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode("ascii")

    @classmethod
    def from_pem(cls, pem: str | bytes) -> DpopKey:
        key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the stored DPoP key is not an EC key")
        return cls(key)

    def proof(self, method: str, url: str | httpx.URL, *, now: float, access_token: str | None = None,
              nonce: str | None = None) -> str:
        """A DPoP proof JWT for one request (``access_token``: the token sent with it, for ``ath``)."""
        claims: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": method.upper(), "htu": htu(url),
                                  "iat": int(now)}
        if access_token is not None:
            claims["ath"] = sha256_b64url(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = (self._header + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return (signing_input + b"." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")).encode()).decode()


class DpopNonces:
    """The last ``DPoP-Nonce`` each server (origin) sent, for the proofs that follow."""

    def __init__(self) -> None:
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, url: str | httpx.URL) -> str | None:
        with self._lock:
            return self._nonces.get(_origin(url))

    def remember(self, url: str | httpx.URL, response: httpx.Response) -> str | None:
        """Keep the response's ``DPoP-Nonce`` (any status: a server may rotate it on success, §8.2)."""
        nonce: str | None = response.headers.get("DPoP-Nonce")
        if nonce and len(nonce) <= 1024 and nonce.isascii():
            with self._lock:
                self._nonces[_origin(url)] = nonce
            return nonce
        return None


def nonce_challenge(response: httpx.Response) -> bool:
    """Whether ``response`` asks for a (new) nonce: 400 ``use_dpop_nonce`` from a token endpoint (§8) or 401
    with ``WWW-Authenticate: DPoP error="use_dpop_nonce"`` from an API (§9), with a ``DPoP-Nonce`` header."""
    if "DPoP-Nonce" not in response.headers:
        return False
    if response.status_code == 401:
        return any("use_dpop_nonce" in c for c in response.headers.get_list("WWW-Authenticate"))
    if response.status_code == 400:
        try:
            body = json_loads(response.content)
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("error") == "use_dpop_nonce"
    return False


def dpop_advertised(metadata: Mapping[str, Any]) -> bool:
    """Whether an issuer's metadata offers DPoP with ES256 (``dpop_signing_alg_values_supported``)."""
    algs = metadata.get("dpop_signing_alg_values_supported")
    return isinstance(algs, list) and DPOP_ALG in algs
