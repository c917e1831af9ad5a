"""Refresh-token rotation, reuse detection, idle and absolute expiry, reuse window (memory store, fixed clock)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from ostiary.core.endpoints.authorize import AuthorizationRequest, AuthorizeEndpoint
from ostiary.core.errors import InvalidGrant, InvalidScope

from .test_authorize import CB, VERIFIER, _params, _setup


async def _tokens(engine):  # type: ignore[no-untyped-def]
    cid, user, session = await _setup(engine)
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(_params(cid), session=session,
                                                                          consent="allow"))
    code = parse_qs(urlsplit(out.location()).query)["code"][0]  # type: ignore[union-attr]
    t = await engine.token({"grant_type": "authorization_code", "code": code, "redirect_uri": CB,
                            "code_verifier": VERIFIER, "client_id": cid})
    return cid, t


async def test_rotation_and_reuse(engine) -> None:  # type: ignore[no-untyped-def]
    cid, t = await _tokens(engine)
    t2 = await engine.token({"grant_type": "refresh_token", "refresh_token": t.refresh_token, "client_id": cid})
    assert t2.refresh_token != t.refresh_token
    with pytest.raises(InvalidScope):
        await engine.token({"grant_type": "refresh_token", "refresh_token": t2.refresh_token, "client_id": cid,
                            "scope": "openid profile"})
    with pytest.raises(InvalidGrant):
        await engine.token({"grant_type": "refresh_token", "refresh_token": t.refresh_token, "client_id": cid})
    with pytest.raises(InvalidGrant):
        await engine.token({"grant_type": "refresh_token", "refresh_token": t2.refresh_token, "client_id": cid})
    assert any(e.type == "security.refresh_token_reuse" for e in engine.audit.events)


async def test_idle_expiry(engine) -> None:  # type: ignore[no-untyped-def]
    cid, t = await _tokens(engine)
    engine.clock.advance(engine.policy.refresh_token_idle_ttl + 1)
    with pytest.raises(InvalidGrant):
        await engine.token({"grant_type": "refresh_token", "refresh_token": t.refresh_token, "client_id": cid})


async def test_reuse_window(engine) -> None:  # type: ignore[no-untyped-def]
    engine.policy = replace(engine.policy, refresh_token_reuse_window=10)
    cid, t = await _tokens(engine)
    form = {"grant_type": "refresh_token", "refresh_token": t.refresh_token, "client_id": cid}
    a = await engine.token(form)
    b = await engine.token(form)
    assert a.body() == b.body()
    engine.clock.advance(11)
    with pytest.raises(InvalidGrant):
        await engine.token(form)
    with pytest.raises(InvalidGrant):
        await engine.token({**form, "refresh_token": a.refresh_token})
