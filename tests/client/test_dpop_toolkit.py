"""The client toolkit's automatic DPoP (RFC 9449) against the stand-in issuer and an API process protected by
``ostiary.resource``: proofs at the token endpoint, DPoP tokens sent with proofs, nonces, keys stored with tokens."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "resource"))
from _dpop_api import Api  # noqa: E402
from _issuer import AUDIENCE, StandInIssuer  # noqa: E402

from ostiary._clock import SystemClock  # noqa: E402
from ostiary.client import EncryptedFileTokenStore, ServiceTokenClient, StoredTokens, TokenSession  # noqa: E402
from ostiary.client.dpop import DpopKey  # noqa: E402

SECRET = "billing-secret"
NONCE_SECRET = "toolkit-nonce-secret"


@pytest.fixture(scope="module")
def _server() -> Iterator[StandInIssuer]:
    server = StandInIssuer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def apis(_server: StandInIssuer) -> Iterator[dict[str, Api]]:
    _server.reset()
    started = {"plain": Api(_server.url), "nonce": Api(_server.url, NONCE_SECRET=NONCE_SECRET, REQUIRED="1")}
    yield started
    for api in started.values():
        api.stop()


@pytest.fixture
def issuer(_server: StandInIssuer, apis: dict[str, Api]) -> StandInIssuer:
    state = _server.state  # keys stay as the API processes fetched them; the rest starts afresh
    state.clock = SystemClock()
    state.secrets = {"billing": SECRET}
    state.dpop, state.dpop_nonce = True, None
    state.dpop_proofs.clear()
    state.refresh_tokens.clear()
    state.counts.clear()
    return _server


def test_service_token_client_gets_a_dpop_token_and_calls_the_api_with_proofs(
        issuer: StandInIssuer, apis: dict[str, Api]) -> None:
    api = apis["plain"]
    client = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET)
    token = client.get_token("orders:read", resource=AUDIENCE)
    assert token.token_type == "DPoP" and client.dpop_key is not None
    assert issuer.state.dpop_proofs[-1]["htu"] == f"{issuer.url}/token"
    with httpx.Client(auth=client.auth("orders:read", resource=AUDIENCE)) as http:
        for _ in range(3):  # a fresh proof each time (a replayed one would be refused)
            r = http.get(api.url + "/me")
            assert r.status_code == 200, r.text
            assert r.json()["jkt"] == client.dpop_key.thumbprint
            assert r.request.headers["Authorization"].startswith("DPoP ")
    client.close()


async def test_async_client_credentials_auth_sends_proofs(issuer: StandInIssuer, apis: dict[str, Api]) -> None:
    api = apis["plain"]
    client = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET)
    async with httpx.AsyncClient(auth=client.auth(resource=AUDIENCE)) as http:
        r = await http.post(api.url + "/me")
        assert r.status_code == 200, r.text
        assert client.dpop_key is not None and r.json()["jkt"] == client.dpop_key.thumbprint
    client.close()


def test_dpop_is_used_only_when_advertised_or_asked_for(issuer: StandInIssuer, apis: dict[str, Api]) -> None:
    issuer.state.dpop = False  # the issuer does not advertise DPoP
    client = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET)
    assert client.get_token(resource=AUDIENCE).token_type == "Bearer" and not issuer.state.dpop_proofs
    forced = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET, dpop=True)
    assert forced.get_token(resource=AUDIENCE).token_type == "DPoP"
    issuer.state.dpop = True
    off = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET, dpop=False)
    token = off.get_token(resource=AUDIENCE)
    assert token.token_type == "Bearer"
    with httpx.Client(auth=off.auth(resource=AUDIENCE)) as http:
        assert http.get(apis["plain"].url + "/me").status_code == 200
    for c in (client, forced, off):
        c.close()


def test_token_endpoint_nonce_is_retried_once_and_remembered(issuer: StandInIssuer) -> None:
    issuer.state.dpop_nonce = "server-nonce-1"
    client = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET)
    assert client.get_token("a", resource=AUDIENCE).token_type == "DPoP"
    assert [p.get("nonce") for p in issuer.state.dpop_proofs] == [None, "server-nonce-1"]
    client.get_token("b", resource=AUDIENCE)  # another token: the remembered nonce at once
    assert [p.get("nonce") for p in issuer.state.dpop_proofs][-1] == "server-nonce-1"
    assert len(issuer.state.dpop_proofs) == 3
    client.close()


def test_api_nonce_is_retried_once_and_remembered(issuer: StandInIssuer, apis: dict[str, Api]) -> None:
    api = apis["nonce"]
    client = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET)
    sent: list[httpx.Request] = []
    with httpx.Client(auth=client.auth(resource=AUDIENCE),
                      event_hooks={"request": [sent.append]}) as http:
        assert http.get(api.url + "/me").status_code == 200
        assert len(sent) == 2  # refused for the nonce once, then accepted
        assert http.get(api.url + "/me").status_code == 200
        assert len(sent) == 3  # the nonce was remembered
    client.close()


def _seed(issuer: StandInIssuer, key: DpopKey | None) -> StoredTokens:
    refresh = uuid.uuid4().hex
    issuer.state.refresh_tokens[refresh] = {"client_id": "cli", "sub": "user-1",
                                            "jkt": key.thumbprint if key else None}
    return StoredTokens(issuer=issuer.url, client_id="cli", account="user-1", access_token="expired",
                        expires_at=time.time() - 10, refresh_token=refresh,
                        token_type="DPoP" if key else "Bearer", dpop_key=key.to_pem() if key else None)


def test_token_session_refreshes_with_the_stored_key_and_calls_the_api(
        issuer: StandInIssuer, apis: dict[str, Api], tmp_path: Path) -> None:
    store = EncryptedFileTokenStore(tmp_path / "tokens.enc", "a passphrase")
    key = DpopKey()
    store.save(_seed(issuer, key))
    session = TokenSession(issuer.url, "cli", store)
    with httpx.Client(auth=session.auth()) as http:
        r = http.get(apis["plain"].url + "/me")
    assert r.status_code == 200, r.text
    assert r.json()["jkt"] == key.thumbprint  # the refresh (bound to the key) worked, the new token is bound too
    stored = store.load(issuer.url, "cli")
    assert stored is not None and stored.token_type == "DPoP" and stored.dpop_key == key.to_pem()
    # after a "restart": a new session over the same store reuses the key, and a second refresh works
    store.save(dataclasses.replace(stored, expires_at=0))
    again = TokenSession(issuer.url, "cli", EncryptedFileTokenStore(tmp_path / "tokens.enc", "a passphrase"))
    with httpx.Client(auth=again.auth()) as http:
        r = http.get(apis["plain"].url + "/me")
    assert r.status_code == 200 and r.json()["jkt"] == key.thumbprint


def test_a_token_set_stored_without_a_key_gets_one_at_its_next_refresh(
        issuer: StandInIssuer, apis: dict[str, Api], tmp_path: Path) -> None:
    store = EncryptedFileTokenStore(tmp_path / "tokens.enc", "a passphrase")
    old = _seed(issuer, None)
    legacy = {k: v for k, v in json.loads(old.to_json()).items() if k != "dpop_key"}
    loaded = StoredTokens.from_json(legacy)  # a set saved by an older version of the toolkit
    assert loaded.dpop_key is None
    store.save(loaded)
    session = TokenSession(issuer.url, "cli", store)
    with httpx.Client(auth=session.auth()) as http:
        r = http.get(apis["plain"].url + "/me")
    assert r.status_code == 200, r.text
    stored = store.load(issuer.url, "cli")
    assert stored is not None and stored.dpop_key is not None and stored.token_type == "DPoP"
    assert r.json()["jkt"] == DpopKey.from_pem(stored.dpop_key).thumbprint


def test_token_session_auth_retries_once_with_the_apis_nonce(
        issuer: StandInIssuer, apis: dict[str, Api], tmp_path: Path) -> None:
    store = EncryptedFileTokenStore(tmp_path / "tokens.enc", "a passphrase")
    key = DpopKey()
    store.save(_seed(issuer, key))
    session = TokenSession(issuer.url, "cli", store)
    sent: list[dict[str, str]] = []  # header snapshots (the retry reuses the request object)
    with httpx.Client(auth=session.auth(), event_hooks={"request": [lambda r: sent.append(dict(r.headers))]}) as http:
        r = http.get(apis["nonce"].url + "/me")
        assert r.status_code == 200, r.text
        assert len(sent) == 2 and "nonce" not in json.loads(_payload(sent[0]["dpop"]))
        assert json.loads(_payload(sent[1]["dpop"]))["nonce"]
        assert http.get(apis["nonce"].url + "/me").status_code == 200
        assert len(sent) == 3  # the API's nonce is remembered
    assert session.tokens().dpop_key == key.to_pem()


def _payload(proof: str) -> str:
    from ostiary._secrets import b64url_decode

    return b64url_decode(proof.split(".")[1]).decode()


async def test_async_token_request_retries_once_with_the_servers_nonce(issuer: StandInIssuer) -> None:
    issuer.state.dpop_nonce = "server-nonce-2"
    client = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET)
    assert (await client.aget_token("c", resource=AUDIENCE)).token_type == "DPoP"
    assert [p.get("nonce") for p in issuer.state.dpop_proofs] == [None, "server-nonce-2"]
    client.close()
