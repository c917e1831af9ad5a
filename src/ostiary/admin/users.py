"""User administration: the service the ``ostiary user`` CLI and the ``/admin/api/users`` routes share."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._clock import Clock
from .._passwords import hash_password
from .._secrets import new_token
from ..core.grants._user_tokens import revoke_user_families
from ..core.storage import Store
from ..core.users import User
from .service import AdminError, NotFound

__all__ = ["UserAdmin", "UserCreate", "UserUpdate", "user_view"]

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
            password_hash = hash_password(password)
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

    async def update_user(self, ref: str, changes: UserUpdate) -> User:
        user = await self.get_user(ref)
        data = changes.model_dump(exclude_none=True)
        updated = replace(user, **data, updated_at=self.clock.now())
        try:
            await self.store.update_user(updated)
        except ValueError as exc:
            raise AdminError("that email is already taken") from exc
        if updated.disabled and not user.disabled:
            await self._sign_out(updated.user_id)
        return updated

    async def set_password(self, ref: str, password: str) -> User:
        user = await self.get_user(ref)
        try:
            updated = replace(user, password_hash=hash_password(password), updated_at=self.clock.now())
        except ValueError as exc:
            raise AdminError(str(exc)) from exc
        await self.store.update_user(updated)
        await self.store.end_user_sessions(user.user_id)
        return updated

    async def reset_totp(self, ref: str) -> User:
        user = await self.get_user(ref)
        updated = replace(user, totp_secret=None, updated_at=self.clock.now())
        await self.store.update_user(updated)
        await self.store.set_recovery_codes(user.user_id, [])
        return updated

    async def delete_user(self, ref: str) -> None:
        user = await self.get_user(ref)
        await revoke_user_families(self.store, user.user_id, self.clock.now())
        await self.store.delete_user(user.user_id)

    async def _sign_out(self, user_id: str) -> None:
        await self.store.end_user_sessions(user_id)
        await revoke_user_families(self.store, user_id, self.clock.now())
