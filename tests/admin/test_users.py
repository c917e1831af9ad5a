"""UserAdmin: the rules of user administration, and that ending a user's access ends all of it (memory store,
fixed clock, no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlsplit

import pytest

from ostiary._passwords import verify_password
from ostiary._secrets import sha256_b64url
from ostiary.admin.service import AdminError, ClientCreate, NotFound
from ostiary.admin.users import SignedOut, UserAdmin, UserCreate, UserUpdate, signed_out_view, user_view
from ostiary.core.endpoints.authorize import AuthorizationRequest, AuthorizeEndpoint, SessionInfo
from ostiary.core.endpoints.userinfo import UserinfoEndpoint
from ostiary.core.errors import InvalidGrant, InvalidToken
from ostiary.core.users import LoginSession, User

from ..core.conftest import Engine

CB = "https://app.example.com/cb"
VERIFIER = "v" * 50
PASSWORD = "correct horse battery"


@dataclass
class SignedIn:
    """What a user who signed in holds: a browser session, an access token and a refresh token."""

    user: User
    client_id: str
    access_token: str
    refresh_token: str


def users(engine: Engine) -> UserAdmin:
    return UserAdmin(engine.store, engine.clock)


async def sign_in(engine: Engine, username: str) -> SignedIn:
    """The code flow with PKCE, through the core endpoints, as the web layer drives it."""
    web, _ = await engine.admin.create_client(ClientCreate.model_validate({
        "name": "web " + username, "client_type": "public", "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "offline_access"], "redirect_uris": [CB], "dpop_bound_access_tokens": False}))
    user = await users(engine).create_user(UserCreate(username=username, email=f"{username}@example.com"), PASSWORD)
    now = engine.clock.now()
    await engine.store.add_session(LoginSession(session_id="sid-" + username, token_hash="h-" + username,
                                                user_id=user.user_id, created_at=now, last_seen=now,
                                                expires_at=now + 3600, auth_time=now, amr=("pwd",)))
    params = {"response_type": "code", "client_id": web.client_id, "redirect_uri": CB,
              "scope": "openid offline_access", "state": "s", "nonce": "n",
              "code_challenge": sha256_b64url(VERIFIER), "code_challenge_method": "S256"}
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(
        tuple(params.items()), session=SessionInfo(user.user_id, "sid-" + username, now, ("pwd",)), consent="allow"))
    code = parse_qs(urlsplit(out.location()).query)["code"][0]  # type: ignore[union-attr]
    tokens = await engine.token({"grant_type": "authorization_code", "code": code, "redirect_uri": CB,
                                 "code_verifier": VERIFIER, "client_id": web.client_id})
    assert tokens.refresh_token
    return SignedIn(user, web.client_id, tokens.access_token, tokens.refresh_token)


async def still_works(engine: Engine, s: SignedIn) -> bool:
    """Whether the user's access token is accepted at userinfo and the refresh token still refreshes."""
    try:
        await UserinfoEndpoint(engine.ctx).handle("Bearer " + s.access_token)
        access = True
    except InvalidToken:
        access = False
    try:
        t = await engine.token({"grant_type": "refresh_token", "refresh_token": s.refresh_token,
                                "client_id": s.client_id})
        assert t.refresh_token
        s.refresh_token = t.refresh_token
        refresh = True
    except InvalidGrant:
        refresh = False
    assert access == refresh, "the access and refresh tokens of one sign-in disagree"
    return access


async def sessions(engine: Engine, user: User) -> int:
    return len(await engine.store.list_sessions(user.user_id))


# -- creating and finding -------------------------------------------------------------------------------------


async def test_usernames_and_emails_are_normalised_and_unique(engine: Engine) -> None:
    alice = await users(engine).create_user(UserCreate(username=" Alice ", email="Alice@Example.COM"), PASSWORD)
    assert (alice.username, alice.email, alice.name) == ("alice", "alice@example.com", "alice")
    with pytest.raises(AdminError, match="already taken"):
        await users(engine).create_user(UserCreate(username="ALICE"), PASSWORD)
    with pytest.raises(AdminError, match="already taken"):
        await users(engine).create_user(UserCreate(username="alice2", email="alice@example.com"), PASSWORD)
    assert [u.username for u in await users(engine).list_users()] == ["alice"]


async def test_the_password_policy_applies_and_the_password_is_stored_hashed(engine: Engine) -> None:
    with pytest.raises(AdminError, match="at least 8 characters"):
        await users(engine).create_user(UserCreate(username="bob"), "short")
    assert await users(engine).list_users() == []
    bob = await users(engine).create_user(UserCreate(username="bob"), PASSWORD)
    assert bob.password_hash and PASSWORD not in bob.password_hash
    assert verify_password(bob.password_hash, PASSWORD).ok


