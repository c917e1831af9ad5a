"""RFC 8628 device flow rules on the memory store with a fixed clock."""

from __future__ import annotations

import math

import pytest

from ostiary.core.device import (
    GRANT_DEVICE_CODE,
    USER_CODE_ALPHABET,
    USER_CODE_ENTROPY_BITS,
    format_user_code,
    new_user_code,
    normalise_user_code,
)
from ostiary.core.endpoints.device_authorization import DeviceAuthorizationEndpoint, DevicePolicy, DeviceVerification
from ostiary.core.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    SlowDown,
    UnauthorizedClient,
)
from ostiary.core.users import User
from ostiary.store.memory_device import MemoryPollTracker

from .conftest import ISSUER, Engine

POLICY = DevicePolicy(verification_uri=ISSUER + "/device", expires_in=600, interval=5, max_attempts_per_code=5)


class Device:
    """The engine with a poll tracker, a public device client and a user."""

    def __init__(self, engine: Engine, answers_pending: bool = False) -> None:
        self.engine = engine
        self.tracker = MemoryPollTracker(answers_pending=answers_pending)
        self.client_id = ""

    @property
    def ctx(self):
        from dataclasses import replace

        return replace(self.engine.ctx, poll_tracker=self.tracker)

    async def start(self, **form: str) -> dict:
        form.setdefault("client_id", self.client_id)
        req = self.engine.request("/device_authorization", form, None)
        return await DeviceAuthorizationEndpoint(self.ctx, POLICY).handle(req)

    async def poll(self, device_code: str):
        from ostiary.core.endpoints.token import TokenEndpoint
        from ostiary.core.grants import default_grants

        req = self.engine.request("/token", {"grant_type": GRANT_DEVICE_CODE, "device_code": device_code,
                                             "client_id": self.client_id}, None)
        return await TokenEndpoint(self.ctx, default_grants()).handle(req)

    @property
    def verification(self) -> DeviceVerification:
        return DeviceVerification(self.ctx, POLICY)

    async def decide(self, user_code: str, approve: bool, user_id: str = "u1") -> bool:
        auth = await self.verification.lookup(user_code)
        assert auth is not None
        return await self.verification.decide(auth, approve, user_id=user_id, session_id="s1",
                                              auth_time=self.engine.clock.now(), amr=("pwd", "otp"))


@pytest.fixture(params=["reads the row", "answers pending polls"])
async def dev(engine: Engine, request: pytest.FixtureRequest) -> Device:
    # every rule holds whether pending polls read the database or the tracker answers them (Redis)
    d = Device(engine, answers_pending=request.param == "answers pending polls")
    d.client_id, _ = await engine.client(client_type="public", grant_types=[GRANT_DEVICE_CODE, "refresh_token"],
                                         scopes=["openid", "offline_access", "api:read"],
                                         audiences=["https://api.example.com"])
    await engine.store.add_user(User(user_id="u1", username="alice", name="Alice", password_hash="x"))
    return d


def test_user_code_alphabet_and_entropy() -> None:
    assert len(USER_CODE_ALPHABET) == 20 and not set("AEIOUY0123456789") & set(USER_CODE_ALPHABET)
    assert math.isclose(USER_CODE_ENTROPY_BITS, 34.57, abs_tol=0.01)
    codes = {new_user_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == 8 and set(c) <= set(USER_CODE_ALPHABET) for c in codes)
    assert format_user_code("WDJBMJHT") == "WDJB-MJHT"


@pytest.mark.parametrize("typed", ["WDJB-MJHT", "wdjb-mjht", "wdjbmjht", " WdJb MjHt ", "W-D-J-B-M-J-H-T"])
def test_user_code_is_matched_case_and_dash_insensitively(typed: str) -> None:
    assert normalise_user_code(typed) == "WDJBMJHT"


@pytest.mark.parametrize("typed", ["", "WDJB-MJH", "WDJB-MJHTX", "WDJA-MJHT", "WDJB-MJH0", "WDJB_MJHT"])
def test_malformed_user_codes_are_refused(typed: str) -> None:
    assert normalise_user_code(typed) is None


