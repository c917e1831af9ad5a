"""The unit of work (``async with store.transaction()``, issue 11 item 3), on the in-memory store, SQLite and
PostgreSQL: a code exchange writes the spent code, the family, its access-token id and its refresh token
together or not at all."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from ostiary.core.storage import Store
from ostiary.core.tokens import AuthorizationCode, RefreshToken, TokenFamily
from ostiary.store.sql import SqlStore


class Crash(Exception):
    """Stands for anything that stops a request half-way: a bug, a lost connection, a killed worker."""


def _rows() -> tuple[AuthorizationCode, TokenFamily, RefreshToken, str]:
    family_id = secrets.token_hex(8)
    code = AuthorizationCode(code_hash=secrets.token_hex(16), client_id="web", redirect_uri="https://rp/cb",
                             code_challenge="x" * 43, scopes=frozenset({"openid"}), user_id="u-" + family_id,
                             session_id="s", auth_time=9.0, amr=("pwd",), family_id=family_id, created_at=10.0,
                             expires_at=70.0)
    family = TokenFamily(family_id=family_id, client_id="web", user_id=code.user_id, scopes=code.scopes,
                         audience=("https://api.example",), created_at=20.0, expires_at=5000.0, auth_time=9.0)
    refresh = RefreshToken(token_hash=secrets.token_hex(16), family_id=family_id, client_id="web",
                           user_id=code.user_id, scopes=code.scopes, created_at=20.0, expires_at=300.0)
    return code, family, refresh, "jti-" + family_id


async def _exchange(store: Store, code: AuthorizationCode, family: TokenFamily, refresh: RefreshToken, jti: str,
                    *, crash_after: int | None = None) -> bool:
    """The writes of a code exchange, in one transaction; ``crash_after`` writes, raise ``Crash``."""
    steps = [lambda: store.add_family(family), lambda: store.add_family_jti(family.family_id, jti, 400.0),
             lambda: store.add_refresh_token(refresh)]
    async with store.transaction():
        if not await store.use_code(code.code_hash, 20.0):
            return False
        for done, step in enumerate(steps, start=1):
            if crash_after is not None and done > crash_after:
                raise Crash
            await step()
        if crash_after is not None:
            raise Crash
    return True


async def _nothing_written(store: Store, code: AuthorizationCode, family: TokenFamily, refresh: RefreshToken) -> None:
    stored = await store.get_code(code.code_hash)
    assert stored is not None and stored.used_at is None  # the code can still be exchanged
    assert await store.get_family(family.family_id) is None
    assert await store.family_jtis(family.family_id) == []
    assert await store.get_refresh_token(refresh.token_hash) is None


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3])
async def test_a_failure_after_any_write_leaves_nothing_behind(store, crash_after: int) -> None:  # type: ignore[no-untyped-def]
    code, family, refresh, jti = _rows()
    await store.add_code(code)
    with pytest.raises(Crash):
        await _exchange(store, code, family, refresh, jti, crash_after=crash_after)
    await _nothing_written(store, code, family, refresh)
    # and the exchange can then happen, once
    assert await _exchange(store, code, family, refresh, jti) is True
    assert (await store.get_code(code.code_hash)).used_at == 20.0  # type: ignore[union-attr]
    assert await store.get_family(family.family_id) == family
    assert await store.family_jtis(family.family_id) == [(jti, 400.0)]
    assert await store.get_refresh_token(refresh.token_hash) == refresh
    assert await _exchange(store, code, family, refresh, jti) is False


async def test_reads_inside_see_the_transactions_own_writes(store) -> None:  # type: ignore[no-untyped-def]
    code, family, refresh, jti = _rows()
    await store.add_code(code)
    with pytest.raises(Crash):
        async with store.transaction():
            await store.use_code(code.code_hash, 20.0)
            await store.add_family(family)
            assert (await store.get_code(code.code_hash)).used_at == 20.0  # type: ignore[union-attr]
            assert await store.get_family(family.family_id) == family
            raise Crash
    await _nothing_written(store, code, family, refresh)


async def test_a_nested_transaction_joins_the_outer_one(store) -> None:  # type: ignore[no-untyped-def]
    code, family, refresh, jti = _rows()
    await store.add_code(code)
    with pytest.raises(Crash):
        async with store.transaction():
            await store.use_code(code.code_hash, 20.0)
            async with store.transaction():
                await store.add_family(family)
            await store.add_refresh_token(refresh)
            raise Crash  # after the inner block ended: its write goes too
    await _nothing_written(store, code, family, refresh)


async def test_writes_that_meet_a_conflict_do_not_break_the_transaction(store) -> None:  # type: ignore[no-untyped-def]
    """Revoking an already revoked access token and a replayed ``use_once`` are answers, not errors: inside a
    transaction they must not abort it (PostgreSQL refuses every statement after a failed one)."""
    code, family, refresh, jti = _rows()
    await store.add_code(code)
    await store.revoke_access_token(jti, "web", 400.0)
    await store.use_once("tx", jti, 400.0, 10.0)
    async with store.transaction():
        await store.revoke_access_token(jti, "web", 400.0)
        assert await store.use_once("tx", jti, 400.0, 10.0) is False
        assert await store.use_code(code.code_hash, 20.0)
        await store.add_family(family)
    assert await store.get_family(family.family_id) == family
    assert await store.is_access_token_revoked(jti)


async def test_concurrent_exchanges_of_one_code_write_one_family(store) -> None:  # type: ignore[no-untyped-def]
    code, family, refresh, jti = _rows()
    await store.add_code(code)
    results = await asyncio.gather(*(_exchange(store, code, family, refresh, jti) for _ in range(4)))
    assert results.count(True) == 1
    assert await store.family_jtis(family.family_id) == [(jti, 400.0)]


async def test_uncommitted_writes_are_invisible_to_other_connections(store) -> None:  # type: ignore[no-untyped-def]
    if not isinstance(store, SqlStore):
        pytest.skip("the memory store has no connections: its writes are visible at once")
    code, family, refresh, jti = _rows()
    await store.add_code(code)
    seen: list[object] = []
    async with store.transaction():
        await store.use_code(code.code_hash, 20.0)
        await store.add_family(family)
        # another task (another request) reads on its own connection
        seen.append(await asyncio.create_task(store.get_family(family.family_id)))
    assert seen == [None]
    assert await store.get_family(family.family_id) == family
