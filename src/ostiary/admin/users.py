"""User administration: the service the ``ostiary user`` CLI and the ``/admin/api/users`` routes share."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._clock import Clock
from .._passwords import hash_password
from .._secrets import new_token
from ..core.storage import Store
from ..core.users import User
from .service import AdminError, NotFound

__all__ = ["SignedOut", "UserAdmin", "UserCreate", "UserUpdate", "signed_out_view", "user_view"]

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._+-]{1,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]+$")


def _email(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip().lower()
    if not _EMAIL.match(v):
        raise ValueError("email must look like name@example.com")
    return v


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    name: str = Field("", max_length=200)
    email: str | None = None
    email_verified: bool = False

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        v = v.strip().lower()
        if not _USERNAME.match(v):
            raise ValueError("username: 2-64 characters from a-z 0-9 . _ + - (case-insensitive)")
        return v

    @field_validator("email")
    @classmethod
    def _mail(cls, v: str | None) -> str | None:
        return _email(v)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, max_length=200)
    email: str | None = None
    email_verified: bool | None = None
    disabled: bool | None = None

    @field_validator("email")
    @classmethod
    def _mail(cls, v: str | None) -> str | None:
        return _email(v)


class SignedOut(NamedTuple):
    """What ending a user's access took: browser sessions ended, grants (token families: refresh tokens) and
    live access tokens revoked."""

    sessions: int = 0
    token_families: int = 0
    access_tokens: int = 0

    def describe(self) -> str:
        return (f"{self.sessions} session(s) ended, {self.token_families} grant(s) revoked with their refresh "
                f"tokens, {self.access_tokens} access token(s) revoked")


def signed_out_view(s: SignedOut) -> dict[str, int]:
    return {"sessions_ended": s.sessions, "token_families_revoked": s.token_families,
            "access_tokens_revoked": s.access_tokens}


def user_view(u: User) -> dict[str, Any]:
    """Never a password hash or TOTP secret."""
    return {"id": u.user_id, "username": u.username, "name": u.name, "email": u.email,
            "email_verified": u.email_verified, "disabled": u.disabled, "totp": u.has_totp,
            "created_at": int(u.created_at), "updated_at": int(u.updated_at)}


@dataclass
class UserAdmin:
    store: Store
    clock: Clock

    async def create_user(self, spec: UserCreate, password: str) -> User:
        try:
            password_hash = await asyncio.to_thread(hash_password, password)  # argon2: off the event loop
        except ValueError as exc:
            raise AdminError(str(exc)) from exc
        now = self.clock.now()
        user = User(user_id=new_token(16), username=spec.username, name=spec.name or spec.username,
                    password_hash=password_hash, email=spec.email, email_verified=spec.email_verified,
                    created_at=now, updated_at=now)
        try:
            await self.store.add_user(user)
        except ValueError as exc:
            raise AdminError("that username or email is already taken") from exc
        return user

    async def get_user(self, ref: str) -> User:
        """By id, username or email."""
        user = await self.store.get_user(ref) if len(ref) <= 64 else None
        user = user or await self.store.find_user(ref)
        if user is None:
            raise NotFound(f"no user {ref!r}; see `ostiary user list`")
        return user

    async def list_users(self) -> list[User]:
        return await self.store.list_users()

    async def update_user(self, ref: str, changes: UserUpdate) -> tuple[User, SignedOut]:
        """Disabling a user signs them out everywhere: sessions end, their grants and tokens are revoked."""
        user = await self.get_user(ref)
        data = changes.model_dump(exclude_none=True)
        updated = replace(user, **data, updated_at=self.clock.now())
        try:
            await self.store.update_user(updated)
        except ValueError as exc:
            raise AdminError("that email is already taken") from exc
        if updated.disabled and not user.disabled:
            return updated, await self.sign_out(updated.user_id)
        return updated, SignedOut()

    async def set_password(self, ref: str, password: str) -> tuple[User, SignedOut]:
        """The response to a compromised account: the new password, and every session and token ends (a stolen
        refresh token or CLI login included)."""
        user = await self.get_user(ref)
        try:
            new_hash = await asyncio.to_thread(hash_password, password)  # argon2: off the event loop
            updated = replace(user, password_hash=new_hash, updated_at=self.clock.now())
        except ValueError as exc:
            raise AdminError(str(exc)) from exc
        await self.store.update_user(updated)
        return updated, await self.sign_out(user.user_id)

    async def reset_totp(self, ref: str) -> tuple[User, SignedOut]:
        """Remove the second factor and recovery codes; what was signed in with them ends too."""
        user = await self.get_user(ref)
        updated = replace(user, totp_secret=None, updated_at=self.clock.now())
        await self.store.update_user(updated)
        await self.store.set_recovery_codes(user.user_id, [])
        return updated, await self.sign_out(user.user_id)

    async def delete_user(self, ref: str) -> SignedOut:
        user = await self.get_user(ref)
        out = await self.sign_out(user.user_id)
        await self.store.delete_user(user.user_id)
        return out

    async def sign_out(self, user_id: str) -> SignedOut:
        """End every session of the user and revoke every grant with its refresh and access tokens."""
        sessions = await self.store.end_user_sessions(user_id)
        revoked = await self.store.revoke_user_tokens(user_id, self.clock.now())
        return SignedOut(sessions, revoked.families, revoked.access_tokens)
