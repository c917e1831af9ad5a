"""In-memory authorization codes and refresh-token families (mixed into MemoryStore).

Single use is atomic here because nothing awaits between the check and the update.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..core.storage import RevokedUserTokens
from ..core.tokens import (
    AuthorizationCode,
    RefreshRotation,
    RefreshToken,
    RotationOutcome,
    TokenFamily,
    rotation_refusal,
    successor_of,
)

__all__ = ["MemoryTokensMixin"]


@dataclass
class _State:
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    families: dict[str, TokenFamily] = field(default_factory=dict)
    family_jtis: dict[str, dict[str, float]] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)


class MemoryTokensMixin:
    """Implements ``AuthorizationCodeRepository``, ``RefreshTokenRepository`` (but ``purge_user_flows``, which
    MemoryStore composes) and ``UserTokenRevocation``."""

    revoked: dict[str, tuple[str, float]]  # MemoryStore's revoked access tokens: jti → (client_id, expires_at)

    def _user_enabled(self, user_id: str) -> bool:  # MemoryStore's users
        raise NotImplementedError

    @property
    def _t(self) -> _State:
        state: _State | None = self.__dict__.get("_token_state")
        if state is None:
            state = self.__dict__["_token_state"] = _State()
        return state

    # authorization codes
    async def add_code(self, code: AuthorizationCode) -> None:
        self._t.codes[code.code_hash] = code

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        return self._t.codes.get(code_hash)

    async def use_code(self, code_hash: str, now: float) -> bool:
        code = self._t.codes.get(code_hash)
        if code is None or code.used_at is not None:
            return False
        self._t.codes[code_hash] = replace(code, used_at=now)
        return True

    # refresh-token families
    async def add_family(self, family: TokenFamily) -> None:
        self._t.families[family.family_id] = family

    async def get_family(self, family_id: str) -> TokenFamily | None:
        return self._t.families.get(family_id)

    async def revoke_family(self, family_id: str, now: float) -> bool:
        fam = self._t.families.get(family_id)
        if fam is None or fam.revoked_at is not None:
            return False
        self._t.families[family_id] = replace(fam, revoked_at=now)
        return True

    async def list_families(self, user_id: str) -> list[TokenFamily]:
        return sorted((f for f in self._t.families.values() if f.user_id == user_id and f.revoked_at is None),
                      key=lambda f: f.created_at)

    async def revoke_user_tokens(self, user_id: str, now: float, client_id: str | None = None) -> RevokedUserTokens:
        families = access = 0
        for fam in list(self._t.families.values()):
            if fam.user_id != user_id or fam.revoked_at is not None or (client_id and fam.client_id != client_id):
                continue
            self._t.families[fam.family_id] = replace(fam, revoked_at=now)
            families += 1
            for jti, exp in self._t.family_jtis.get(fam.family_id, {}).items():
                if exp > now:
                    self.revoked.setdefault(jti, (fam.client_id, exp))
                    access += 1
        return RevokedUserTokens(families, access)

    async def add_family_jti(self, family_id: str, jti: str, expires_at: float) -> None:
        self._t.family_jtis.setdefault(family_id, {})[jti] = expires_at

    async def family_jtis(self, family_id: str) -> list[tuple[str, float]]:
        return sorted(self._t.family_jtis.get(family_id, {}).items())

    def _purge_tokens(self, now: float, cutoff: float) -> int:
        """Delete the codes and families that expired before ``cutoff`` and the ids of expired access tokens
        (part of ``purge_user_flows``)."""
        t, n = self._t, 0
        for key in [k for k, v in t.codes.items() if v.expires_at <= cutoff]:
            del t.codes[key]
            n += 1
        gone = {f for f, fam in t.families.items() if fam.expires_at <= cutoff}
        for key in [k for k, rt in t.refresh.items() if rt.family_id in gone]:
            del t.refresh[key]
            n += 1
        for family_id, jtis in list(t.family_jtis.items()):
            for jti in [j for j, exp in jtis.items() if exp <= now or family_id in gone]:
                del jtis[jti]
                n += 1
            if not jtis:
                del t.family_jtis[family_id]
        for family_id in gone:
            del t.families[family_id]
            n += 1
        return n

    async def add_refresh_token(self, token: RefreshToken) -> None:
        self._t.refresh[token.token_hash] = token

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        return self._t.refresh.get(token_hash)

    async def use_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                successor_sealed: bytes | None) -> bool:
        rt = self._t.refresh.get(token_hash)
        if rt is None or rt.used_at is not None:
            return False
        self._t.refresh[token_hash] = replace(rt, used_at=now, request_fp=request_fp,
                                              successor_sealed=successor_sealed)
        return True

    async def rotate_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                   successor_sealed: bytes | None, family_id: str, jti: str,
                                   access_expires_at: float, successor: RefreshToken | None) -> bool:
        fam = self._t.families.get(family_id)
        if fam is None or fam.revoked_at is not None:
            return False
        if not await self.use_refresh_token(token_hash, now, request_fp, successor_sealed):
            return False
        await self.add_family_jti(family_id, jti, access_expires_at)
        if successor is not None:
            await self.add_refresh_token(successor)
        return True

    async def rotate_refresh_token_once(self, rotation: RefreshRotation) -> RotationOutcome:
        # atomic: nothing awaits between the checks and the writes
        token = self._t.refresh.get(rotation.token_hash)
        family = self._t.families.get(token.family_id) if token is not None else None
        enabled = token is not None and self._user_enabled(token.user_id)
        if token is None or family is None or rotation_refusal(token, family, enabled, rotation) is not None:
            return RotationOutcome(token, family, enabled, rotated=False)
        self._t.refresh[token.token_hash] = replace(token, used_at=rotation.now)
        self._t.family_jtis.setdefault(family.family_id, {})[rotation.jti] = rotation.access_expires_at
        successor = successor_of(token, family, rotation)
        if successor is not None:
            self._t.refresh[successor.token_hash] = successor
        return RotationOutcome(token, family, enabled, rotated=True, successor=successor)
