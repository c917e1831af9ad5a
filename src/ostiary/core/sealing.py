"""Authenticated encryption (AES-256-GCM) for the few things stored that must be read back: a TOTP shared
secret, and a refresh-token successor kept for the reuse window."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SealError", "seal", "sealing_key", "unseal"]


class SealError(Exception):
    """The blob cannot be opened with this key and context."""


def sealing_key(master: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose, derived from a server key."""
    return hmac.new(master, b"ostiary-seal:" + purpose.encode(), hashlib.sha256).digest()


def seal(data: bytes, key: bytes, context: str, *, version: bytes = b"s1") -> bytes:
    """``version`` (2 bytes) + 96-bit nonce + AES-256-GCM ciphertext and tag; ``context`` is the AAD."""
    nonce = os.urandom(12)
    return version + nonce + AESGCM(key).encrypt(nonce, data, context.encode())


def unseal(blob: bytes, key: bytes, context: str, *, version: bytes = b"s1") -> bytes:
    if blob[:2] != version:
        raise SealError("unknown format")
    try:
        return AESGCM(key).decrypt(blob[2:14], blob[14:], context.encode())
    except InvalidTag as exc:
        raise SealError("cannot open") from exc
