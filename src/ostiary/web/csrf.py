"""CSRF protection for every POSTed form: a signed double-submit token.

The browser holds a random, HttpOnly, SameSite=Lax cookie; each form carries HMAC(key, cookie). A
cross-site page can neither read the cookie nor compute the token, so it cannot forge the form field.
"""

from __future__ import annotations

import hashlib
import hmac

from .._secrets import constant_time_equals, new_token

__all__ = ["CsrfGuard"]


class CsrfGuard:
    def __init__(self, key: bytes, cookie_name: str) -> None:
        self._key = key
        self.cookie_name = cookie_name

    def new_cookie(self) -> str:
        return new_token(24)

    def token_for(self, cookie: str) -> str:
        return hmac.new(self._key, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()

    def check(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted or len(cookie) > 100:
            return False
        return constant_time_equals(self.token_for(cookie), submitted)
