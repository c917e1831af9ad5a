"""Signing keys: the key ring a server process signs with, and the pending → active → retired stages.

The ring holds one active key per algorithm (``ServerPolicy.signing_algs``: by default ES256 for access tokens
and RS256, the ID-token default of OpenID Connect), and each algorithm rotates on its own. A rotated-in key is
published in the JWKS for ``key_publish_delay`` seconds before it signs, so verifiers' JWKS caches pick it up;
the key it replaces keeps verifying (published) until every token it signed has expired. Every process
rebuilds its ring from storage periodically, so a rotation needs no restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from .._clock import Clock
from .._secrets import new_token
from . import jose
from .policy import ServerPolicy

__all__ = ["SUPPORTED_ALGS", "KeyNotFound", "KeyRepository", "KeyRing", "KeyRingError", "KeyState", "SigningKey",
           "ensure_signing_key", "maybe_auto_rotate", "purge_expired_keys", "retire_key", "rotate_key", "rotate_keys"]

KeyState = Literal["pending", "active", "retired", "expired"]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A signing key and its life: pending (published, not signing) → active → retired (published until
    everything it signed has expired) → expired (removed)."""

    kid: str
    alg: str
    public_jwk: Mapping[str, Any]
    encrypted_private_key: bytes = field(repr=False)
    created_at: float
    activates_at: float
    retires_at: float | None = None

    def state(self, now: float, max_token_lifetime: int) -> KeyState:
        if now < self.activates_at:
            return "pending"
        if self.retires_at is None or now < self.retires_at:
            return "active"
        if now < self.retires_at + max_token_lifetime:
            return "retired"
        return "expired"


class KeyRepository(Protocol):
    async def list_keys(self) -> list[SigningKey]: ...
    async def add_key(self, key: SigningKey) -> None: ...
    async def update_key(self, key: SigningKey) -> None: ...
    async def delete_key(self, kid: str) -> None: ...

#: the algorithms this server can hold keys for
SUPPORTED_ALGS = ("ES256", "RS256", "EdDSA")


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
    """A snapshot of the keys at one moment: the key that signs for each algorithm, and the published keys.

    ``default_alg`` is the algorithm :meth:`sign` uses when none is named (access tokens); ``signer`` is its key.
    """

    def __init__(self, keys: Sequence[SigningKey], kek: bytes, now: float, max_token_lifetime: int,
                 default_alg: str = "ES256") -> None:
        self.loaded_at = now
        self.default_alg = default_alg
        published = [k for k in keys if k.state(now, max_token_lifetime) != "expired"]
        active = sorted((k for k in published if k.state(now, max_token_lifetime) == "active"),
                        key=lambda k: (k.activates_at, k.created_at))
        newest: dict[str, SigningKey] = {}
        for key in active:  # the newest active key of each algorithm signs
            newest[key.alg] = key
        self.signers: dict[str, ActiveKey] = {
            alg: ActiveKey(k.kid, alg, jose.decrypt_private_key(k.encrypted_private_key, kek, k.kid))
            for alg, k in newest.items()}
        self.jwks: dict[str, Any] = {"keys": [dict(k.public_jwk) for k in published]}
        self.verification_keys: list[jose.PublicJwk] = jose.parse_jwks(self.jwks)
        # the next moment at which this snapshot goes stale on its own (a pending key activates, etc.)
        moments = [k.activates_at for k in published if k.activates_at > now]
        moments += [k.retires_at for k in published if k.retires_at and k.retires_at > now]
        moments += [k.retires_at + max_token_lifetime for k in published if k.retires_at]
        self.stale_at = min((m for m in moments if m > now), default=float("inf"))

    @property
    def signer(self) -> ActiveKey | None:
        """The key that signs with ``default_alg`` (access tokens)."""
        return self.signers.get(self.default_alg)

    @property
    def algs(self) -> frozenset[str]:
        """The algorithms this ring can sign with now."""
        return frozenset(self.signers)

    def sign(self, claims: dict[str, Any], typ: str, alg: str | None = None) -> str:
        alg = alg or self.default_alg
        signer = self.signers.get(alg)
        if signer is None:
            raise KeyRingError(f"no active {alg} signing key: run `ostiary keys rotate --now --alg {alg}`")
        return jose.sign_jwt(claims, signer.private_key, alg=alg, kid=signer.kid, typ=typ)


