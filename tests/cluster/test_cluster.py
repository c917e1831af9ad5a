"""Scale-out on one machine: three Ostiary nodes, each in its own network namespace with its own address, behind
HAProxy, sharing one PostgreSQL database and one Redis (tests/cluster_support.py builds and removes it all).

What must hold across nodes: a key rotated through one node is published by every node before any signs with
it, then used by all; a refresh-token race spread over the three nodes has exactly one winner; rate limits and
lock-outs are shared; a device code approved through one node is redeemed through another; a node killed under
load costs only its in-flight requests while HAProxy routes around it; every issued token has its audit row.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from ..cluster_support import DB_PREFIX, Cluster, Node, cleanup_stale, missing_capability, pg_fetch
from ..e2e._device import DEVICE_GRANT, device_client
from ..support import LiveServer
from ..web._codeflow import Browser, approve_device, exchange, get_code, new_user, web_client

REASON = missing_capability()
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(REASON is not None, reason=f"cluster test: {REASON}")]

API = "https://api.cluster.example"
BURST = 20  # per-client burst: the rate-limit test spends it across nodes
LOCKOUT = 3  # failed client authentications before the lock-out
LOAD_CLIENTS = 40  # the load spreads over many clients, each well under its own rate limit
CONCURRENCY = 12


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cluster"), extra_env={
        "OSTIARY_KEYS__PUBLISH_DELAY": "4",  # a rotated key is published this long before it signs
        "OSTIARY_KEYS__REFRESH_INTERVAL": "1",  # every node reloads keys every second
        "OSTIARY_AUDIT__DURABILITY": "sync",  # a token a client holds has its audit row, even from a killed node
        "OSTIARY_RATE_LIMITS__PER_CLIENT": "0.5",  # a burst of 20, refilled slowly: each test spends its own
        "OSTIARY_RATE_LIMITS__PER_CLIENT_BURST": str(BURST),
        "OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": str(LOCKOUT),
        "OSTIARY_DEVICE__INTERVAL": "1",
    }) as c:
        yield c


@pytest.fixture(scope="module")
def front(cluster: Cluster) -> LiveServer:
    """The cluster as the single-server test helpers see it: the issuer is HAProxy's address."""
    return LiveServer(base_url=cluster.url, env=cluster.env, admin_token=cluster.admin_token,
                      log_path=cluster.workdir / "node1.log")


#: every access token a test received, checked against the audit table by the last test
ISSUED: list[str] = []


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return out


def _keep(token_response: dict[str, Any]) -> dict[str, Any]:
    ISSUED.append(_claims(token_response["access_token"])["jti"])
    return token_response


def _service_client(front: LiveServer) -> dict[str, Any]:
    return front.create_client(audiences=[API])


def _service_clients(cluster: Cluster, n: int) -> list[dict[str, Any]]:
    """``n`` service clients, registered concurrently through HAProxy."""
    async def make() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=cluster.url + "/admin/api", timeout=60,
                                     headers={"Authorization": f"Bearer {cluster.admin_token}"}) as admin:
            rs = await asyncio.gather(*(admin.post("/clients", json={"name": f"load {i}", "audiences": [API]})
                                        for i in range(n)))
        assert all(r.status_code == 201 for r in rs), [r.text for r in rs if r.status_code != 201]
        return [r.json() for r in rs]

    return asyncio.run(make())


