"""A grant's writes are one unit of work (issue 11 item 3): when storing the tokens fails half-way, the code is
not spent and no half family is left; the client's retry then gets its tokens."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from ostiary.core.endpoints.authorize import AuthorizationRequest, AuthorizeEndpoint
from ostiary.core.tokens import RefreshToken

from .conftest import Engine
from .test_authorize import CB, VERIFIER, _params, _setup
from .test_device import Device, dev  # noqa: F401  (fixture)


class Crash(Exception):
    pass


def _fail_refresh_token_write_once(engine: Engine) -> None:
    """The last write of an exchange fails once (a lost connection, a killed worker)."""
    store = engine.store
    original = store.add_refresh_token

    async def failing(token: RefreshToken) -> None:
        store.add_refresh_token = original  # type: ignore[method-assign]
        raise Crash

    store.add_refresh_token = failing  # type: ignore[method-assign]


async def test_code_exchange_that_fails_half_way_leaves_the_code_unspent(engine: Engine) -> None:
    cid, user, session = await _setup(engine)
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(_params(cid), session=session,
                                                                          consent="allow"))
    code = parse_qs(urlsplit(out.location()).query)["code"][0]  # type: ignore[union-attr]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB, "code_verifier": VERIFIER,
            "client_id": cid}
    _fail_refresh_token_write_once(engine)
    with pytest.raises(Crash):
        await engine.token(form)
    assert await engine.store.list_families(user.user_id) == []
    assert not any(e.type == "token.issued" for e in engine.audit.events)

    tokens = await engine.token(form)  # the retry: the code was never spent
    assert tokens.access_token and tokens.refresh_token
    assert len(await engine.store.list_families(user.user_id)) == 1


async def test_device_code_redemption_that_fails_half_way_can_be_polled_again(dev: Device,  # noqa: F811
                                                                              engine: Engine) -> None:
    body = await dev.start(scope="openid offline_access api:read")
    assert await dev.decide(body["user_code"], approve=True)
    _fail_refresh_token_write_once(engine)
    with pytest.raises(Crash):
        await dev.poll(body["device_code"])
    assert await engine.store.list_families("u1") == []

    tokens = await dev.poll(body["device_code"])
    assert tokens.access_token and tokens.refresh_token
    assert len(await engine.store.list_families("u1")) == 1