def _new_key(alg: str, kek: bytes, now: float, activates_at: float) -> SigningKey:
    if alg not in SUPPORTED_ALGS:
        raise KeyRingError(f"unsupported signing algorithm {alg!r}; choose ES256, RS256 or EdDSA")
    private = jose.generate_private_key(alg)  # type: ignore[arg-type]
    kid = new_token(16)
    return SigningKey(
        kid=kid, alg=alg, public_jwk=jose.public_jwk(private, kid, alg),
        encrypted_private_key=jose.encrypt_private_key(jose.key_to_pem(private), kek, kid),
        created_at=now, activates_at=activates_at,
    )


async def ensure_signing_key(repo: KeyRepository, policy: ServerPolicy, kek: bytes, clock: Clock) -> bool:
    """For each of ``policy.signing_algs`` without an active or pending key (first start, or an algorithm
    added to ``keys.algorithms``), create a key that signs at once. True if any was created."""
    now = clock.now()
    keys = await repo.list_keys()
    have = {k.alg for k in keys if k.state(now, policy.max_token_lifetime) in ("active", "pending")}
    missing = [alg for alg in policy.signing_algs if alg not in have]
    for alg in missing:
        await repo.add_key(_new_key(alg, kek, now, now))
    return bool(missing)


async def rotate_key(repo: KeyRepository, policy: ServerPolicy, kek: bytes, clock: Clock, alg: str, *,
                     immediate: bool = False) -> SigningKey:
    """Add an ``alg`` key that starts signing after the publish delay (or now); the current ``alg`` key retires
    then. Keys of other algorithms are untouched."""
    if alg not in policy.signing_algs:
        raise KeyRingError(f"{alg} is not one of this server's signing algorithms "
                           f"({', '.join(policy.signing_algs)}); add it to keys.algorithms first")
    now = clock.now()
    activates_at = now if immediate else now + policy.key_publish_delay
    new = _new_key(alg, kek, now, activates_at)
    await repo.add_key(new)
    for key in await repo.list_keys():
        if key.kid == new.kid or key.alg != alg:
            continue
        state = key.state(now, policy.max_token_lifetime)
        if state == "active" and (key.retires_at is None or key.retires_at > activates_at):
            await repo.update_key(_replace_retire(key, activates_at))
        elif state == "pending":  # an older pending key is superseded: it never signs
            await repo.update_key(_replace_retire(key, max(now, key.activates_at)))
    return new


async def rotate_keys(repo: KeyRepository, policy: ServerPolicy, kek: bytes, clock: Clock, *,
                      immediate: bool = False, alg: str | None = None) -> list[SigningKey]:
    """Rotate the key of ``alg``, or (by default) of every signing algorithm, each on its own."""
    algs = [alg] if alg else list(policy.signing_algs)
    return [await rotate_key(repo, policy, kek, clock, a, immediate=immediate) for a in algs]


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
            if key.kid != kid and key.alg == target.alg and key.retires_at == target.activates_at:
                await repo.update_key(replace(key, retires_at=None))
        return replace(target, retires_at=now)
    others = [k for k in keys if k.kid != kid and k.alg == target.alg
              and k.state(now, policy.max_token_lifetime) == "active"]
    if state == "active" and not others and target.alg in policy.signing_algs:
        raise KeyRingError(f"key {kid} is the only {target.alg} key that signs; run "
                           f"`ostiary keys rotate --now --alg {target.alg}` first, then retire it")
    updated = _replace_retire(target, now)
    await repo.update_key(updated)
    return updated


async def maybe_auto_rotate(repo: KeyRepository, policy: ServerPolicy, kek: bytes, clock: Clock) -> bool:
    """``keys.rotate_every``, per algorithm: rotate an algorithm whose newest key is older than the period and
    which has no pending key. True if any was rotated."""
    if not policy.key_rotate_every:
        return False
    now = clock.now()
    keys = await repo.list_keys()
    rotated = False
    for alg in policy.signing_algs:
        mine = [k for k in keys if k.alg == alg]
        if any(k.state(now, policy.max_token_lifetime) == "pending" for k in mine):
            continue
        newest = max((k.created_at for k in mine), default=None)
        if newest is not None and now - newest < policy.key_rotate_every:
            continue
        await rotate_key(repo, policy, kek, clock, alg)
        rotated = True
    return rotated


async def purge_expired_keys(repo: KeyRepository, policy: ServerPolicy, clock: Clock) -> int:
    now = clock.now()
    n = 0
    for key in await repo.list_keys():
        if key.state(now, policy.max_token_lifetime) == "expired":
            await repo.delete_key(key.kid)
            n += 1
    return n
