"""AdminService: the rules of client registration and secret rotation, on the memory store (no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ostiary.admin.service import (
    ADMIN_SCOPE,
    USER_FACING_GRANTS,
    AdminError,
    ClientCreate,
    ClientUpdate,
    InvalidMetadata,
    NotFound,
    client_view,
)
from ostiary.core.endpoints.token import REFUSED_GRANTS
from ostiary.core.federation import TOKEN_EXCHANGE_GRANT

from ..core.conftest import ISSUER, Engine

API = "https://api.example.com"
ADMIN_AUD = ISSUER + "/admin"
CB = "https://app.example.com/cb"


def spec(**kw: Any) -> ClientCreate:
    base: dict[str, Any] = {"name": "svc", "audiences": [API]}
    base.update(kw)
    return ClientCreate.model_validate(base)


def web_app(**kw: Any) -> ClientCreate:
    base: dict[str, Any] = {"name": "web", "client_type": "public", "grant_types": ["authorization_code"],
                            "redirect_uris": [CB]}
    base.update(kw)
    return ClientCreate.model_validate(base)


# -- who may be an administrator ---------------------------------------------------------------------------


async def test_an_admin_client_is_client_credentials_only_and_may_hold_the_admin_scope_and_audience(
        engine: Engine) -> None:
    client, secret = await engine.admin.create_client(
        spec(admin=True, scopes=[ADMIN_SCOPE], audiences=[ADMIN_AUD]))
    assert client.admin and client.grant_types == {"client_credentials"}
    assert ADMIN_SCOPE in client.scopes and client.audiences == (ADMIN_AUD,)
    assert secret is not None and secret.startswith("ost_cs_")


@pytest.mark.parametrize("wants", [{"scopes": [ADMIN_SCOPE]}, {"audiences": [API, ADMIN_AUD]}])
async def test_the_admin_scope_or_audience_needs_the_admin_flag(engine: Engine, wants: dict[str, Any]) -> None:
    with pytest.raises(InvalidMetadata, match="are for admin clients"):
        await engine.admin.create_client(spec(**wants))
    assert await engine.admin.list_clients() == []


@pytest.mark.parametrize("grant", sorted(USER_FACING_GRANTS))
@pytest.mark.parametrize("wants", [{"admin": True}, {"scopes": [ADMIN_SCOPE]}, {"audiences": [ADMIN_AUD]}])
async def test_nothing_admin_on_a_client_with_a_user_facing_grant(engine: Engine, grant: str,
                                                                  wants: dict[str, Any]) -> None:
    """Scopes belong to the client: every user signing in through it would become an administrator."""
    grants = ["authorization_code", grant] if grant == "refresh_token" else [grant]
    with pytest.raises(InvalidMetadata, match="user-facing grants"):
        await engine.admin.create_client(spec(client_type="confidential", grant_types=grants, redirect_uris=[CB],
                                              **wants))
    assert await engine.admin.list_clients() == []


async def test_an_admin_client_uses_no_other_grant(engine: Engine) -> None:
    with pytest.raises(InvalidMetadata, match="client_credentials grant only"):
        await engine.admin.create_client(spec(admin=True, grant_types=["client_credentials", TOKEN_EXCHANGE_GRANT]))


async def test_updates_obey_the_same_admin_rules_and_change_nothing_when_refused(engine: Engine) -> None:
    web, _ = await engine.admin.create_client(web_app(scopes=["openid"]))
    with pytest.raises(InvalidMetadata):
        await engine.admin.update_client(web.client_id, ClientUpdate(scopes=["openid", ADMIN_SCOPE]))
    with pytest.raises(InvalidMetadata):
        await engine.admin.update_client(web.client_id, ClientUpdate(admin=True))
    admin, _ = await engine.admin.create_client(spec(admin=True, scopes=[ADMIN_SCOPE], audiences=[ADMIN_AUD]))
    with pytest.raises(InvalidMetadata, match="user-facing"):
        await engine.admin.update_client(admin.client_id, ClientUpdate(grant_types=["client_credentials",
                                                                                     "authorization_code"],
                                                                       redirect_uris=[CB]))
    assert await engine.admin.get_client(web.client_id) == web
    assert await engine.admin.get_client(admin.client_id) == admin
    # taking the flag away is allowed once the admin scope and audience go with it
    demoted = await engine.admin.update_client(admin.client_id, ClientUpdate(admin=False, scopes=[],
                                                                             audiences=[API]))
    assert not demoted.admin and not demoted.scopes


# -- audiences, grants, client types -----------------------------------------------------------------------


def test_a_service_client_names_the_api_its_tokens_are_for() -> None:
    with pytest.raises(ValidationError, match="needs the audience"):
        ClientCreate.model_validate({"name": "svc"})


@pytest.mark.parametrize("bad", ["api", "/relative", "https://api.example.com#frag", ""])
def test_audiences_are_absolute_uris_without_a_fragment(bad: str) -> None:
    with pytest.raises(ValidationError, match="absolute URI"):
        spec(audiences=[bad])
    with pytest.raises(ValidationError, match="absolute URI"):
        spec(resource_audiences=[bad])


def test_audiences_keep_their_order_without_duplicates() -> None:
    s = spec(audiences=["urn:example:b", API, "urn:example:b"])
    assert s.audiences == ["urn:example:b", API]


def test_may_exchange_for_needs_the_token_exchange_grant() -> None:
    with pytest.raises(ValidationError, match="needs the token exchange grant"):
        spec(may_exchange_for=["https://inventory.example.com"])
    assert spec(grant_types=[TOKEN_EXCHANGE_GRANT], may_exchange_for=[API]).may_exchange_for == [API]


@pytest.mark.parametrize("grant", sorted(REFUSED_GRANTS))
def test_refused_grants_say_why(grant: str) -> None:
    with pytest.raises(ValidationError) as exc:
        spec(grant_types=[grant])
    assert REFUSED_GRANTS[grant] in str(exc.value)


def test_unknown_grants_list_the_supported_ones() -> None:
    with pytest.raises(ValidationError, match="unsupported grant type 'urn:x'; supported: .*client_credentials"):
        spec(grant_types=["urn:x"])


def test_public_clients_hold_no_secret_and_cannot_use_client_credentials() -> None:
    with pytest.raises(ValidationError, match="may not use client_credentials"):
        spec(client_type="public")
    with pytest.raises(ValidationError, match="authenticate with 'none'"):
        web_app(token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(ValidationError, match="confidential clients must authenticate"):
        spec(token_endpoint_auth_method="none")


def test_a_code_flow_client_needs_a_redirect_uri() -> None:
    with pytest.raises(ValidationError, match="at least one --redirect-uri"):
        web_app(redirect_uris=[])


async def test_a_public_client_gets_no_secret(engine: Engine) -> None:
    client, secret = await engine.admin.create_client(web_app())
    assert secret is None and client.secrets == () and client.token_endpoint_auth_method == "none"


async def test_the_id_token_algorithm_must_be_one_this_server_signs_with(engine: Engine) -> None:
    assert "EdDSA" not in engine.policy.signing_algs
    with pytest.raises(InvalidMetadata, match="not signable here"):
        await engine.admin.create_client(web_app(id_token_signed_response_alg="EdDSA"))


async def test_client_ids_are_unique_and_unknown_ids_are_not_found(engine: Engine) -> None:
    await engine.admin.create_client(spec(client_id="orders"))
    with pytest.raises(AdminError, match="already exists"):
        await engine.admin.create_client(spec(client_id="orders"))
    for call in (engine.admin.get_client, engine.admin.delete_client, engine.admin.rotate_secret):
        with pytest.raises(NotFound, match="ostiary client list"):
            await call("nobody")
    await engine.admin.delete_client("orders")
    with pytest.raises(NotFound):
        await engine.admin.get_client("orders")


# -- secrets --------------------------------------------------------------------------------------------------


async def test_rotation_keeps_the_old_secret_for_the_overlap_only(engine: Engine) -> None:
    client, _ = await engine.admin.create_client(spec())
    t0 = engine.clock.now()
    rotated, new = await engine.admin.rotate_secret(client.client_id)  # the policy's overlap by default
    old_secret, new_secret = rotated.secrets
    assert old_secret.expires_at == t0 + engine.policy.client_secret_overlap and new_secret.expires_at is None
    assert new.startswith("ost_cs_") and old_secret.secret_hash != new_secret.secret_hash

    # a second rotation never lengthens the first overlap
    ov = engine.policy.client_secret_overlap
    engine.clock.advance(100)
    again, _ = await engine.admin.rotate_secret(client.client_id)
    assert [s.expires_at for s in again.secrets] == [t0 + ov, t0 + 100 + ov, None]
    # an expired secret is dropped; a shorter overlap shortens the others
    engine.clock.advance(ov - 50)
    now = engine.clock.now()
    third, _ = await engine.admin.rotate_secret(client.client_id, overlap=3600)
    assert [s.expires_at for s in third.secrets] == [t0 + 100 + ov, now + 3600, None]


async def test_rotation_without_overlap_ends_the_old_secrets_at_once(engine: Engine) -> None:
    """For a leaked secret."""
    client, _ = await engine.admin.create_client(spec())
    rotated, _ = await engine.admin.rotate_secret(client.client_id, overlap=0)
    assert [s.usable(engine.clock.now()) for s in rotated.secrets] == [False, True]


async def test_rotating_needs_a_secret_client(engine: Engine) -> None:
    client, _ = await engine.admin.create_client(web_app())
    with pytest.raises(AdminError, match="uses none, not a secret"):
        await engine.admin.rotate_secret(client.client_id)


async def test_the_view_never_shows_a_secret_or_its_hash(engine: Engine) -> None:
    client, secret = await engine.admin.create_client(spec())
    rotated, new = await engine.admin.rotate_secret(client.client_id)
    view = repr(client_view(rotated, engine.clock.now()))
    assert secret is not None and secret not in view and new not in view
    assert all(s.secret_hash not in view for s in rotated.secrets)
    assert "secret_hash" not in repr(rotated)
