"""The client toolkit's automatic DPoP (RFC 9449) against a live Ostiary server process, calling an API process
protected by ``ostiary.resource``: service tokens, server nonces, a device login whose key is stored with the
tokens and reused after a reload for refreshes and API calls."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "resource"))
sys.path.insert(0, str(ROOT))
from _dpop_api import Api  # noqa: E402
from tests.support import LiveServer, start_server  # noqa: E402
from tests.web._codeflow import approve_device, new_user  # noqa: E402

from ostiary._clock import FixedClock  # noqa: E402
from ostiary.client import DeviceLogin, EncryptedFileTokenStore, ServiceTokenClient, TokenSession  # noqa: E402
from ostiary.client.dpop import DpopKey  # noqa: E402

API = "https://api.test.example"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("dpop-live")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'dpop.db'}", tmp)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[Api]:
    process = Api(server.issuer, audience=API)
    yield process
    process.stop()


def _service(server: LiveServer, **spec: Any) -> dict[str, Any]:
    return server.create_client(grant_types=["client_credentials"], scopes=["read"], audiences=[API], **spec)


def test_the_issuer_advertises_dpop(server: LiveServer) -> None:
    doc = httpx.get(server.issuer + "/.well-known/openid-configuration").json()
    assert "ES256" in doc["dpop_signing_alg_values_supported"]


def test_service_token_client_gets_a_dpop_token_and_calls_the_api(server: LiveServer, api: Api) -> None:
    spec = _service(server)
    client = ServiceTokenClient(server.issuer, spec["client_id"], client_secret=spec["client_secret"])
    token = client.get_token("read", resource=API)
    assert token.token_type == "DPoP" and client.dpop_key is not None
    with httpx.Client(auth=client.auth("read", resource=API)) as http:
        for _ in range(2):
            r = http.get(api.url + "/me")
            assert r.status_code == 200, r.text
            assert r.json()["jkt"] == client.dpop_key.thumbprint
    # the same token without its proof (a thief's Bearer request) is refused by the API
    stolen = httpx.get(api.url + "/me", headers={"Authorization": f"Bearer {token.access_token}"})
    assert stolen.status_code == 401
    client.close()


def test_service_token_client_retries_once_with_the_servers_nonce(server: LiveServer, api: Api) -> None:
    spec = _service(server, dpop_require_nonce=True)
    sent: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [sent.append]})
    client = ServiceTokenClient(server.issuer, spec["client_id"], client_secret=spec["client_secret"],
                                http_client=http)
    token = client.get_token("read", resource=API)
    assert token.token_type == "DPoP"
    token_requests = [r for r in sent if r.url.path == "/token"]
    assert len(token_requests) == 2  # refused once for the nonce, then issued
    assert "DPoP" in token_requests[1].headers
    with httpx.Client(auth=client.auth("read", resource=API)) as caller:
        assert caller.get(api.url + "/me").status_code == 200
    http.close()


def test_device_login_stores_the_key_and_the_session_reuses_it_after_a_reload(
        server: LiveServer, api: Api, tmp_path: Path) -> None:
    spec = server.create_client(client_type="public", grant_types=[DEVICE_GRANT, "refresh_token"],
                                scopes=["openid", "offline_access"], audiences=[API])
    user = new_user(server)
    clock = FixedClock(time.time())
    login = DeviceLogin(server.issuer, spec["client_id"], scope="openid offline_access", resource=API,
                        clock=clock, sleep=clock.advance)
    code = login.start()
    approve_device(server.base_url, code.user_code, user)
    tokens = login.poll(code)
    login.close()
    assert tokens.token_type == "DPoP" and tokens.dpop_key is not None
    key = DpopKey.from_pem(tokens.dpop_key)
    path = tmp_path / "tokens.enc"
    EncryptedFileTokenStore(path, "a passphrase").save(tokens)

    # a later run of the program: a new store object, a new session
    session = TokenSession(server.issuer, spec["client_id"], EncryptedFileTokenStore(path, "a passphrase"))
    with httpx.Client(auth=session.auth()) as http:
        r = http.get(api.url + "/me")
    assert r.status_code == 200, r.text
    assert r.json()["jkt"] == key.thumbprint
    refreshed = session.refresh()  # the refresh token is bound: only a proof by the stored key works
    assert refreshed.token_type == "DPoP" and refreshed.dpop_key == tokens.dpop_key
    assert refreshed.access_token != tokens.access_token
    with httpx.Client(auth=session.auth()) as http:
        r = http.get(api.url + "/me")
    assert r.status_code == 200 and r.json()["jkt"] == key.thumbprint
    info = session.userinfo()  # Ostiary's /userinfo takes the DPoP token with its proof
    assert info is not None and info["sub"] == r.json()["sub"]
    session.close()
