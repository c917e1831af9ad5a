"""In-memory users, their recovery codes, login sessions and consents (mixed into MemoryStore). Authorization
codes and refresh-token families: ``memory_tokens.py``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.users import Consent, LoginSession, User

__all__ = ["MemoryUsersMixin"]


@dataclass
class _State:
    users: dict[str, User] = field(default_factory=dict)
    recovery: dict[str, dict[str, float | None]] = field(default_factory=dict)
    sessions: dict[str, LoginSession] = field(default_factory=dict)  # by token hash
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)


class MemoryUsersMixin:
    """Implements ``UserRepository``, ``SessionRepository`` and ``ConsentRepository``."""

    @property
    def _u(self) -> _State:
        state: _State | None = self.__dict__.get("_user_state")
        if state is None:
            state = self.__dict__["_user_state"] = _State()
        return state

    # users
    async def add_user(self, user: User) -> None:
        for u in self._u.users.values():
            if u.username == user.username or (user.email and u.email == user.email) or u.user_id == user.user_id:
                raise ValueError("username or email taken")
        self._u.users[user.user_id] = user

    async def get_user(self, user_id: str) -> User | None:
        return self._u.users.get(user_id)

    def _user_enabled(self, user_id: str) -> bool:
        """The user exists and is not disabled (the refresh rotation's check, made without awaiting)."""
        user = self._u.users.get(user_id)
        return user is not None and not user.disabled

    async def find_user(self, login: str) -> User | None:
        key = login.strip().lower()
        for u in self._u.users.values():
            if u.username == key or (u.email is not None and u.email == key):
                return u
        return None

    async def update_user(self, user: User) -> None:
        if user.user_id not in self._u.users:
            raise KeyError(user.user_id)
        for u in self._u.users.values():
            if u.user_id != user.user_id and (u.username == user.username or (user.email and u.email == user.email)):
                raise ValueError("username or email taken")
        self._u.users[user.user_id] = user

    async def delete_user(self, user_id: str) -> bool:
        if self._u.users.pop(user_id, None) is None:
            return False
        self._u.recovery.pop(user_id, None)
        await self.end_user_sessions(user_id)
        for key in [k for k in self._u.consents if k[0] == user_id]:
            del self._u.consents[key]
        return True

    async def list_users(self) -> list[User]:
        return sorted(self._u.users.values(), key=lambda u: (u.created_at, u.username))

    async def set_recovery_codes(self, user_id: str, code_hashes: Sequence[str]) -> None:
        self._u.recovery[user_id] = dict.fromkeys(code_hashes)

    async def use_recovery_code(self, user_id: str, code_hash: str, now: float) -> bool:
        codes = self._u.recovery.get(user_id, {})
        if code_hash in codes and codes[code_hash] is None:
            codes[code_hash] = now
            return True
        return False

    async def count_recovery_codes(self, user_id: str) -> int:
        return sum(1 for v in self._u.recovery.get(user_id, {}).values() if v is None)

    # sessions
    async def add_session(self, session: LoginSession) -> None:
        self._u.sessions[session.token_hash] = session

    async def get_session(self, token_hash: str) -> LoginSession | None:
        return self._u.sessions.get(token_hash)

    async def update_session(self, session: LoginSession) -> None:
        if session.token_hash in self._u.sessions:
            self._u.sessions[session.token_hash] = session

    async def end_session(self, session_id: str) -> bool:
        for h, s in list(self._u.sessions.items()):
            if s.session_id == session_id:
                del self._u.sessions[h]
                return True
        return False

    async def list_sessions(self, user_id: str) -> list[LoginSession]:
        return sorted((s for s in self._u.sessions.values() if s.user_id == user_id), key=lambda s: -s.last_seen)

    async def end_user_sessions(self, user_id: str) -> int:
        gone = [h for h, s in self._u.sessions.items() if s.user_id == user_id]
        for h in gone:
            del self._u.sessions[h]
        return len(gone)

    # consents
    async def get_consent(self, user_id: str, client_id: str) -> Consent | None:
        return self._u.consents.get((user_id, client_id))

    async def save_consent(self, consent: Consent) -> None:
        self._u.consents[(consent.user_id, consent.client_id)] = consent

    async def delete_consent(self, user_id: str, client_id: str) -> bool:
        return self._u.consents.pop((user_id, client_id), None) is not None

    async def list_consents(self, user_id: str) -> list[Consent]:
        return sorted((c for c in self._u.consents.values() if c.user_id == user_id), key=lambda c: c.client_id)

    def _purge_sessions(self, cutoff: float) -> int:
        """Delete the login sessions that expired before ``cutoff`` (part of ``purge_user_flows``)."""
        gone = [k for k, v in self._u.sessions.items() if v.expires_at <= cutoff]
        for key in gone:
            del self._u.sessions[key]
        return len(gone)
