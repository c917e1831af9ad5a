"""Concurrent refreshes with the same token against PostgreSQL, through two server processes: exactly one
wins each round; the loser gets invalid_grant, and (reuse_window 0) the family is revoked. With a reuse
window both requests get the same successor tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ..support import LiveServer, free_port, spawn
from ._codeflow import Browser, exchange, get_code, new_user, web_client

ROUNDS = 25


def _two_processes(make_server: Any, **env: str) -> tuple[LiveServer, str, str]:
    srv: LiveServer = make_server("postgres", extra_env=env)
    port = free_port()
    spawn(srv, port)
    return srv, srv.base_url, f"http://127.0.0.1:{port}"


async def _race(urls: tuple[str, str], client_id: str, token: str) -> list[httpx.Response]:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    async with httpx.AsyncClient(timeout=30) as c:
        return list(await asyncio.gather(*(c.post(u + "/token", data=data) for u in urls)))


def _fresh_family(srv: LiveServer, b: Browser, client: dict, user: dict) -> str:
    code, verifier, _ = get_code(b, client, user)
    body = exchange(srv, client, code, verifier).json()
    return str(body["refresh_token"])


def test_exactly_one_concurrent_refresh_wins(make_server: Any) -> None:
    srv, a, b_url = _two_processes(make_server)
    client = web_client(srv)
    user = new_user(srv)
    browser = Browser(srv)
    try:
        for i in range(ROUNDS):
            token = _fresh_family(srv, browser, client, user)
            urls = (a, b_url) if i % 2 else (b_url, a)
            results = asyncio.run(_race(urls, client["client_id"], token))
            ok = [r for r in results if r.status_code == 200]
            refused = [r for r in results if r.status_code != 200]
            assert len(ok) == 1, [r.text for r in results]
            assert refused[0].status_code == 400 and refused[0].json()["error"] == "invalid_grant"
            successor = ok[0].json()["refresh_token"]
            # strict mode: the loser's reuse revoked the family, so the winner's successor is dead too
            later = httpx.post(a + "/token", data={"grant_type": "refresh_token", "refresh_token": successor,
                                                   "client_id": client["client_id"]})
            assert later.json()["error"] == "invalid_grant"
            info = httpx.get(a + "/userinfo", headers={"Authorization": "Bearer " + ok[0].json()["access_token"]})
            assert info.status_code == 401
        # a later use of an old token is refused too
        again = asyncio.run(_race((a, b_url), client["client_id"], token))
        assert all(r.json()["error"] == "invalid_grant" for r in again)
    finally:
        browser.close()


def test_sequential_rotation_across_processes_then_reuse_revokes(make_server: Any) -> None:
    srv, a, b_url = _two_processes(make_server)
    client = web_client(srv)
    user = new_user(srv)
    browser = Browser(srv)
    try:
        token = first = _fresh_family(srv, browser, client, user)
        for i in range(10):
            r = httpx.post((a, b_url)[i % 2] + "/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                              "client_id": client["client_id"]})
            assert r.status_code == 200, r.text
            token = r.json()["refresh_token"]
        reuse = httpx.post(b_url + "/token", data={"grant_type": "refresh_token", "refresh_token": first,
                                                   "client_id": client["client_id"]})
        assert reuse.json()["error"] == "invalid_grant"
        dead = httpx.post(a + "/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                              "client_id": client["client_id"]})
        assert dead.json()["error"] == "invalid_grant"
    finally:
        browser.close()


def test_reuse_window_returns_the_same_successor(make_server: Any) -> None:
    srv, a, b_url = _two_processes(make_server, OSTIARY_REFRESH_TOKEN__REUSE_WINDOW="30")
    client = web_client(srv)
    other = web_client(srv)
    user = new_user(srv)
    browser = Browser(srv)
    try:
        for _ in range(5):
            token = _fresh_family(srv, browser, client, user)
            results = asyncio.run(_race((a, b_url), client["client_id"], token))
            assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
            assert results[0].json() == results[1].json()
            successor = results[0].json()["refresh_token"]
            # a different request (another scope) with the spent token is still reuse: family revoked
            other_req = httpx.post(a + "/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                       "client_id": client["client_id"], "scope": "openid"})
            assert other_req.json()["error"] == "invalid_grant"
            assert httpx.post(a + "/token", data={"grant_type": "refresh_token", "refresh_token": successor,
                                                  "client_id": client["client_id"]}).json()["error"] == "invalid_grant"
        token = _fresh_family(srv, browser, client, user)
        # another client presenting it: refused, and the family is not harmed
        assert httpx.post(a + "/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                              "client_id": other["client_id"]}).json()["error"] == "invalid_grant"
        assert httpx.post(a + "/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                              "client_id": client["client_id"]}).status_code == 200
    finally:
        browser.close()


def _reuse_counts(urls: tuple[str, ...]) -> dict[str, float]:
    """ostiary_refresh_token_reuse_total by ``revoked_family``, summed over the server processes."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {"true": 0.0, "false": 0.0}
    for url in urls:
        for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
            for sample in family.samples:
                if sample.name == "ostiary_refresh_token_reuse_total":
                    out[sample.labels["revoked_family"]] += sample.value
    return out


def test_a_reuse_stampede_records_one_security_event_per_family(make_server: Any) -> None:
    """Twenty concurrent uses of one refresh token, through two processes: one wins, nineteen are reuse, and
    exactly one of those revokes the family: one ``security.refresh_token_reuse`` event; the rest are counted."""
    from ostiary.store.sql import SqlStore

    srv, a, b_url = _two_processes(make_server)
    client = web_client(srv)
    user = new_user(srv)
    browser = Browser(srv)
    try:
        token = _fresh_family(srv, browser, client, user)
        data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client["client_id"]}

        async def stampede() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as c:
                return list(await asyncio.gather(*(c.post((a, b_url)[i % 2] + "/token", data=data)
                                                   for i in range(20))))

        results = asyncio.run(stampede())
        assert sorted(r.status_code for r in results) == [200] + [400] * 19
        counts = _reuse_counts((a, b_url))
        # a loser that reads the family only after it was revoked is refused before the reuse check: not counted
        assert counts["true"] == 1.0 and counts["false"] <= 18.0, counts
    finally:
        browser.close()
    srv.stop()  # SIGTERM flushes the audit sinks of both processes

    async def events() -> list[Any]:
        store = SqlStore.from_url(srv.env["OSTIARY_DATABASE_URL"])
        try:
            return await store.list_events(1000, "security.refresh_token_reuse")
        finally:
            await store.close()

    reuse_events = asyncio.run(events())
    assert len(reuse_events) == 1, reuse_events
    assert reuse_events[0].client_id == client["client_id"]
