"""ostiary.signin without HTTP: the memory store, the memory limiter on a fixed clock, a real argon2 pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from functools import lru_cache

import pyotp
import pytest

from ostiary._clock import FixedClock
from ostiary._passwords import PasswordHashPool, hash_password, new_totp_secret
from ostiary._secrets import derive_key
from ostiary.core.users import User
from ostiary.signin import Authenticator, Outcome, SignInLimits, SignInResult
from ostiary.store.memory import MemoryStore
from ostiary.store.memory_ratelimit import MemoryLimiter

PASSWORD = "correct horse battery"
IP = "198.51.100.7"


@lru_cache(maxsize=1)
def password_hash() -> str:
    return hash_password(PASSWORD)


@dataclass
class Rig:
    auth: Authenticator
    store: MemoryStore
    clock: FixedClock
    alice: User

    async def password(self, login: str, password: str = PASSWORD, ip: str | None = IP) -> SignInResult:
        return await self.auth.check_password(login, password, ip)


async def make_rig(*, per_account: int = 3, per_ip: int = 100, window: int = 900, workers: int = 2,
                   queue: int = 16) -> Rig:
    clock = FixedClock()
    store = MemoryStore()
    alice = User(user_id="u-alice", username="alice", name="Alice", password_hash=password_hash(),
                 email="alice@example.com")
    await store.add_user(alice)
    await store.add_user(User(user_id="u-bob", username="bob", name="Bob", password_hash=password_hash()))
    auth = Authenticator(store, MemoryLimiter(clock=clock.now), PasswordHashPool(workers, queue), clock,
                         SignInLimits(per_account, per_ip, window),
                         totp_key=derive_key(b"m" * 32, "totp"), recovery_key=derive_key(b"m" * 32, "hash"))
    return Rig(auth, store, clock, alice)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await make_rig()
    yield r
    r.auth.hasher.close()  # type: ignore[attr-defined]


def outcomes(results: list[SignInResult]) -> list[Outcome]:
    return [r.outcome for r in results]


# -- password ---------------------------------------------------------------------------------------


async def test_right_password_by_username_or_email(rig: Rig) -> None:
    for login in ("alice", "ALICE", "alice@example.com"):
        result = await rig.password(login)
        assert result.ok and result.user is not None and result.user.user_id == "u-alice"


async def test_wrong_password_and_unknown_account_look_the_same(rig: Rig) -> None:
    wrong = await rig.password("alice", "not the password")
    unknown = await rig.password("nobody", PASSWORD)
    assert wrong == unknown == SignInResult(Outcome.WRONG)


async def test_disabled_account_is_refused_with_the_right_password(rig: Rig) -> None:
    await rig.store.update_user(replace(rig.alice, disabled=True))
    assert (await rig.password("alice")).outcome is Outcome.WRONG


async def test_right_passwords_do_not_use_up_the_budget(rig: Rig) -> None:
    assert outcomes([await rig.password("alice") for _ in range(6)]) == [Outcome.OK] * 6


# -- throttling -------------------------------------------------------------------------------------


async def test_account_counter_is_shared_by_username_and_email_across_addresses(rig: Rig) -> None:
    """Three failures (limit 3) by name and by email from three addresses: the account is locked, even for
    the right password from a fourth address, until the window has passed."""
    for login, ip in (("alice", "203.0.113.1"), ("alice@example.com", "203.0.113.2"), ("Alice", "203.0.113.3")):
        assert (await rig.password(login, "wrong", ip)).outcome is Outcome.WRONG
    locked = await rig.password("alice@example.com", ip="203.0.113.4")
    assert locked.outcome is Outcome.THROTTLED and locked.throttled_by == "login_account"
    assert locked.retry_after > 0 and locked.user is None
    assert (await rig.password("bob", ip="203.0.113.4")).ok  # another account is not affected
    rig.clock.advance(901)
    assert (await rig.password("alice")).ok


async def test_address_counter_spans_accounts() -> None:
    r = await make_rig(per_account=100, per_ip=3)
    for name in ("alice", "bob", "nobody"):
        assert (await r.password(name, "wrong")).outcome is Outcome.WRONG
    refused = await r.password("alice")
    assert refused.outcome is Outcome.THROTTLED and refused.throttled_by == "login_ip"
    assert (await r.password("alice", ip="198.51.100.8")).ok


async def test_ipv6_addresses_count_per_64() -> None:
    r = await make_rig(per_account=100, per_ip=3)
    for ip in ("2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1:ffff:ffff:ffff:ffff"):
        assert (await r.password("nobody", "wrong", ip)).outcome is Outcome.WRONG
    refused = await r.password("alice", ip="2001:db8:1:1:abcd::9")
    assert refused.outcome is Outcome.THROTTLED and refused.throttled_by == "login_ip"
    assert (await r.password("alice", ip="2001:db8:1:2::1")).ok  # the next /64


async def test_parallel_guesses_cannot_overrun_the_limit(rig: Rig) -> None:
    """Each guess reserves its slot before hashing: of eight parallel wrong guesses (limit 3) exactly three are
    checked; the rest are refused without hashing, and the account stays locked."""
    results = await asyncio.gather(*(rig.password("alice", f"guess {i}") for i in range(8)))
    assert sorted(r.outcome.value for r in results) == ["throttled"] * 5 + ["wrong"] * 3
    assert (await rig.password("alice")).outcome is Outcome.THROTTLED


async def test_busy_hash_pool_refuses_without_counting() -> None:
    """One hashing thread and no queue: of two parallel guesses one is refused as BUSY, and it does not count
    towards the limit (2): one more wrong guess is still checked."""
    r = await make_rig(per_account=2, workers=1, queue=0)
    try:
        first = await asyncio.gather(r.password("alice", "wrong 1"), r.password("alice", "wrong 2"))
        assert sorted(o.value for o in outcomes(list(first))) == ["busy", "wrong"]
        assert (await r.password("alice", "wrong 3")).outcome is Outcome.WRONG
        assert (await r.password("alice")).outcome is Outcome.THROTTLED
    finally:
        r.auth.hasher.close()  # type: ignore[attr-defined]


# -- second factor ----------------------------------------------------------------------------------


def wrong_code(secret: str, now: float) -> str:
    """Six digits that are none of the codes valid now (one step of drift either way)."""
    valid = {pyotp.TOTP(secret).at(now + d) for d in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


async def enrol(r: Rig) -> tuple[User, str, list[str]]:
    secret = new_totp_secret()
    assert r.auth.totp_code_matches(secret, pyotp.TOTP(secret).at(r.clock.now()))
    assert not r.auth.totp_code_matches(secret, wrong_code(secret, r.clock.now()))
    codes = await r.auth.enable_totp(r.alice, secret)
    user = await r.store.get_user(r.alice.user_id)
    assert user is not None and user.has_totp and user.totp_secret != secret.encode()  # sealed at rest
    return user, secret, codes


async def test_totp_time_step_is_accepted_once(rig: Rig) -> None:
    user, secret, _ = await enrol(rig)
    code = pyotp.TOTP(secret).at(rig.clock.now())
    assert (await rig.auth.check_second_factor(user, code, IP)).ok
    assert (await rig.auth.check_second_factor(user, code, IP)).outcome is Outcome.WRONG  # RFC 6238 §5.2
    rig.clock.advance(30)
    assert (await rig.auth.check_second_factor(user, pyotp.TOTP(secret).at(rig.clock.now()), IP)).ok


async def test_recovery_codes_are_single_use(rig: Rig) -> None:
    user, _, codes = await enrol(rig)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert await rig.store.count_recovery_codes(user.user_id) == 10
    assert (await rig.auth.check_second_factor(user, " " + codes[0].upper() + " ", IP)).ok
    assert (await rig.auth.check_second_factor(user, codes[0], IP)).outcome is Outcome.WRONG
    assert await rig.store.count_recovery_codes(user.user_id) == 9
    assert (await rig.auth.check_second_factor(user, codes[1], IP)).ok


async def test_new_enrolment_replaces_the_recovery_codes(rig: Rig) -> None:
    _, _, old = await enrol(rig)
    user, _, _ = await enrol(rig)
    assert (await rig.auth.check_second_factor(user, old[0], IP)).outcome is Outcome.WRONG


async def test_wrong_codes_count_on_the_sign_in_counter(rig: Rig) -> None:
    user, secret, codes = await enrol(rig)
    for bad in (wrong_code(secret, rig.clock.now()), "abcde-fghij", ""):
        assert (await rig.auth.check_second_factor(user, bad, IP)).outcome is Outcome.WRONG
    refused = await rig.auth.check_second_factor(user, codes[0], IP)
    assert refused.outcome is Outcome.THROTTLED and refused.throttled_by == "login_account"
    assert (await rig.password("alice@example.com", ip="192.0.2.1")).outcome is Outcome.THROTTLED
    assert await rig.store.count_recovery_codes(user.user_id) == 10  # a refused guess spends nothing


async def test_parallel_code_guesses_cannot_overrun_the_limit(rig: Rig) -> None:
    user, secret, _ = await enrol(rig)
    guesses = [wrong_code(secret, rig.clock.now())] * 4 + ["abcde-fghij"] * 6
    results = await asyncio.gather(*(rig.auth.check_second_factor(user, g, IP) for g in guesses))
    assert outcomes(list(results)).count(Outcome.THROTTLED) == 7


async def test_disable_removes_the_factor_and_the_codes(rig: Rig) -> None:
    user, secret, codes = await enrol(rig)
    await rig.auth.disable_totp(user)
    user2 = await rig.store.get_user(user.user_id)
    assert user2 is not None and not user2.has_totp
    assert await rig.store.count_recovery_codes(user.user_id) == 0
    assert (await rig.auth.check_second_factor(user2, codes[0], IP)).outcome is Outcome.WRONG


# -- re-authentication ------------------------------------------------------------------------------


async def test_reauthenticate_with_password_or_code(rig: Rig) -> None:
    user, secret, codes = await enrol(rig)
    assert (await rig.auth.reauthenticate(user, PASSWORD, IP)).ok
    assert (await rig.auth.reauthenticate(user, pyotp.TOTP(secret).at(rig.clock.now()), IP)).ok
    assert (await rig.auth.reauthenticate(user, codes[0], IP)).ok
    assert (await rig.auth.reauthenticate(user, "", IP)).outcome is Outcome.WRONG
    assert (await rig.auth.reauthenticate(user, "wrong password", IP)).outcome is Outcome.WRONG
    assert (await rig.auth.reauthenticate(user, "still wrong", IP)).outcome is Outcome.WRONG
    assert (await rig.auth.reauthenticate(user, PASSWORD, IP)).outcome is Outcome.THROTTLED