async def test_device_authorization_response(dev: Device) -> None:
    body = await dev.start(scope="openid offline_access")
    assert set(body) == {"device_code", "user_code", "verification_uri", "verification_uri_complete", "expires_in",
                         "interval"}
    assert len(body["device_code"]) >= 43  # 256 bits, base64url
    assert normalise_user_code(body["user_code"]) is not None and body["user_code"][4] == "-"
    assert body["verification_uri"] == ISSUER + "/device"
    assert body["verification_uri_complete"] == ISSUER + "/device?user_code=" + body["user_code"]
    assert (body["expires_in"], body["interval"]) == (600, 5)
    stored = list(dev.engine.store._devices.values())
    assert len(stored) == 1 and body["device_code"] not in repr(stored[0])
    assert stored[0].device_code_hash != body["device_code"]


async def test_client_must_be_allowed_the_grant_and_known(dev: Device, engine: Engine) -> None:
    other, _ = await engine.client(client_type="public", grant_types=["authorization_code"], scopes=["openid"],
                                   redirect_uris=["http://127.0.0.1/cb"])
    with pytest.raises(UnauthorizedClient):
        await dev.start(client_id=other)
    with pytest.raises(InvalidClient):
        await dev.start(client_id="nobody")
    with pytest.raises(InvalidScope):
        await dev.start(scope="admin")


async def test_pending_then_slow_down_grows_the_interval_by_five(dev: Device, engine: Engine) -> None:
    body = await dev.start()
    with pytest.raises(AuthorizationPending):
        await dev.poll(body["device_code"])
    engine.clock.advance(1)
    with pytest.raises(SlowDown):
        await dev.poll(body["device_code"])
    hashes = list(engine.store._devices)
    assert await dev.tracker.interval(hashes[0], 5) == 10
    engine.clock.advance(6)  # 6 s is now too fast: the interval is 10
    with pytest.raises(SlowDown):
        await dev.poll(body["device_code"])
    assert await dev.tracker.interval(hashes[0], 5) == 15
    engine.clock.advance(15)
    with pytest.raises(AuthorizationPending):
        await dev.poll(body["device_code"])
    assert await dev.tracker.interval(hashes[0], 5) == 15


async def test_pending_polls_write_nothing(dev: Device, engine: Engine) -> None:
    body = await dev.start()
    before = dict(engine.store._devices)
    events = len(engine.audit.events)
    for _ in range(5):
        engine.clock.advance(5)
        with pytest.raises(AuthorizationPending):
            await dev.poll(body["device_code"])
    assert engine.store._devices == before
    assert len(engine.audit.events) == events


async def test_approval_yields_tokens_once(dev: Device, engine: Engine) -> None:
    body = await dev.start(scope="openid offline_access api:read")
    assert await dev.decide(body["user_code"], approve=True)
    engine.clock.advance(5)
    tokens = await dev.poll(body["device_code"])
    assert tokens.access_token and tokens.refresh_token and tokens.id_token
    assert tokens.scope == "api:read offline_access openid"
    engine.clock.advance(5)
    with pytest.raises(InvalidGrant):
        await dev.poll(body["device_code"])
    issued = [e for e in engine.audit.events if e.type == "token.issued"]
    assert issued[-1].grant_type == GRANT_DEVICE_CODE and issued[-1].subject == "u1"


async def test_no_id_token_without_openid(dev: Device, engine: Engine) -> None:
    body = await dev.start(scope="api:read")
    assert await dev.decide(body["user_code"], approve=True)
    tokens = await dev.poll(body["device_code"])
    assert tokens.id_token is None and tokens.refresh_token  # no openid: the refresh_token grant decides


async def test_denied(dev: Device, engine: Engine) -> None:
    body = await dev.start()
    assert await dev.decide(body["user_code"], approve=False)
    with pytest.raises(AccessDenied):
        await dev.poll(body["device_code"])
    assert await dev.verification.lookup(body["user_code"]) is None  # decided: no longer found


