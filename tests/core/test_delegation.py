"""RFC 8693 token exchange on a user's behalf (delegation), in core: memory store, fixed clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ostiary.admin.service import ClientCreate
from ostiary.admin.users import UserAdmin, UserCreate
from ostiary.core import jose
from ostiary.core.endpoints.authorize import AuthorizationRequest, AuthorizeEndpoint, SessionInfo
from ostiary.core.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    UnauthorizedClient,
)
from ostiary.core.federation import TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT
from ostiary.core.user_tokens import revoke_user_families

from .conftest import ISSUER, Engine
from .test_authorize import CB, VERIFIER, _params

ORDERS = "https://orders.example.com"
INVENTORY = "https://inventory.example.com"
BILLING = "https://billing.example.com"
SCOPE = "openid offline_access orders:read inventory:read"


async def user_token(engine: Engine, *, username: str = "alice", scope: str = SCOPE,
                     audience: str = ORDERS) -> tuple[str, str, str]:
    """(access token, user id, web client id): what the web app holds after a user signed in."""
    web, _ = await engine.client(client_type="public", grant_types=["authorization_code", "refresh_token"],
                                 scopes=scope.split(), audiences=[audience], redirect_uris=[CB])
    user = await UserAdmin(engine.store, engine.clock).create_user(UserCreate(username=username), "password123")
    session = SessionInfo(user.user_id, "sid-" + username, engine.clock.now(), ("pwd",))
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(_params(web, scope=scope),
                                                                          session=session, consent="allow"))
    code = parse_qs(urlsplit(out.location()).query)["code"][0]  # type: ignore[union-attr]
    t = await engine.token({"grant_type": "authorization_code", "code": code, "redirect_uri": CB,
                            "code_verifier": VERIFIER, "client_id": web})
    return t.access_token, user.user_id, web


async def service(engine: Engine, **spec: Any) -> tuple[str, str]:
    """Service A ("orders"): serves ORDERS, may exchange the tokens it receives for INVENTORY."""
    spec.setdefault("grant_types", [TOKEN_EXCHANGE_GRANT])
    spec.setdefault("scopes", ["inventory:read"])
    spec.setdefault("resource_audiences", [ORDERS])
    spec.setdefault("may_exchange_for", [INVENTORY])
    cid, secret = await engine.client(**spec)
    assert secret is not None
    return cid, secret


def exchange_form(subject: str, **extra: str) -> dict[str, str]:
    return {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject,
            "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN, **extra}


def decode(engine: Engine, token: str, audience: str = INVENTORY) -> dict[str, Any]:
    return dict(jose.verify_jwt(token, engine.keyring().verification_keys, issuer=ISSUER, audience=audience,
                                typ="at+jwt", now=engine.clock.now()).claims)


async def test_exchange_keeps_the_user_and_names_the_actor(engine: Engine) -> None:
    subject, user_id, web = await user_token(engine)
    a, secret = await service(engine)
    resp = await engine.token(exchange_form(subject), (a, secret))
    assert resp.issued_token_type == TOKEN_TYPE_ACCESS_TOKEN and resp.refresh_token is None
    assert resp.id_token is None and resp.scope == "inventory:read"
    c = decode(engine, resp.access_token)
    original = decode(engine, subject, ORDERS)
    assert c["sub"] == user_id and c["client_id"] == a and c["aud"] == INVENTORY
    assert c["act"] == {"sub": a}
    assert c["scope"] == "inventory:read" and c["auth_time"] == original["auth_time"]
    assert c["jti"] != original["jti"]
    event = [e for e in engine.audit.events if e.type == "token.exchanged"][-1]
    assert event.outcome == "success" and event.subject == user_id and event.client_id == a
    assert event.detail["actor"] == a and event.detail["aud"] == [INVENTORY]
    assert subject not in repr(event.as_dict()) and resp.access_token not in repr(event.as_dict())
    # the body of the response (RFC 8693 §2.2.1)
    assert set(resp.body()) == {"access_token", "token_type", "expires_in", "scope", "issued_token_type"}


async def test_a_chain_nests_act_and_the_audience_may_be_named(engine: Engine) -> None:
    subject, user_id, _ = await user_token(engine)
    a, sa = await service(engine)
    b, sb = await service(engine, resource_audiences=[INVENTORY], may_exchange_for=[BILLING, ORDERS],
                          scopes=["inventory:read", "orders:read"])
    first = await engine.token(exchange_form(subject), (a, sa))
    second = await engine.token(exchange_form(first.access_token, audience=BILLING), (b, sb))
    c = decode(engine, second.access_token, BILLING)
    assert c["sub"] == user_id and c["client_id"] == b
    assert c["act"] == {"sub": b, "act": {"sub": a}}
    assert c["scope"] == "inventory:read"  # the first exchange narrowed it: never widened again


async def test_lifetime_never_exceeds_the_subject_token(engine: Engine) -> None:
    subject, _, _ = await user_token(engine)
    a, secret = await service(engine)
    subject_exp = decode(engine, subject, ORDERS)["exp"]
    engine.clock.advance(engine.policy.access_token_ttl - 100)
    resp = await engine.token(exchange_form(subject), (a, secret))
    c = decode(engine, resp.access_token)
    assert c["exp"] <= subject_exp and resp.expires_in <= 100


async def test_an_expired_subject_token_is_refused(engine: Engine) -> None:
    subject, _, _ = await user_token(engine)
    a, secret = await service(engine)
    engine.clock.advance(engine.policy.access_token_ttl + 1)
    with pytest.raises(InvalidGrant):
        await engine.token(exchange_form(subject), (a, secret))


async def test_a_refresh_token_is_never_a_subject(engine: Engine) -> None:
    a, secret = await service(engine)
    web, _ = await engine.client(client_type="public", grant_types=["authorization_code", "refresh_token"],
                                 scopes=SCOPE.split(), audiences=[ORDERS], redirect_uris=[CB])
    user = await UserAdmin(engine.store, engine.clock).create_user(UserCreate(username="bob"), "password123")
    session = SessionInfo(user.user_id, "sid-b", engine.clock.now(), ("pwd",))
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(_params(web, scope=SCOPE),
                                                                          session=session, consent="allow"))
    code = parse_qs(urlsplit(out.location()).query)["code"][0]  # type: ignore[union-attr]
    t = await engine.token({"grant_type": "authorization_code", "code": code, "redirect_uri": CB,
                            "code_verifier": VERIFIER, "client_id": web})
    assert t.refresh_token
    for token_type in ("urn:ietf:params:oauth:token-type:refresh_token", TOKEN_TYPE_ACCESS_TOKEN):
        with pytest.raises((InvalidRequest, InvalidGrant)) as exc:
            await engine.token(exchange_form(t.refresh_token, subject_token_type=token_type), (a, secret))
        if token_type.endswith("refresh_token"):
            assert exc.value.error == "invalid_request" and "never exchanged" in exc.value.description
        else:
            assert exc.value.error == "invalid_grant"


async def test_a_token_for_another_audience_is_refused(engine: Engine) -> None:
    subject, _, _ = await user_token(engine, audience=BILLING, scope="openid inventory:read")
    a, secret = await service(engine)  # serves ORDERS: the token was not sent to it
    with pytest.raises(InvalidGrant) as exc:
        await engine.token(exchange_form(subject), (a, secret))
    assert "not issued for this client" in exc.value.description


async def test_revoked_subject_tokens_are_refused(engine: Engine) -> None:
    a, secret = await service(engine)
    # the jti revoked (RFC 7009 by the web app)
    subject, _, web = await user_token(engine)
    c = decode(engine, subject, ORDERS)
    await engine.store.revoke_access_token(c["jti"], web, float(c["exp"]))
    with pytest.raises(InvalidGrant):
        await engine.token(exchange_form(subject), (a, secret))
    # the whole family revoked (the user revoked the app's access on the account page)
    subject2, user_id, _ = await user_token(engine, username="carol")
    await engine.token(exchange_form(subject2), (a, secret))  # works until then
    await revoke_user_families(engine.store, user_id, engine.clock.now())
    with pytest.raises(InvalidGrant):
        await engine.token(exchange_form(subject2), (a, secret))


async def test_scope_is_never_widened(engine: Engine) -> None:
    subject, _, _ = await user_token(engine, scope="openid orders:read")  # the user never granted inventory:read
    a, secret = await service(engine, scopes=["inventory:read", "orders:read", "orders:write"])
    with pytest.raises(InvalidScope):
        await engine.token(exchange_form(subject, scope="inventory:read"), (a, secret))
    with pytest.raises(InvalidScope):
        await engine.token(exchange_form(subject, scope="orders:write"), (a, secret))
    resp = await engine.token(exchange_form(subject), (a, secret))  # default: what both allow
    assert resp.scope == "orders:read"
    a2, s2 = await service(engine)  # only inventory:read: nothing in common with the subject token
    with pytest.raises(InvalidScope):
        await engine.token(exchange_form(subject), (a2, s2))


async def test_audience_must_be_one_the_client_may_exchange_for(engine: Engine) -> None:
    subject, _, _ = await user_token(engine)
    a, secret = await service(engine)
    for target in ({"audience": BILLING}, {"resource": BILLING}, {"audience": "not a uri"}):
        with pytest.raises(InvalidTarget):
            await engine.token(exchange_form(subject, **target), (a, secret))
    none_allowed, s2 = await service(engine, may_exchange_for=[])
    with pytest.raises(InvalidTarget):
        await engine.token(exchange_form(subject), (none_allowed, s2))


async def test_client_must_be_allowed_the_grant_and_authenticated(engine: Engine) -> None:
    subject, _, _ = await user_token(engine)
    cc, secret = await engine.client(grant_types=["client_credentials"], scopes=["inventory:read"],
                                     resource_audiences=[ORDERS], audiences=[INVENTORY])
    with pytest.raises(UnauthorizedClient):
        await engine.token(exchange_form(subject), (cc, secret))
    with pytest.raises(InvalidClient):  # no client authentication at all
        await engine.token(exchange_form(subject))
    with pytest.raises(ValueError):  # may_exchange_for without the grant is refused at registration
        ClientCreate(name="x", grant_types=["client_credentials"], may_exchange_for=[INVENTORY])


async def test_service_tokens_and_foreign_tokens_are_not_subjects(engine: Engine) -> None:
    a, secret = await service(engine)
    # a client-credentials token for orders names no user
    cc, cs = await engine.client(scopes=["inventory:read"], audiences=[ORDERS])
    service_token = (await engine.token({"grant_type": "client_credentials"}, (cc, cs))).access_token
    with pytest.raises(InvalidGrant) as exc:
        await engine.token(exchange_form(service_token), (a, secret))
    assert "on behalf of a user" in exc.value.description
    # a token signed by someone else, with the right claims
    key = jose.generate_private_key("ES256")
    forged = jose.sign_jwt({"iss": ISSUER, "sub": "u", "aud": ORDERS, "client_id": "w", "iat": 1, "jti": "j",
                            "exp": int(engine.clock.now()) + 60}, key, alg="ES256", kid="x", typ="at+jwt")
    with pytest.raises(InvalidGrant):
        await engine.token(exchange_form(forged), (a, secret))
    # a disabled user's token
    subject, user_id, _ = await user_token(engine, username="dave")
    user = await engine.store.get_user(user_id)
    assert user is not None
    await engine.store.update_user(replace(user, disabled=True))
    with pytest.raises(InvalidGrant):
        await engine.token(exchange_form(subject), (a, secret))


async def test_actor_token_is_refused_and_federation_types_still_go_to_federation(engine: Engine) -> None:
    subject, _, _ = await user_token(engine)
    a, secret = await service(engine)
    with pytest.raises(InvalidRequest):
        await engine.token(exchange_form(subject, actor_token=subject, actor_token_type=TOKEN_TYPE_ACCESS_TOKEN),
                           (a, secret))
    # the same token sent as a generic JWT is judged by the trust policies (none pins this server): refused
    with pytest.raises(InvalidGrant) as exc:
        await engine.token(exchange_form(subject, subject_token_type=TOKEN_TYPE_JWT), (a, secret))
    assert "trust policy" in exc.value.description