def _token(url: str, client: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(url + "/token", data={"grant_type": "client_credentials"}, headers=headers,
                      auth=(client["client_id"], client["client_secret"]), timeout=30)


def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


# ---- the harness ----

def test_what_a_killed_harness_left_is_removed_by_the_next_and_nothing_else() -> None:
    dead = subprocess.Popen(["true"])  # once reaped, its pid names no process
    dead.wait()
    stale, live = f"ostc-{dead.pid}-{secrets.token_hex(3)}-0", f"ostc-{os.getpid()}-{secrets.token_hex(3)}-0"
    stale_db = f"{DB_PREFIX}{dead.pid}_{secrets.token_hex(3)}"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    asyncio.run(pg_fetch(f'CREATE DATABASE "{stale_db}"'))
    try:
        removed = cleanup_stale()
        assert stale in removed and stale_db in removed and live not in removed
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert stale not in listed and live in listed
        assert not asyncio.run(pg_fetch("SELECT 1 FROM pg_database WHERE datname = $1", stale_db))
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        asyncio.run(pg_fetch(f'DROP DATABASE IF EXISTS "{stale_db}"'))


# ---- signing keys ----

def _jwks(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = httpx.get(node.url + "/jwks").json()
    return out


def _es256_kids(node: Node) -> set[str]:
    return {k["kid"] for k in _jwks(node)["keys"] if k["alg"] == "ES256"}


def test_a_key_rotated_through_one_node_is_published_by_all_before_any_signs_with_it(
        cluster: Cluster, front: LiveServer) -> None:
    clients = _service_clients(cluster, 8)  # each client's rate limit is a burst of 20
    nodes = cluster.nodes
    (old_kid,) = {kid for n in nodes for kid in _es256_kids(n)}
    with cluster.admin(nodes[0].url) as admin:  # the admin API of node 1 only
        r = admin.post("/keys/rotate", params={"alg": "ES256"})
    assert r.status_code == 201, r.text
    (new,) = r.json()
    assert new["state"] == "pending"
    new_kid = new["kid"]

    last_unpublished: dict[str, float] = {}  # when each node was last seen without the new key
    first_signed: float | None = None  # when any node was first seen signing with it
    signing = set()
    deadline = time.monotonic() + 60
    while signing != {n.name for n in nodes}:
        assert time.monotonic() < deadline, f"not every node signs with {new_kid}: {signing}"
        for node in nodes:
            seen_at = time.monotonic()
            jwks = _jwks(node)
            if new_kid not in {k["kid"] for k in jwks["keys"]}:
                last_unpublished[node.name] = seen_at
            r = _token(node.url, clients[len(ISSUED) % len(clients)])
            assert r.status_code == 200, r.text
            # verified with the JWKS this node published just before: a node signs only with a key it publishes
            kid = jose_jwt.decode(_keep(r.json())["access_token"], KeySet.import_key_set(jwks)).header["kid"]
            assert kid in (old_kid, new_kid)
            if kid == new_kid:
                signing.add(node.name)
                first_signed = first_signed or time.monotonic()
        time.sleep(0.1)
    # no node was ever seen without the key after some node had signed with it
    assert first_signed is not None
    assert all(t < first_signed for t in last_unpublished.values()), (last_unpublished, first_signed)
    # the old key stays published for the tokens it signed; a token from any node verifies at every node
    assert all(_es256_kids(n) == {old_kid, new_kid} for n in nodes)
    token = _keep(_token(nodes[2].url, clients[0]).json())["access_token"]
    for node in nodes:
        assert jose_jwt.decode(token, KeySet.import_key_set(_jwks(node))).header["kid"] == new_kid
    with cluster.admin(nodes[1].url) as admin:  # as node 2's admin API sees them
        states = {k["kid"]: k["state"] for k in admin.get("/keys").json() if k["alg"] == "ES256"}
    assert states == {old_kid: "retired", new_kid: "active"}


# ---- refresh tokens ----

async def _race(urls: list[str], client_id: str, token: str) -> list[httpx.Response]:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    async with httpx.AsyncClient(timeout=30) as c:
        return list(await asyncio.gather(*(c.post(u + "/token", data=data) for u in urls)))


def test_a_refresh_race_over_three_nodes_has_exactly_one_winner(cluster: Cluster, front: LiveServer) -> None:
    user = new_user(front)
    browser = Browser(front)  # sign-in, consent and the code exchange go through HAProxy, node after node
    urls = [n.url for n in cluster.nodes]
    try:
        for i in range(6):
            client = web_client(front)  # each round its own client (and rate limit)
            code, verifier, _ = get_code(browser, client, user)
            tokens = exchange(front, client, code, verifier)
            assert tokens.status_code == 200, tokens.text
            refresh = _keep(tokens.json())["refresh_token"]
            order = urls[i % 3:] + urls[:i % 3]
            results = asyncio.run(_race(order, client["client_id"], refresh))
            won = [r for r in results if r.status_code == 200]
            lost = [r for r in results if r.status_code != 200]
            assert len(won) == 1, [r.text for r in results]
            _keep(won[0].json())
            assert [(r.status_code, r.json()["error"]) for r in lost] == [(400, "invalid_grant")] * 2
            # the losers' reuse revoked the family: the winner's successor is refused on every node
            successor = won[0].json()["refresh_token"]
            for url in urls:
                again = httpx.post(url + "/token", data={"grant_type": "refresh_token", "refresh_token": successor,
                                                         "client_id": client["client_id"]})
                assert again.json()["error"] == "invalid_grant"
    finally:
        browser.close()


# ---- shared rate limits and lock-outs ----

def test_a_lock_out_earned_on_one_node_refuses_on_another(cluster: Cluster, front: LiveServer) -> None:
    client = _service_client(front)
    a, b, c = cluster.nodes
    # the test connects from the host side of each veth: a trusted proxy, so the address it forwards counts
    attacker = {"X-Forwarded-For": f"203.0.113.{secrets.randbelow(200) + 1}"}
    wrong = {**client, "client_secret": "wrong-" + secrets.token_urlsafe(16)}
    for _ in range(LOCKOUT):
        r = _token(a.url, wrong, **attacker)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    # the right secret from that address, at another node: locked out
    r = _token(b.url, client, **attacker)
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    # the lock-out is for that address only: another address at the third node, and HAProxy's clients, get tokens
    r = _token(c.url, client, **{"X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 200, r.text
    _keep(r.json())
    _keep(_token(cluster.url, client).json())


def test_a_client_rate_limit_is_shared_by_every_node(cluster: Cluster, front: LiveServer) -> None:
    client = _service_client(front)
    admitted = {n.name: 0 for n in cluster.nodes}
    refused: tuple[str, httpx.Response] | None = None
    for i in range(10 * BURST):
        node = cluster.nodes[i % 3]
        r = _token(node.url, client)
        if r.status_code == 429:
            refused = node.name, r
            break
        assert r.status_code == 200, r.text
        _keep(r.json())
        admitted[node.name] += 1
    assert refused is not None, f"never refused: {admitted}"
    name, response = refused
    assert int(response.headers["retry-after"]) >= 1
    # per-process buckets would admit a full burst at every node; this node refused before its own share did
    assert admitted[name] < BURST, admitted
    assert sum(admitted.values()) < 3 * BURST, admitted


# ---- device flow ----

def _poll(node: Node, client: dict[str, Any], device_code: str) -> httpx.Response:
    return httpx.post(node.url + "/token", data={"grant_type": DEVICE_GRANT, "device_code": device_code,
                                                 "client_id": client["client_id"]})


def _start_device(node: Node, client: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(node.url + "/device_authorization", data={"client_id": client["client_id"], "scope": "openid"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_device_poll_timing_is_shared_by_every_node(cluster: Cluster, front: LiveServer) -> None:
    a, b, _ = cluster.nodes
    client = device_client(front)
    grant = _start_device(a, client)
    assert _poll(a, client, grant["device_code"]).json()["error"] == "authorization_pending"
    # at once at another node: too fast for the interval, as at the same node (per-process timing would allow it)
    assert _poll(b, client, grant["device_code"]).json()["error"] == "slow_down"


def test_a_device_code_approved_through_one_node_is_redeemed_through_another(
        cluster: Cluster, front: LiveServer) -> None:
    a, b, c = cluster.nodes
    client = device_client(front)
    user = new_user(front)
    grant = _start_device(a, client)  # started at node 1
    assert grant["verification_uri"] == cluster.url + "/device"  # every node names the one issuer
    interval = grant["interval"]
    approve_device(c.url, grant["user_code"], user)  # approved at node 3
    for _ in range(3):  # redeemed at node 2, polling as RFC 8628 says (slow_down adds 5 s)
        time.sleep(interval)
        r = _poll(b, client, grant["device_code"])
        if r.status_code == 200 or r.json().get("error") != "slow_down":
            break
        interval += 5
    assert r.status_code == 200, r.text
    claims = _claims(_keep(r.json())["access_token"])
    assert claims["sub"] == user["id"] and claims["client_id"] == client["client_id"]
    time.sleep(interval)
    # spent: node 1 refuses it
    assert _poll(a, client, grant["device_code"]).json()["error"] in ("invalid_grant", "expired_token")


# ---- a node dies under load ----

@dataclass
class Outcome:
    started: float
    status: int | None
    jti: str | None
    error: str = ""


@dataclass
class Tally:
    """The load's outcomes; ``await successes(n, since)`` wakes when ``n`` requests started after ``since`` got
    their token."""

    out: list[Outcome]
    changed: asyncio.Condition

    async def add(self, outcome: Outcome) -> None:
        async with self.changed:
            self.out.append(outcome)
            self.changed.notify_all()

    async def successes(self, n: int, since: float = 0.0) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: sum(o.started > since and o.status == 200 for o in self.out) >= n)


async def _load(url: str, clients: list[dict[str, Any]], stop: asyncio.Event, tally: Tally) -> None:
    async def worker(w: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            i = w
            while not stop.is_set():
                client = clients[i % len(clients)]
                i += CONCURRENCY
                started = time.monotonic()
                try:
                    r = await http.post("/token", data={"grant_type": "client_credentials"},
                                        auth=(client["client_id"], client["client_secret"]))
                except httpx.HTTPError as exc:
                    await tally.add(Outcome(started, None, None, repr(exc)))
                    continue
                jti = _claims(r.json()["access_token"])["jti"] if r.status_code == 200 else None
                await tally.add(Outcome(started, r.status_code, jti))

    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))


def test_killing_a_node_under_load_costs_only_its_in_flight_requests(cluster: Cluster, front: LiveServer) -> None:
    clients = _service_clients(cluster, LOAD_CLIENTS)
    victim = cluster.nodes[1]
    out: list[Outcome] = []
    marks: dict[str, float] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        tally = Tally(out, asyncio.Condition())
        load = asyncio.create_task(_load(cluster.url, clients, stop, tally))
        await asyncio.wait_for(tally.successes(60), timeout=120)
        marks["kill"] = time.monotonic()
        await asyncio.to_thread(victim.kill)
        await asyncio.to_thread(cluster.wait_backends, {victim.name: "DOWN"})
        marks["down"] = time.monotonic()
        await asyncio.wait_for(tally.successes(60, since=marks["down"]), timeout=120)
        stop.set()
        await load

    try:
        asyncio.run(scenario())
        ISSUED.extend(o.jti for o in out if o.jti)
        failed = [o for o in out if o.status != 200]
        # at most one request per load worker was in flight when the node died
        assert len(failed) <= CONCURRENCY, [(o.status, o.started - marks["kill"]) for o in failed]
        # (HAProxy closes the client connection without an answer when the lost request went over a reused
        # server connection, as a keep-alive server would: clients retry those; otherwise it answers 502)
        assert all(o.status == 502 or "without sending a response" in o.error for o in failed), \
            {(o.status, o.error) for o in failed}
        # once HAProxy's health check marked the node down, every request succeeded on the other two
        after = [o for o in out if o.started > marks["down"]]
        assert after and all(o.status == 200 for o in after)
    finally:
        cluster.restart(victim)
    cluster.wait_backends({victim.name: "UP"})
    r = _token(victim.url, clients[0])  # the restarted node serves again, on the same database
    assert r.status_code == 200, r.text
    _keep(r.json())


# ---- audit ----

def test_every_token_issued_by_any_node_has_its_audit_event(cluster: Cluster, front: LiveServer) -> None:
    client = _service_client(front)
    for node in cluster.nodes:  # at least one token from each node, and some through HAProxy
        _keep(_token(node.url, client).json())
    for _ in range(6):
        _keep(_token(cluster.url, client).json())
    assert len(ISSUED) == len(set(ISSUED))
    dsn = cluster.env["OSTIARY_DATABASE_URL"].replace("+asyncpg", "")
    rows = asyncio.run(_audit_rows(dsn, ISSUED))
    missing = set(ISSUED) - set(rows)
    assert not missing, f"{len(missing)} of {len(ISSUED)} issued tokens have no audit event"
    # HAProxy's clients are recorded with their own address (X-Forwarded-For from a trusted proxy), never HAProxy's
    recent = [rows[j] for j in ISSUED[-6:]]
    assert all(ip == "127.0.0.1" for ip in recent), recent
    direct = rows[ISSUED[-7]]  # from node 3, direct: the host side of its veth is the client
    assert direct == cluster.nodes[2].host_addr


async def _audit_rows(dsn: str, jtis: list[str]) -> dict[str, str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT jti, ip FROM audit_events WHERE type = 'token.issued' AND jti = ANY($1)",
                                jtis)
    finally:
        await conn.close()
    return {r["jti"]: r["ip"] for r in rows}

