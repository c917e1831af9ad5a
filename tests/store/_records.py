"""Records the storage contract suites build: each field filled, unique ids, overridable by keyword."""

from __future__ import annotations

import secrets

from ostiary.core.tokens import AuthorizationCode, RefreshToken, TokenFamily
from ostiary.core.users import LoginSession, User


def hex_id(n: int = 6) -> str:
    return secrets.token_hex(n)


def user(**kw: object) -> User:
    name = "u" + hex_id()
    base: dict[str, object] = dict(user_id=hex_id(16), username=name, name="Ann Example", password_hash="$argon2id$x",
                                   email=name + "@example.com", email_verified=True, totp_secret=b"\x00sealed\xff",
                                   created_at=100.0, updated_at=101.5)
    base.update(kw)
    return User(**base)  # type: ignore[arg-type]


def session(user_id: str, **kw: object) -> LoginSession:
    base: dict[str, object] = dict(session_id=hex_id(8), token_hash=hex_id(16), user_id=user_id, created_at=10.0,
                                   last_seen=20.0, expires_at=1000.0, auth_time=10.0, amr=("pwd", "otp"),
                                   mfa_pending=False, ip="127.0.0.1", user_agent="pytest")
    base.update(kw)
    return LoginSession(**base)  # type: ignore[arg-type]


def family(user_id: str, **kw: object) -> TokenFamily:
    base: dict[str, object] = dict(family_id=hex_id(8), client_id="c-" + hex_id(), user_id=user_id,
                                   scopes=frozenset({"openid", "offline_access"}), audience=("https://api.example",),
                                   created_at=10.0, expires_at=5000.0, auth_time=9.0, amr=("pwd",), acr="pwd",
                                   session_id=hex_id(8))
    base.update(kw)
    return TokenFamily(**base)  # type: ignore[arg-type]


def code(family: TokenFamily, **kw: object) -> AuthorizationCode:
    base: dict[str, object] = dict(code_hash=hex_id(16), client_id=family.client_id,
                                   redirect_uri="http://127.0.0.1:9/cb", code_challenge="ch" + hex_id(),
                                   scopes=frozenset({"openid", "email"}), user_id=family.user_id,
                                   session_id=family.session_id or "", auth_time=9.0, amr=("pwd", "otp"),
                                   family_id=family.family_id, created_at=10.0, expires_at=70.0, nonce="n1",
                                   acr="mfa", audience=("https://api.example",))
    base.update(kw)
    return AuthorizationCode(**base)  # type: ignore[arg-type]


def refresh_token(family: TokenFamily, **kw: object) -> RefreshToken:
    base: dict[str, object] = dict(token_hash=hex_id(16), family_id=family.family_id, client_id=family.client_id,
                                   user_id=family.user_id, scopes=frozenset({"openid", "offline_access"}),
                                   created_at=10.0, expires_at=300.0)
    base.update(kw)
    return RefreshToken(**base)  # type: ignore[arg-type]
