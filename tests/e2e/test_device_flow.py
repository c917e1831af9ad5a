"""The device flow end to end: a live server, the toolkit's DeviceLogin polling in a thread, the user's
decision made in real Chromium on the verification page, tokens in a file-backed keyring backend, then
TokenSession refreshing (rotation) and asking for a new login when the refresh token is refused."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from rich.console import Console

from ostiary.client import (
    AccessDenied,
    DeviceLogin,
    DpopKey,
    Expired,
    KeyringTokenStore,
    LoginRequired,
    TokenSession,
)

from ..support import LiveServer
from ._device import DEVICE_GRANT, Background, chromium, decide_in_browser, device_client, file_keyring, new_user

pytestmark = pytest.mark.browser


def _login(server: LiveServer, client: dict, **kw) -> DeviceLogin:
    kw.setdefault("scope", "openid profile offline_access")
    return DeviceLogin(server.issuer, client["client_id"], console=Console(file=io.StringIO()), **kw)


def test_approve_in_chromium_then_refresh_and_relogin(server: LiveServer, tmp_path: Path) -> None:
    client = device_client(server)
    user = new_user(server, totp=True)
    login = _login(server, client)
    code = login.start()
    assert code.verification_uri == server.issuer + "/device"
    poller = Background(lambda: login.poll(code))
    with chromium() as browser:
        page = decide_in_browser(browser, code.verification_uri_complete, user, "approve")
        assert page.get_attribute("#device-done-title", "data-outcome") == "approved"
    tokens = poller.join()
    assert tokens.refresh_token and tokens.id_token and tokens.account == user.user_id

    jwks = KeySet.import_key_set(httpx.get(server.base_url + "/jwks").json())
    id_token = jose_jwt.decode(tokens.id_token, jwks, algorithms=["RS256"]).claims  # the ID-token default
    assert id_token["sub"] == user.user_id and id_token["aud"] == client["client_id"]
    assert "otp" in id_token["amr"]
    access = jose_jwt.decode(tokens.access_token, jwks, algorithms=["ES256"]).claims
    assert access["client_id"] == client["client_id"] and access["sub"] == user.user_id

    backend = file_keyring(tmp_path / "keyring.cfg")
    store = KeyringTokenStore(backend)
    store.save(tokens)
    # the entry landed in the keyring backend, under issuer + client, for the account
    assert backend.get_password(f"ostiary:{server.issuer}|{client['client_id']}", user.user_id)

    session = TokenSession(server.issuer, client["client_id"], store)
    assert session.access_token() == tokens.access_token  # still fresh: no refresh
    info = session.userinfo()
    assert info is not None and info["sub"] == user.user_id

    # about to expire: refreshed, and the rotated refresh token is saved before the access token is used
    eager = TokenSession(server.issuer, client["client_id"], store, refresh_margin=10**6)
    fresh = eager.access_token()
    assert fresh != tokens.access_token
    saved = store.load(server.issuer, client["client_id"])
    assert saved.access_token == fresh and saved.refresh_token != tokens.refresh_token

    # an httpx call through TokenSessionAuth
    r = httpx.get(server.base_url + "/userinfo", auth=session.auth())
    assert r.status_code == 200 and r.json()["sub"] == user.user_id

    # the issuer advertises DPoP: the login's tokens are bound to a key kept with them in the store
    assert tokens.token_type == "DPoP" and tokens.dpop_key and saved.dpop_key == tokens.dpop_key
    form = {"grant_type": "refresh_token", "client_id": client["client_id"], "refresh_token": tokens.refresh_token}
    # someone with the old refresh token but not the key is refused, and the family is left alone
    thief = httpx.post(server.base_url + "/token", data=form)
    assert thief.status_code == 400 and thief.json()["error"] == "invalid_grant"
    assert httpx.get(server.base_url + "/userinfo", auth=session.auth()).status_code == 200
    # the old refresh token is spent: presenting it with the key revokes the family; the session then asks
    # for a login
    proof = DpopKey.from_pem(tokens.dpop_key).proof("POST", server.issuer + "/token", now=time.time())
    replay = httpx.post(server.base_url + "/token", data=form, headers={"DPoP": proof})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    with pytest.raises(LoginRequired):
        eager.access_token()
    assert store.load(server.issuer, client["client_id"]) is None  # removed: a new login is needed
    with pytest.raises(LoginRequired):
        session.access_token()


def test_deny_in_chromium(server: LiveServer) -> None:
    client = device_client(server)
    user = new_user(server)
    login = _login(server, client)
    code = login.start()
    poller = Background(lambda: login.poll(code))
    with chromium() as browser:
        # the code typed by hand, in lower case and without the dash, on the plain verification URI
        page = decide_in_browser(browser, code.verification_uri, user, "deny",
                                 type_code=code.user_code.lower().replace("-", ""))
        assert page.get_attribute("#device-done-title", "data-outcome") == "denied"
    with pytest.raises(AccessDenied, match="denied in the browser"):
        poller.join()


def test_confirm_page_names_the_client_and_warns(server: LiveServer) -> None:
    client = device_client(server, name="Totally Legit CLI")
    user = new_user(server)
    code = _login(server, client).start()
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.goto(code.verification_uri_complete)
        assert page.input_value("#user_code") == code.user_code  # prefilled, still to confirm
        page.click("#device-submit")
        page.fill("#username", user.username)
        page.fill("#password", user.password)
        page.click("#login-submit")
        page.wait_for_selector("#device-confirm-form")
        assert page.text_content("#device-client") == "Totally Legit CLI"
        assert "only continue if you started this on a device you own" in page.text_content("#device-warning").lower()
        assert page.text_content("#device-user-code") == code.user_code
        # a forged form without the CSRF token is refused
        forged = context.request.post(server.base_url + "/device/confirm",
                                      form={"user_code": code.user_code, "decision": "approve"})
        assert forged.status == 403


def test_expiry_with_a_short_lifetime(make_server) -> None:
    srv = make_server("sqlite", extra_env={"OSTIARY_DEVICE__EXPIRES_IN": "5", "OSTIARY_DEVICE__INTERVAL": "1"})
    client = device_client(srv)
    login = _login(srv, client)
    code = login.start()
    assert code.expires_in == 5 and code.interval == 1
    with pytest.raises(Expired, match="expired before it was approved"):
        login.poll(code)
    r = httpx.post(srv.base_url + "/token", data={"grant_type": DEVICE_GRANT, "device_code": code.device_code,
                                                  "client_id": client["client_id"]})
    assert r.status_code == 400 and r.json()["error"] == "expired_token"
    # the verification page no longer knows the code
    with httpx.Client(base_url=srv.base_url) as b:
        page = b.get("/device").text
        csrf = page.split('name="csrf_token" id="csrf_token" value="')[1].split('"')[0]
        r = b.post("/device", data={"csrf_token": csrf, "user_code": code.user_code})
        assert r.status_code == 400 and "not valid, or it has expired" in r.text


def test_slow_down_is_observed_and_honoured(make_server) -> None:
    srv = make_server("sqlite", extra_env={"OSTIARY_DEVICE__INTERVAL": "1"})
    client = device_client(srv)
    user = new_user(srv)
    seen: list[str] = []

    def record(response: httpx.Response) -> None:
        if response.request.url.path == "/token":
            response.read()
            seen.append(response.json().get("error", "tokens"))

    http = httpx.Client(timeout=15, event_hooks={"response": [record]})
    login = _login(srv, client, http_client=http)
    code = login.start()
    form = {"grant_type": DEVICE_GRANT, "device_code": code.device_code, "client_id": client["client_id"]}
    first = httpx.post(srv.base_url + "/token", data=form).json()["error"]
    second = httpx.post(srv.base_url + "/token", data=form).json()["error"]
    assert (first, second) == ("authorization_pending", "slow_down")  # polled faster than the interval
    poller = Background(lambda: login.poll(code))  # its first poll comes < 6 s later: slow_down again
    with chromium() as browser:
        decide_in_browser(browser, code.verification_uri_complete, user, "approve")
    tokens = poller.join()
    http.close()
    assert tokens.access_token
    assert "slow_down" in seen and seen[-1] == "tokens"
    assert seen.count("tokens") == 1


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_with_redis_pending_polls_skip_the_database_and_decisions_arrive_at_once(make_server, decision: str) -> None:
    import time

    import redis

    srv = make_server("postgres", extra_env={"OSTIARY_REDIS_URL": "redis://127.0.0.1:6379/0",
                                             "OSTIARY_DEVICE__INTERVAL": "1"})
    client = device_client(srv)
    user = new_user(srv)
    r = httpx.post(srv.base_url + "/device_authorization", data={"client_id": client["client_id"], "scope": "openid"})
    code = r.json()
    form = {"grant_type": DEVICE_GRANT, "device_code": code["device_code"], "client_id": client["client_id"]}

    def poll() -> httpx.Response:
        time.sleep(1.05)
        return httpx.post(srv.base_url + "/token", data=form)

    assert poll().json()["error"] == "authorization_pending"  # this one read the row
    rds = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = [k for k in rds.scan_iter(srv.env["OSTIARY_REDIS_PREFIX"] + "poll:*") if rds.hget(k, "client") == client["client_id"].encode()]
    assert len(keys) == 1
    read_at = rds.hget(keys[0], "read")
    for _ in range(3):
        assert poll().json()["error"] == "authorization_pending"
    # answered from Redis: the poll times moved on, the time the row was last read did not
    assert rds.hget(keys[0], "read") == read_at
    assert float(rds.hget(keys[0], "last")) >= float(read_at) + 3
    with chromium() as browser:
        decide_in_browser(browser, code["verification_uri_complete"], user, decision)
    answer = poll()  # the very next poll sees the decision
    if decision == "approve":
        assert answer.status_code == 200 and answer.json()["access_token"]
    else:
        assert answer.json()["error"] == "access_denied"
    rds.close()
