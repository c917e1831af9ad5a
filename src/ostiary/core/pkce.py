"""Proof Key for Code Exchange (RFC 7636), ``S256`` only. There is no setting that enables ``plain``."""

from __future__ import annotations

import re

from .._secrets import constant_time_equals, sha256_b64url
from .errors import InvalidGrant, InvalidRequest

__all__ = ["CODE_CHALLENGE_METHODS", "check_code_challenge", "s256_challenge", "verify_code_verifier"]

CODE_CHALLENGE_METHODS = ("S256",)
#: RFC 7636 §4.1: code-verifier = 43*128unreserved
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
#: an S256 challenge is BASE64URL(SHA256(verifier)) without padding: 43 characters
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def check_code_challenge(challenge: str | None, method: str | None) -> str:
    """RFC 7636 §4.3 at the authorization endpoint. A missing challenge, ``plain`` or a missing method
    (which RFC 7636 §4.3 would read as ``plain``) are refused."""
    if not challenge:
        raise InvalidRequest("code_challenge is required (PKCE, RFC 7636) with code_challenge_method=S256")
    if method != "S256":
        raise InvalidRequest("code_challenge_method must be S256 (plain is not supported)")
    if not _S256_CHALLENGE.match(challenge):
        raise InvalidRequest("code_challenge must be the 43-character BASE64URL(SHA256(code_verifier))")
    return challenge


def s256_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    return sha256_b64url(verifier)


def verify_code_verifier(verifier: str | None, challenge: str) -> None:
    """RFC 7636 §4.6: recompute the challenge from the verifier and compare in constant time."""
    if not verifier:
        raise InvalidRequest("code_verifier is required")
    if not _VERIFIER.match(verifier):
        raise InvalidGrant("code_verifier is malformed (43-128 unreserved characters)")
    if not constant_time_equals(s256_challenge(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
