"""In-memory users, sessions, consents, authorization codes and refresh-token families (mixed into MemoryStore).

Single use is atomic here because nothing awaits between the check and the update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..core.storage import RevokedUserTokens
from ..core.tokens import AuthorizationCode, RefreshToken, TokenFamily
from ..core.users import Consent, LoginSession, User

__all__ = ["MemoryUsersMixin"]


@dataclass
class _State:
    users: dict[str, User] = field(default_factory=dict)
    recovery: dict[str, dict[str, float | None]] = field(default_factory=dict)
    sessions: dict[str, LoginSession] = field(default_factory=dict)  # by token hash
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    families: dict[str, TokenFamily] = field(default_factory=dict)
    family_jtis: dict[str, dict[str, float]] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)


class MemoryUsersMixin:
    revoked: dict[str, tuple[str, float]]  # MemoryStore's revoked access tokens: jti → (client_id, expires_at)

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

    # authorization codes
    async def add_code(self, code: AuthorizationCode) -> None:
        self._u.codes[code.code_hash] = code

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        return self._u.codes.get(code_hash)

    async def use_code(self, code_hash: str, now: float) -> bool:
        code = self._u.codes.get(code_hash)
        if code is None or code.used_at is not None:
            return False
        self._u.codes[code_hash] = replace(code, used_at=now)
        return True

    # refresh-token families
    async def add_family(self, family: TokenFamily) -> None:
        self._u.families[family.family_id] = family

    async def get_family(self, family_id: str) -> TokenFamily | None:
        return self._u.families.get(family_id)

    async def revoke_family(self, family_id: str, now: float) -> bool:
        fam = self._u.families.get(family_id)
        if fam is None or fam.revoked_at is not None:
            return False
        self._u.families[family_id] = replace(fam, revoked_at=now)
        return True

    async def list_families(self, user_id: str) -> list[TokenFamily]:
        return sorted((f for f in self._u.families.values() if f.user_id == user_id and f.revoked_at is None),
                      key=lambda f: f.created_at)

    async def revoke_user_tokens(self, user_id: str, now: float, client_id: str | None = None) -> RevokedUserTokens:
        families = access = 0
        for fam in list(self._u.families.values()):
            if fam.user_id != user_id or fam.revoked_at is not None or (client_id and fam.client_id != client_id):
                continue
            self._u.families[fam.family_id] = replace(fam, revoked_at=now)
            families += 1
            for jti, exp in self._u.family_jtis.get(fam.family_id, {}).items():
                if exp > now:
                    self.revoked.setdefault(jti, (fam.client_id, exp))
                    access += 1
        return RevokedUserTokens(families, access)

    async def add_family_jti(self, family_id: str, jti: str, expires_at: float) -> None:
        self._u.family_jtis.setdefault(family_id, {})[jti] = expires_at

    async def family_jtis(self, family_id: str) -> list[tuple[str, float]]:
        return sorted(self._u.family_jtis.get(family_id, {}).items())

    async def purge_user_flows(self, now: float, grace: float) -> int:
        cutoff, u, n = now - grace, self._u, 0
        for table in (u.sessions, u.codes):
            for key in [k for k, v in table.items() if v.expires_at <= cutoff]:
                del table[key]
                n += 1
        gone = {f for f, fam in u.families.items() if fam.expires_at <= cutoff}
        for key in [k for k, t in u.refresh.items() if t.family_id in gone]:
            del u.refresh[key]
            n += 1
        for family_id, jtis in list(u.family_jtis.items()):
            for jti in [j for j, exp in jtis.items() if exp <= now or family_id in gone]:
                del jtis[jti]
                n += 1
            if not jtis:
                del u.family_jtis[family_id]
        for family_id in gone:
            del u.families[family_id]
            n += 1
        return n

    async def add_refresh_token(self, token: RefreshToken) -> None:
        self._u.refresh[token.token_hash] = token

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        return self._u.refresh.get(token_hash)

    async def use_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                successor_sealed: bytes | None) -> bool:
        rt = self._u.refresh.get(token_hash)
        if rt is None or rt.used_at is not None:
            return False
        self._u.refresh[token_hash] = replace(rt, used_at=now, request_fp=request_fp,
                                              successor_sealed=successor_sealed)
        return True

    async def rotate_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                   successor_sealed: bytes | None, family_id: str, jti: str,
                                   access_expires_at: float, successor: RefreshToken | None) -> bool:
        fam = self._u.families.get(family_id)
        if fam is None or fam.revoked_at is not None:
            return False
        if not await self.use_refresh_token(token_hash, now, request_fp, successor_sealed):
            return False
        await self.add_family_jti(family_id, jti, access_expires_at)
        if successor is not None:
            await self.add_refresh_token(successor)
        return True
