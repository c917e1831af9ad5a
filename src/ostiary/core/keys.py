"""Signing keys: the key ring a server process signs with, and the pending → active → retired stages.

A rotated-in key is published in the JWKS for ``key_publish_delay`` seconds before it signs, so
verifiers' JWKS caches pick it up; the key it replaces keeps verifying (published) until every token it
signed has expired. Every process rebuilds its ring from storage periodically, so a rotation needs no
restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .._clock import Clock
from .._secrets import new_token
from . import jose
from .models import SigningKey
from .policy import ServerPolicy
from .storage import KeyRepository

__all__ = ["KeyNotFound", "KeyRing", "KeyRingError", "ensure_signing_key", "maybe_auto_rotate", "purge_expired_keys",
           "retire_key", "rotate_keys"]


class KeyRingError(Exception):
    """A key operation was refused; the message says what to do instead."""


class KeyNotFound(KeyRingError):
    """No key has that kid."""


@dataclass(frozen=True, slots=True)
class ActiveKey:
    kid: str
    alg: str
    private_key: jose.PrivateKey = field(repr=False)


class KeyRing:
    """A snapshot of the keys at one moment: the key that signs, and the keys that are published."""

    def __init__(self, keys: Sequence[SigningKey], kek: bytes, now: float, max_token_lifetime: int) -> None:
        self.loaded_at = now
        published = [k for k in keys if k.state(now, max_token_lifetime) != "expired"]
        active = sorted((k for k in published if k.state(now, max_token_lifetime) == "active"),
                        key=lambda k: (k.activates_at, k.created_at))
        self.signer: ActiveKey | None = None
        if active:
            newest = active[-1]
            self.signer = ActiveKey(newest.kid, newest.alg,
                                    jose.decrypt_private_key(newest.encrypted_private_key, kek, newest.kid))
        self.jwks: dict[str, Any] = {"keys": [dict(k.public_jwk) for k in published]}
        self.verification_keys: list[jose.PublicJwk] = jose.parse_jwks(self.jwks)
        # the next moment at which this snapshot goes stale on its own (a pending key activates, etc.)
        moments = [k.activates_at for k in published if k.activates_at > now]
        moments += [k.retires_at for k in published if k.retires_at and k.retires_at > now]
        moments += [k.retires_at + max_token_lifetime for k in published if k.retires_at]
        self.stale_at = min((m for m in moments if m > now), default=float("inf"))

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        if self.signer is None:
            raise KeyRingError("no active signing key: run `ostiary keys rotate --now`")
        return jose.sign_jwt(claims, self.signer.private_key, alg=self.signer.alg, kid=self.signer.kid, typ=typ)


def _new_key(alg: str, kek: bytes, now: float, activates_at: float) -> SigningKey:
    if alg not in ("ES256", "RS256", "EdDSA"):
        raise KeyRingError(f"unsupported signing algorithm {alg!r}; choose ES256, RS256 or EdDSA")
    private = jose.generate_private_key(alg)  # type: ignore[arg-type]
    kid = new_token(16)
    return SigningKey(
        kid=kid, alg=alg, public_jwk=jose.public_jwk(private, kid, alg),
        encrypted_private_key=jose.encrypt_private_key(jose.key_to_pem(private), kek, kid),
        created_at=now, activates_at=activates_at,
    )


async def ensure_signing_key(repo: KeyRepository, policy: ServerPolicy, kek: bytes, clock: Clock) -> bool:
    """Create a key that signs at once when no key is active or pending (first start). True if created."""
    now = clock.now()
    keys = await repo.list_keys()
    if any(k.state(now, policy.max_token_lifetime) in ("active", "pending") for k in keys):
        return False
    await repo.add_key(_new_key(policy.signing_alg, kek, now, now))
    return True


async def rotate_keys(repo: KeyRepository, policy: ServerPolicy, kek: bytes, clock: Clock, *,
                      immediate: bool = False, alg: str | None = None) -> SigningKey:
    """Add a key that starts signing after the publish delay (or now); the current keys retire then."""
    now = clock.now()
    activates_at = now if immediate else now + policy.key_publish_delay
    new = _new_key(alg or policy.signing_alg, kek, now, activates_at)
    await repo.add_key(new)
    for key in await repo.list_keys():
        if key.kid == new.kid:
            continue
        state = key.state(now, policy.max_token_lifetime)
        if state == "active" and (key.retires_at is None or key.retires_at > activates_at):
            await repo.update_key(_replace_retire(key, activates_at))
        elif state == "pending":  # an older pending key is superseded: it never signs
            await repo.update_key(_replace_retire(key, max(now, key.activates_at)))
    return new


def _replace_retire(key: SigningKey, at: float) -> SigningKey:
    return replace(key, retires_at=at)


async def retire_key(repo: KeyRepository, policy: ServerPolicy, kid: str, clock: Clock) -> SigningKey:
    """Stop signing with ``kid`` now; it stays published until the tokens it signed have expired.

    A pending key is withdrawn instead (it never signed), and the key it was to replace keeps signing.
    """
    now = clock.now()
    keys = await repo.list_keys()
    target = next((k for k in keys if k.kid == kid), None)
    if target is None:
        raise KeyNotFound(f"no key with kid {kid[:64]!r}; see `ostiary keys list`")
    state = target.state(now, policy.max_token_lifetime)
    if state in ("retired", "expired"):
        raise KeyRingError(f"key {kid} is already {state}")
    if state == "pending":
        # it never signed anything: withdraw it, and keep the keys it was to replace signing
        await repo.delete_key(kid)
        for key in keys:
            if key.kid != kid and key.retires_at == target.activates_at:
                await repo.update_key(replace(key, retires_at=None))
        return replace(target, retires_at=now)
    others = [k for k in keys if k.kid != kid and k.state(now, policy.max_token_lifetime) == "active"]
    if state == "active" and not others:
        raise KeyRingError(
            f"key {kid} is the only key that signs; run `ostiary keys rotate --now` first, then retire it")
    updated = _replace_retire(target, now)
    await repo.update_key(updated)
    return updated


async def maybe_auto_rotate(repo: KeyRepository, policy: ServerPolicy, kek: bytes, clock: Clock) -> bool:
    """``keys.rotate_every``: rotate when the newest key is older than the period and none is pending."""
    if not policy.key_rotate_every:
        return False
    now = clock.now()
    keys = await repo.list_keys()
    if any(k.state(now, policy.max_token_lifetime) == "pending" for k in keys):
        return False
    newest = max((k.created_at for k in keys), default=None)
    if newest is not None and now - newest < policy.key_rotate_every:
        return False
    await rotate_keys(repo, policy, kek, clock)
    return True


async def purge_expired_keys(repo: KeyRepository, policy: ServerPolicy, clock: Clock) -> int:
    now = clock.now()
    n = 0
    for key in await repo.list_keys():
        if key.state(now, policy.max_token_lifetime) == "expired":
            await repo.delete_key(key.kid)
            n += 1
    return n
