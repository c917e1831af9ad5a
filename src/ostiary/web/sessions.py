"""Server-side browser sessions: an opaque random cookie (HttpOnly, SameSite=Lax, Secure except on loopback,
``__Host-`` prefix over https); the store keeps only its keyed hash."""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from .._clock import Clock
from .._secrets import new_token, token_hash
from ..core.storage import Store
from ..core.users import LoginSession, User

__all__ = ["SessionManager"]

#: how often ``last_seen`` is written back (idle expiry needs no finer grain)
TOUCH_EVERY = 60


class SessionManager:
    def __init__(self, store: Store, clock: Clock, hash_key: bytes, *, https: bool, ttl: int, idle_ttl: int) -> None:
        self.store = store
        self.clock = clock
        self._key = hash_key
        self.secure = https
        self.cookie_name = "__Host-ostiary_session" if https else "ostiary_session"
        self.ttl = ttl
        self.idle_ttl = idle_ttl

    def _hash(self, token: str) -> str:
        return token_hash("session:" + token, self._key)

    async def load(self, request: Request, *, allow_pending: bool = False) -> LoginSession | None:
        token = request.cookies.get(self.cookie_name)
        if not token or len(token) > 100:
            return None
        session = await self.store.get_session(self._hash(token))
        now = self.clock.now()
        if session is None:
            return None
        if not session.active(now, self.idle_ttl):
            await self.store.end_session(session.session_id)
            return None
        if session.mfa_pending and not allow_pending:
            return None
        if now - session.last_seen > TOUCH_EVERY:
            session = replace(session, last_seen=now)
            await self.store.update_session(session)
        return session

    async def create(self, user: User, amr: tuple[str, ...], request: Request, *, mfa_pending: bool = False
                     ) -> tuple[str, LoginSession]:
        now = self.clock.now()
        token = new_token(32)
        ua = request.headers.get("user-agent", "")[:300] or None
        session = LoginSession(session_id=new_token(16), token_hash=self._hash(token), user_id=user.user_id,
                               created_at=now, last_seen=now, expires_at=now + self.ttl, auth_time=now, amr=amr,
                               mfa_pending=mfa_pending, ip=request.client.host if request.client else None,
                               user_agent=ua)
        await self.store.add_session(session)
        return token, session

    def set_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(self.cookie_name, token, max_age=self.ttl, path="/", secure=self.secure,
                            httponly=True, samesite="lax")

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(self.cookie_name, path="/", secure=self.secure, httponly=True, samesite="lax")