async def test_a_user_is_found_by_id_username_or_email(engine: Engine) -> None:
    carol = await users(engine).create_user(UserCreate(username="carol", email="carol@example.com"), PASSWORD)
    for ref in (carol.user_id, "carol", "carol@example.com"):
        assert (await users(engine).get_user(ref)).user_id == carol.user_id
    for ref in ("nobody", "x" * 300):
        with pytest.raises(NotFound, match="ostiary user list"):
            await users(engine).get_user(ref)


async def test_the_view_shows_no_password_hash_or_second_factor_secret(engine: Engine) -> None:
    dave = await users(engine).create_user(UserCreate(username="dave"), PASSWORD)
    dave = replace(dave, totp_secret=b"\x01" * 20)
    view = user_view(dave)
    assert view["totp"] is True
    assert dave.password_hash not in repr(view) and "totp_secret" not in view and "password_hash" not in view


# -- ending access ---------------------------------------------------------------------------------------------


async def test_a_password_reset_ends_every_session_and_revokes_every_token(engine: Engine) -> None:
    """The response to a compromised account: a stolen refresh token stops working too."""
    alice = await sign_in(engine, "alice")
    bob = await sign_in(engine, "bob")
    assert await still_works(engine, alice)
    user, out = await users(engine).set_password("alice", "a new long password")
    assert out.sessions == 1 and out.token_families == 1 and out.access_tokens >= 1
    assert not await still_works(engine, alice) and await sessions(engine, alice.user) == 0
    assert not verify_password(user.password_hash, PASSWORD).ok
    assert verify_password(user.password_hash, "a new long password").ok
    assert await still_works(engine, bob) and await sessions(engine, bob.user) == 1  # nobody else signed out


async def test_a_refused_password_changes_nothing_and_signs_nobody_out(engine: Engine) -> None:
    alice = await sign_in(engine, "alice")
    with pytest.raises(AdminError, match="at least 8 characters"):
        await users(engine).set_password("alice", "short")
    assert await still_works(engine, alice) and await sessions(engine, alice.user) == 1
    assert verify_password((await users(engine).get_user("alice")).password_hash, PASSWORD).ok


async def test_disabling_signs_out_and_other_changes_do_not(engine: Engine) -> None:
    alice = await sign_in(engine, "alice")
    renamed, out = await users(engine).update_user("alice", UserUpdate(name="Alice A."))
    assert renamed.name == "Alice A." and out == SignedOut()
    assert await still_works(engine, alice)
    disabled, out = await users(engine).update_user("alice", UserUpdate(disabled=True))
    assert disabled.disabled and out.sessions == 1 and out.token_families == 1
    assert not await still_works(engine, alice)
    again, out = await users(engine).update_user("alice", UserUpdate(disabled=True))  # already disabled
    assert out == SignedOut()
    enabled, out = await users(engine).update_user("alice", UserUpdate(disabled=False))
    assert not enabled.disabled and out == SignedOut()
    assert signed_out_view(out) == {"sessions_ended": 0, "token_families_revoked": 0, "access_tokens_revoked": 0}


async def test_an_email_taken_by_another_user_is_refused_on_update(engine: Engine) -> None:
    await users(engine).create_user(UserCreate(username="alice", email="alice@example.com"), PASSWORD)
    await users(engine).create_user(UserCreate(username="bob", email="bob@example.com"), PASSWORD)
    with pytest.raises(AdminError, match="already taken"):
        await users(engine).update_user("bob", UserUpdate(email="ALICE@example.com"))
    assert (await users(engine).get_user("bob")).email == "bob@example.com"


async def test_resetting_the_second_factor_removes_it_and_what_was_signed_in_with_it(engine: Engine) -> None:
    alice = await sign_in(engine, "alice")
    await engine.store.update_user(replace(alice.user, totp_secret=b"\x01" * 20))
    await engine.store.set_recovery_codes(alice.user.user_id, ["code-hash-1", "code-hash-2"])
    user, out = await users(engine).reset_totp("alice")
    assert not user.has_totp and not (await users(engine).get_user("alice")).has_totp
    assert await engine.store.count_recovery_codes(alice.user.user_id) == 0
    assert out.sessions == 1 and out.token_families == 1
    assert not await still_works(engine, alice)


async def test_deleting_a_user_revokes_their_tokens_first(engine: Engine) -> None:
    alice = await sign_in(engine, "alice")
    out = await users(engine).delete_user("alice")
    assert out.sessions == 1 and out.token_families == 1 and out.access_tokens >= 1
    with pytest.raises(NotFound):
        await users(engine).get_user("alice")
    assert not await still_works(engine, alice)
    with pytest.raises(NotFound):
        await users(engine).delete_user("alice")
