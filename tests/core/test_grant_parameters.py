"""Each grant declares its parameters; the token endpoint refuses another grant's parameter once, for every
grant, and ignores parameters no grant knows (RFC 6749 §3.2). Issue 11 item 4."""

from __future__ import annotations

import pytest

from ostiary.core.device import GRANT_DEVICE_CODE
from ostiary.core.errors import InvalidGrant, InvalidRequest
from ostiary.core.federation import TOKEN_EXCHANGE_GRANT
from ostiary.core.grants import COMMON_PARAMETERS, default_grants

from .conftest import Engine

API = "https://api.example.com"
USER_GRANTS = ["authorization_code", "refresh_token", GRANT_DEVICE_CODE]


def test_every_grant_declares_its_own_parameters() -> None:
    grants = default_grants()
    assert grants["authorization_code"].parameters == {"code", "redirect_uri", "code_verifier"}
    assert grants["refresh_token"].parameters == {"refresh_token"}
    assert grants[GRANT_DEVICE_CODE].parameters == {"device_code"}
    assert grants["client_credentials"].parameters == set()
    assert {"subject_token", "subject_token_type", "requested_token_type"} <= grants[TOKEN_EXCHANGE_GRANT].parameters
    assert {"grant_type", "scope", "resource", "redirect_uri"} <= COMMON_PARAMETERS


@pytest.mark.parametrize("grant, own, foreign", [
    ("authorization_code", {"code": "c", "redirect_uri": "https://app/cb", "code_verifier": "v" * 43},
     "refresh_token"),
    ("authorization_code", {"code": "c"}, "device_code"),
    ("refresh_token", {"refresh_token": "r"}, "code"),
    ("refresh_token", {"refresh_token": "r"}, "code_verifier"),
    ("refresh_token", {"refresh_token": "r"}, "subject_token"),
    (GRANT_DEVICE_CODE, {"device_code": "d"}, "code"),
    (GRANT_DEVICE_CODE, {"device_code": "d"}, "refresh_token"),
])
async def test_another_grants_parameter_is_refused(engine: Engine, grant: str, own: dict[str, str],
                                                   foreign: str) -> None:
    cid, _ = await engine.client(client_type="public", grant_types=USER_GRANTS, redirect_uris=["https://app/cb"])
    with pytest.raises(InvalidRequest) as exc:
        await engine.token({"grant_type": grant, "client_id": cid, **own, foreign: "x"})
    assert exc.value.description == f"unexpected parameter {foreign} for the {grant} grant"
    refused = [e for e in engine.audit.events if e.type == "token.refused"]
    assert refused[-1].grant_type == grant and refused[-1].detail["error"] == "invalid_request"
    # without it, the grant itself judges the (made-up) credential
    with pytest.raises(InvalidGrant):
        await engine.token({"grant_type": grant, "client_id": cid, **own})


@pytest.mark.parametrize("foreign", ["code", "refresh_token", "device_code", "subject_token", "code_verifier"])
async def test_client_credentials_refuses_other_grants_parameters(engine: Engine, foreign: str) -> None:
    cid, secret = await engine.client(audiences=[API])
    assert secret
    with pytest.raises(InvalidRequest, match=f"unexpected parameter {foreign} "):
        await engine.token({"grant_type": "client_credentials", foreign: "x"}, (cid, secret))


async def test_unknown_and_common_parameters_are_accepted(engine: Engine) -> None:
    cid, secret = await engine.client(scopes=["a"], audiences=[API])
    assert secret
    resp = await engine.token({"grant_type": "client_credentials", "scope": "a", "resource": API, "client_id": cid,
                               "x-vendor-extension": "1"}, (cid, secret))
    assert resp.access_token


async def test_a_refresh_may_carry_the_redirect_uri(engine: Engine) -> None:
    """oidc-client-ts sends its redirect_uri with every refresh: it is not another grant's credential."""
    cid, _ = await engine.client(client_type="public", grant_types=USER_GRANTS, redirect_uris=["https://app/cb"])
    with pytest.raises(InvalidGrant):  # judged by the grant (an unknown token), not refused as unexpected
        await engine.token({"grant_type": "refresh_token", "client_id": cid, "refresh_token": "r",
                            "redirect_uri": "https://app/cb"})
