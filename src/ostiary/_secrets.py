"""The only module that creates, hashes or compares secrets.

Server-generated secrets are high-entropy (>= 256 bits), so a keyed fast hash (HMAC-SHA256) is the
right storage form: a slow password hash would add nothing against guessing and would cap token
throughput at a few dozen requests per second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["b64url", "b64url_decode", "constant_time_equals", "derive_key", "new_token", "sha256_b64url", "text_digest",
           "token_hash"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(data: str) -> bytes:
    pad = "=" * (-len(data) % 4)
    return base64.urlsafe_b64decode(data + pad)


def new_token(nbytes: int = 32, prefix: str = "") -> str:
    """A fresh random token of ``nbytes`` bytes of entropy (default 256 bits), URL-safe."""
    if nbytes < 16:
        raise ValueError("tokens carry at least 128 bits of entropy")
    while True:
        value = secrets.token_urlsafe(nbytes)
        if value[0] != "-":  # ids are passed on command lines, where a leading dash reads as an option
            return prefix + value


def token_hash(value: str, key: bytes) -> str:
    """Keyed hash (HMAC-SHA256) of a secret, for storage and look-up by hash."""
    return b64url(hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest())


def sha256_b64url(value: str) -> str:
    return b64url(hashlib.sha256(value.encode("ascii", "surrogateescape")).digest())


def text_digest(value: str) -> str:
    """base64url SHA-256 of any string a peer sent (UTF-8; a lone surrogate, which JSON's ``\\ud800`` escape
    gives, passes as its own bytes): a fixed-length key with no NUL, for a store whose text columns have limits.
    Equal to :func:`sha256_b64url` for ASCII."""
    return b64url(hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest())


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets without leaking where they differ."""
    if isinstance(a, str):
        a = a.encode("utf-8", "surrogatepass")
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(a, b)


def derive_key(master: str | bytes, purpose: str, length: int = 32) -> bytes:
    """A sub-key for one purpose (HKDF-SHA256, RFC 5869), so one configured secret serves several uses."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if isinstance(master, str):
        master = master.encode("utf-8")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"ostiary", info=purpose.encode()).derive(master)