async def test_decision_happens_once(dev: Device) -> None:
    body = await dev.start()
    auth = await dev.verification.lookup(body["user_code"])
    assert auth is not None
    v = dev.verification
    assert await v.decide(auth, True, user_id="u1", session_id=None, auth_time=0, amr=("pwd",))
    assert not await v.decide(auth, False, user_id="u1", session_id=None, auth_time=0, amr=("pwd",))


async def test_expired(dev: Device, engine: Engine) -> None:
    body = await dev.start()
    engine.clock.advance(601)
    with pytest.raises(ExpiredToken):
        await dev.poll(body["device_code"])
    assert await dev.verification.lookup(body["user_code"]) is None
    body2 = await dev.start()
    assert await dev.decide(body2["user_code"], approve=True)
    engine.clock.advance(601)  # approved but never redeemed in time
    with pytest.raises(ExpiredToken):
        await dev.poll(body2["device_code"])


async def test_unknown_or_foreign_device_code(dev: Device, engine: Engine) -> None:
    with pytest.raises(InvalidGrant):
        await dev.poll("not-a-device-code")
    body = await dev.start()
    other, _ = await engine.client(client_type="public", grant_types=[GRANT_DEVICE_CODE], scopes=["openid"])
    dev.client_id, mine = other, dev.client_id
    with pytest.raises(InvalidGrant):
        await dev.poll(body["device_code"])
    dev.client_id = mine


async def test_code_locks_after_wrong_tries(dev: Device, engine: Engine) -> None:
    body = await dev.start()
    code = normalise_user_code(body["user_code"])
    assert code is not None
    last = code[-1]
    wrong = [code[:7] + c for c in USER_CODE_ALPHABET if c != last]
    for typed in wrong[:4]:
        assert await dev.verification.lookup(typed) is None
    assert await dev.verification.lookup(body["user_code"]) is not None  # 4 wrong tries: still usable
    assert await dev.verification.lookup(wrong[4]) is None  # the fifth locks it
    assert await dev.verification.lookup(body["user_code"]) is None
    with pytest.raises(AccessDenied):
        await dev.poll(body["device_code"])
    assert any(e.type == "security.device_code_locked" for e in engine.audit.events)


async def test_user_code_in_other_formats_finds_the_authorization(dev: Device) -> None:
    body = await dev.start()
    assert await dev.verification.lookup(body["user_code"].lower().replace("-", " ")) is not None


@pytest.mark.parametrize("decision", ["approve", "deny", "lock"])
async def test_a_tracker_that_answers_pending_polls_hears_every_decision(engine: Engine, decision: str) -> None:
    dev = Device(engine, answers_pending=True)
    dev.client_id, _ = await engine.client(client_type="public", grant_types=[GRANT_DEVICE_CODE],
                                           scopes=["openid"])
    await engine.store.add_user(User(user_id="u1", username="alice", name="Alice", password_hash="x"))
    reads = 0
    real = engine.store.get_device_authorization

    async def counting(device_code_hash: str):
        nonlocal reads
        reads += 1
        return await real(device_code_hash)

    engine.store.get_device_authorization = counting  # type: ignore[method-assign]
    body = await dev.start(scope="openid")
    for _ in range(4):
        engine.clock.advance(5)
        with pytest.raises(AuthorizationPending):
            await dev.poll(body["device_code"])
    assert reads == 1  # the first poll read the row; the tracker answered the next three
    if decision == "lock":
        code = normalise_user_code(body["user_code"])
        assert code is not None
        for c in [c for c in USER_CODE_ALPHABET if c != code[-1]][:5]:
            assert await dev.verification.lookup(code[:7] + c) is None
    else:
        assert await dev.decide(body["user_code"], approve=decision == "approve")
    engine.clock.advance(5)
    if decision == "approve":
        assert (await dev.poll(body["device_code"])).access_token
    else:
        with pytest.raises(AccessDenied):
            await dev.poll(body["device_code"])
    assert reads == 2
