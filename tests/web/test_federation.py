"""Workload identity federation over real HTTP: a live server (SQLite and PostgreSQL) exchanges tokens minted
by the example's stand-in CI issuer, which runs in this process and serves discovery and JWKS on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ostiary.core.federation import TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_ACCESS_TOKEN, ExternalKeysUnavailable
from ostiary.core.grants.token_exchange import GENERIC_REFUSAL
from ostiary.resource import TokenVerifier
from ostiary.web.federation_keys import HttpExternalKeys

from ..federation_support import DEPLOY, add_policy, audit_events, exchange, explain, start_ci, trust_spec
from ..support import LiveServer

GENERIC = {"error": "invalid_grant", "error_description": GENERIC_REFUSAL}


@pytest.fixture
def ci(tmp_path: Path) -> Iterator[Any]:
    issuer = start_ci(tmp_path)
    yield issuer
    issuer.stop()


def claims_of(token: str) -> dict[str, Any]:
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out


def assert_refused(server: LiveServer, token: str, **form: str) -> None:
    r = exchange(server, token, **form)
    assert r.status_code == 400, r.text
    assert r.json() == GENERIC
    assert r.headers["cache-control"] == "no-store"


def failed_check(report: dict[str, Any]) -> str:
    assert report["outcome"] == "refused"
    return str(report["reason"])


# -- the whole flow --------------------------------------------------------------------------------------

def test_exchange_end_to_end_and_the_token_validates_with_ostiary_resource(server: LiveServer, ci: Any) -> None:
    meta = httpx.get(server.base_url + "/.well-known/oauth-authorization-server").json()
    assert TOKEN_EXCHANGE_GRANT in meta["grant_types_supported"]
    policy = add_policy(server, trust_spec(ci, server, max_lifetime="10m"))
    job = ci.mint(server.issuer)
    r = exchange(server, job, scope="deploy", audience=DEPLOY)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["issued_token_type"] == TOKEN_TYPE_ACCESS_TOKEN
    assert body["token_type"] == "Bearer" and body["scope"] == "deploy" and body["expires_in"] == 600
    assert "refresh_token" not in body

    verifier = TokenVerifier(issuer=server.issuer, audience=DEPLOY)
    try:
        access = verifier.verify(body["access_token"])
    finally:
        verifier.close()
    assert access.subject == "ci:acme/api@production"
    assert access.client_id == "federation:" + policy["policy_id"]
    assert access.scopes == {"deploy"} and access.is_service and not access.is_user
    external = claims_of(job)
    assert access.claims["act"] == {"iss": ci.issuer, "sub": external["sub"]}
    assert access.claims["federation_policy"] == policy["policy_id"]

    jti = access.claims["jti"]
    events = audit_events(server, lambda e: e.jti == jti)
    assert len(events) == 1
    event = events[0]
    assert event.type == "federation.exchange" and event.outcome == "success"
    assert event.subject == "ci:acme/api@production" and event.grant_type == TOKEN_EXCHANGE_GRANT
    assert event.detail["issuer"] == ci.issuer and event.detail["policy"] == policy["policy_id"]
    assert event.detail["external_subject"] == external["sub"] and event.detail["external_jti"] == external["jti"]
    assert event.detail["lifetime"] == 600
    assert job not in repr(event.as_dict()) and body["access_token"] not in repr(event.as_dict())

    # the access token is a normal one: introspection knows it only for a client that serves the audience
    api = server.create_client(resource_audiences=[DEPLOY], audiences=[DEPLOY])
    i = httpx.post(server.base_url + "/introspect", data={"token": body["access_token"]},
                   auth=(api["client_id"], api["client_secret"]))
    assert i.status_code == 200 and i.json()["active"] is True and i.json()["sub"] == "ci:acme/api@production"


def test_refusals_are_audited_with_the_reason_but_never_the_token(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server))
    job = ci.mint(server.issuer, ref="refs/heads/dev")
    assert_refused(server, job)
    jti = claims_of(job)["jti"]
    events = audit_events(server, lambda e: e.detail.get("external_jti") == jti)
    assert len(events) == 1 and events[0].outcome == "failure"
    assert events[0].detail["issuer"] == ci.issuer
    assert events[0].detail["reason"] == "no trust policy matches the token"
    assert events[0].detail["error"] == "invalid_grant"
    assert job not in repr(events[0].as_dict())


# -- conditions ------------------------------------------------------------------------------------------

def test_every_condition_type_matched_and_unmatched(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server, conditions=[
        {"claim": "repository", "op": "eq", "value": "acme/api"},
        {"claim": "ref", "op": "glob", "value": "refs/heads/main"},
        {"claim": "environment", "op": "eq", "value": "production"},
        {"claim": "job_workflow_ref", "op": "glob", "value": "acme/deploy/.github/workflows/*@refs/heads/main"},
        {"claim": "run_attempt", "op": "eq", "value": "1"},
    ]))
    good = {"job_workflow_ref": "acme/deploy/.github/workflows/deploy.yml@refs/heads/main"}
    assert exchange(server, ci.mint(server.issuer, **good)).status_code == 200

    cases = {
        "repository": {"repository": "acme/api-fork"},  # eq unmatched
        "ref": {"ref": "refs/heads/main-hotfix"},  # glob unmatched
        "environment": {"environment": "staging"},
        "job_workflow_ref": {"job_workflow_ref": "acme/deploy/.github/workflows/deploy.yml@refs/heads/dev"},
    }
    for claim, override in cases.items():
        job = ci.mint(server.issuer, **{**good, **override})
        assert_refused(server, job)
        report = explain(server, job)
        assert failed_check(report) == "no trust policy matches the token"
        [pol] = [p for p in report["policies"] if p["checks"][0]["ok"]]
        failed = [c["claim"] for c in pol["conditions"] if not c["ok"]]
        assert failed == [claim], (claim, pol)
    # a missing claim never matches (environment is also used by the subject template)
    job = ci.mint(server.issuer, environment=None, **good)
    assert_refused(server, job)
    [pol] = [p for p in explain(server, job)["policies"] if p["checks"][0]["ok"]]
    assert [c for c in pol["conditions"] if c["claim"] == "environment"][0] == {
        "claim": "environment", "op": "eq", "value": "production", "ok": False, "actual": None}


def test_most_specific_policy_wins(server: LiveServer, ci: Any) -> None:
    broad = add_policy(server, trust_spec(ci, server, name="any branch", scopes=["read"],
                                          conditions=[{"claim": "repository", "value": "acme/api"}],
                                          subject_template="ci:{repository}"))
    narrow = add_policy(server, trust_spec(ci, server, name="main", scopes=["deploy"]))
    main = exchange(server, ci.mint(server.issuer)).json()
    assert claims_of(main["access_token"])["federation_policy"] == narrow["policy_id"] and main["scope"] == "deploy"
    dev = exchange(server, ci.mint(server.issuer, ref="refs/heads/dev")).json()
    assert claims_of(dev["access_token"])["federation_policy"] == broad["policy_id"] and dev["scope"] == "read"


# -- token checks --------------------------------------------------------------------------------------

def test_wrong_issuer(server: LiveServer, ci: Any, tmp_path: Path) -> None:
    add_policy(server, trust_spec(ci, server))
    other = start_ci(tmp_path / "other")
    try:
        job = other.mint(server.issuer)
        assert_refused(server, job)
        assert other.counts["/.well-known/openid-configuration"] == 0  # an untrusted issuer is never fetched
        report = explain(server, job)
        assert failed_check(report) == f"issuer: no trust policy for issuer {other.issuer!r}"
        mine = [p for p in report["policies"] if repr(ci.issuer) in p["checks"][0]["detail"]]
        assert mine and not mine[0]["checks"][0]["ok"]
    finally:
        other.stop()


def test_wrong_audience(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server))
    job = ci.mint("https://sts.amazonaws.com")
    assert_refused(server, job)
    [pol] = [p for p in explain(server, job)["policies"] if p["checks"][0]["ok"]]
    aud = [c for c in pol["checks"] if c["check"] == "audience"][0]
    assert not aud["ok"] and "sts.amazonaws.com" in aud["detail"]


@pytest.mark.parametrize(("claim", "offset", "check"), [
    ("now", -400, "exp"),  # expired (300 s tokens, 30 s leeway)
    ("iat", 600, "iat"),  # issued in the future
    ("nbf", 600, "nbf"),  # not yet valid
])
def test_time_claims(server: LiveServer, ci: Any, claim: str, offset: int, check: str) -> None:
    add_policy(server, trust_spec(ci, server))
    job = ci.mint(server.issuer, **{claim: int(time.time()) + offset})
    assert_refused(server, job)
    assert failed_check(explain(server, job)).startswith(check + ":")


def test_bad_signature(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server))
    kid = ci.keys.signing_key()[0]
    forged = jwt.encode(claims_of(ci.mint(server.issuer)), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                        headers={"kid": kid})
    assert_refused(server, forged)
    assert failed_check(explain(server, forged)) == "signature: signature verification failed"
    tampered = ci.mint(server.issuer)
    header, payload, sig = tampered.split(".")
    evil = jwt.utils.base64url_encode(jwt.utils.base64url_decode(payload).replace(b"acme/api", b"acme/apx")).decode()
    assert_refused(server, f"{header}.{evil}.{sig}")


def test_unknown_kid_and_key_rotation(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server))
    assert exchange(server, ci.mint(server.issuer)).status_code == 200  # keys now cached by the server
    jwks_fetches = ci.counts["/.well-known/jwks"]
    # the platform rotates: a token with the new kid makes the server refetch the JWKS, and it works
    ci.keys.rotate()
    assert exchange(server, ci.mint(server.issuer)).status_code == 200
    assert ci.counts["/.well-known/jwks"] == jwks_fetches + 1
    # a kid the platform never published is refused
    job = ci.mint(server.issuer, kid="ci-never-published")
    assert_refused(server, job)
    assert failed_check(explain(server, job)).startswith("signature: no key with kid 'ci-never-published'")


def test_discovery_must_name_the_pinned_issuer(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server))
    ci.discovery_issuer = ci.issuer + "/"
    job = ci.mint(server.issuer)
    assert_refused(server, job)
    assert "the discovery document names issuer" in failed_check(explain(server, job))


def test_replayed_jti(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server, one_time_jti=True))
    job = ci.mint(server.issuer)
    assert explain(server, job)["outcome"] == "allowed"  # explain does not use it up
    assert exchange(server, job).status_code == 200
    assert_refused(server, job)
    assert failed_check(explain(server, job)).startswith("jti_unused: this token was already exchanged")
    jti = claims_of(job)["jti"]
    events = audit_events(server, lambda e: e.detail.get("external_jti") == jti and e.outcome == "failure")
    assert events and "already exchanged" in events[0].detail["reason"]


def test_max_token_age(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server, max_token_age=60))
    assert exchange(server, ci.mint(server.issuer)).status_code == 200
    old = ci.mint(server.issuer, now=time.time() - 120)
    assert_refused(server, old)
    [pol] = [p for p in explain(server, old)["policies"] if p["checks"][0]["ok"]]
    assert not [c for c in pol["checks"] if c["check"] == "max_token_age"][0]["ok"]


def test_lifetime_caps(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server, max_lifetime=120))
    body = exchange(server, ci.mint(server.issuer)).json()
    c = claims_of(body["access_token"])
    assert body["expires_in"] == 120 == c["exp"] - c["iat"]
    assert explain(server, ci.mint(server.issuer))["would_issue"]["lifetime"] == 120


def test_lifetime_never_above_the_servers_access_token_lifetime(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server, max_lifetime="1h"))  # the server's access_token_ttl is 15 min
    assert exchange(server, ci.mint(server.issuer)).json()["expires_in"] == 900
    with server.admin() as admin:
        r = admin.post("/federation/trust", json=trust_spec(ci, server, name="too long", max_lifetime="61m"))
    assert r.status_code == 422 and "max_lifetime" in r.text


def test_scope_and_audience_must_be_within_the_policy(server: LiveServer, ci: Any) -> None:
    add_policy(server, trust_spec(ci, server))
    r = exchange(server, ci.mint(server.issuer), scope="deploy admin")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = exchange(server, ci.mint(server.issuer), audience="https://billing.example.com")
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    r = exchange(server, ci.mint(server.issuer), resource=DEPLOY)
    assert r.status_code == 200 and claims_of(r.json()["access_token"])["aud"] == DEPLOY
    r = exchange(server, ci.mint(server.issuer), subject_token_type="urn:ietf:params:oauth:token-type:saml2")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = exchange(server, ci.mint(server.issuer), requested_token_type="urn:ietf:params:oauth:token-type:refresh_token")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_policy_removed_while_keys_are_cached(server: LiveServer, ci: Any) -> None:
    policy = add_policy(server, trust_spec(ci, server))
    assert exchange(server, ci.mint(server.issuer)).status_code == 200  # issuer keys cached by the server
    with server.admin() as admin:
        assert admin.delete(f"/federation/trust/{policy['policy_id']}").status_code == 204
        assert admin.get(f"/federation/trust/{policy['policy_id']}").status_code == 404
    job = ci.mint(server.issuer)
    assert_refused(server, job)
    assert failed_check(explain(server, job)) == f"issuer: no trust policy for issuer {ci.issuer!r}"


# -- clients -------------------------------------------------------------------------------------------

def test_policy_that_requires_a_client(server: LiveServer, ci: Any) -> None:
    runner = server.create_client(grant_types=[TOKEN_EXCHANGE_GRANT])
    add_policy(server, trust_spec(ci, server, allowed_clients=[runner["client_id"]]))
    job = ci.mint(server.issuer)
    assert_refused(server, job)  # unauthenticated
    r = exchange(server, job, auth=(runner["client_id"], "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = exchange(server, job, auth=(runner["client_id"], runner["client_secret"]))
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["client_id"] == runner["client_id"]
    # a client without the grant type is refused even where the policy needs no client
    cc_only = server.create_client(audiences=[DEPLOY])
    r = exchange(server, job, auth=(cc_only["client_id"], cc_only["client_secret"]))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    with server.admin() as admin:
        spec = trust_spec(ci, server, name="x", allowed_clients=[cc_only["client_id"]])
        r = admin.post("/federation/trust", json=spec)
    assert r.status_code == 409 and "may not use token exchange" in r.text


# -- admin API -----------------------------------------------------------------------------------------

def test_admin_api(server: LiveServer, ci: Any) -> None:
    policy = add_policy(server, trust_spec(ci, server, name="Admin API test", policy_id=None, one_time_jti=True))
    assert policy["policy_id"] == "admin-api-test"
    with server.admin() as admin:
        listed = admin.get("/federation/trust", params={"issuer": ci.issuer}).json()
        assert [p["policy_id"] for p in listed] == ["admin-api-test"]
        assert admin.get("/federation/trust/admin-api-test").json() == policy
        again = admin.post("/federation/trust", json=trust_spec(ci, server, name="Admin API test", policy_id=None))
        assert again.status_code == 409 and "already exists" in again.text
        bad = admin.post("/federation/trust", json=trust_spec(ci, server, issuer="http://ci.example.com"))
        assert bad.status_code == 422 and "https" in bad.text
        assert admin.post("/federation/explain", json={}).status_code == 422
        assert admin.delete("/federation/trust/nope").status_code == 404
        doc = admin.get("/openapi.json").json()
        assert {"/federation/trust", "/federation/trust/{policy_id}", "/federation/explain"} <= set(doc["paths"])
        assert "TrustPolicyCreate" in doc["components"]["schemas"]
    r = httpx.get(server.base_url + "/admin/api/federation/trust")
    assert r.status_code == 401
    r = httpx.post(server.base_url + "/admin/api/federation/explain", json={"token": "x"})
    assert r.status_code == 401


def test_hostile_input_is_refused_not_a_crash(server: LiveServer, ci: Any) -> None:
    with server.admin() as admin:
        for pid in ("a%00b", "a%0Ab", "x" * 200):
            assert admin.get(f"/federation/trust/{pid}").status_code == 404
            assert admin.delete(f"/federation/trust/{pid}").status_code == 404
        r = admin.post("/federation/trust", json=trust_spec(ci, server, issuer=ci.issuer + "\x00"))
        assert r.status_code == 422
    claims = claims_of(ci.mint(server.issuer))
    for iss in ("https://ci\x00.example.com", "https://" + "c" * 3000 + ".example.com"):
        token = ci.keys.sign({**claims, "iss": iss})
        assert_refused(server, token)
        assert failed_check(explain(server, token)).startswith("issuer: ")
    assert_refused(server, "a.b.c")
    r = exchange(server, "x" * 20_000)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"  # parameter too long


# -- the key fetcher, in process --------------------------------------------------------------------------

class Monotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_key_fetcher_caches_rate_limits_forced_refetch_and_is_single_flight(ci: Any) -> None:
    import asyncio

    clock = Monotonic()
    keys = HttpExternalKeys(allow_loopback=True, ttl=300, min_refetch=10, monotonic=clock)
    try:
        first = await keys.keys(ci.issuer)
        assert [k.kid for k in first] == [ci.keys.signing_key()[0]]
        await keys.keys(ci.issuer)
        assert ci.counts["/.well-known/jwks"] == 1  # cached
        ci.keys.rotate()
        assert len(await keys.keys(ci.issuer, force=True)) == 2  # forced: refetched
        newest = ci.keys.rotate()
        assert newest not in [k.kid for k in await keys.keys(ci.issuer, force=True)]  # again within 10 s: cached
        assert ci.counts["/.well-known/jwks"] == 2
        clock.t += 11
        results = await asyncio.gather(*(keys.keys(ci.issuer, force=True) for _ in range(20)))
        assert ci.counts["/.well-known/jwks"] == 3  # twenty concurrent forced calls, one fetch
        assert all(newest in [k.kid for k in r] for r in results)
        clock.t += 301
        await keys.keys(ci.issuer)
        assert ci.counts["/.well-known/jwks"] == 4  # TTL expired
    finally:
        await keys.close()


async def test_key_fetcher_refuses_a_mismatched_discovery_and_remote_http(ci: Any) -> None:
    clock = Monotonic()
    keys = HttpExternalKeys(allow_loopback=True, monotonic=clock)
    try:
        ci.discovery_issuer = "https://evil.example.com"
        with pytest.raises(ExternalKeysUnavailable, match="names issuer"):
            await keys.keys(ci.issuer)
        ci.discovery_issuer = None
        with pytest.raises(ExternalKeysUnavailable, match="names issuer"):
            await keys.keys(ci.issuer)  # failures are remembered for 10 s
        clock.t += 11
        assert await keys.keys(ci.issuer)
        with pytest.raises(ExternalKeysUnavailable, match="https is required"):
            await keys.keys("http://ci.example.com")
        with pytest.raises(ExternalKeysUnavailable, match="cannot fetch"):
            await keys.keys("http://127.0.0.1:9")
    finally:
        await keys.close()


@pytest.mark.parametrize(("name", "value"), [("exp", 10**400), ("exp", float("nan")), ("exp", float("inf")),
                                             ("nbf", 10**400), ("iat", float("nan"))],
                         ids=["exp-10**400", "exp-nan", "exp-inf", "nbf-10**400", "iat-nan"])
def test_time_claims_that_are_not_numbers_are_refused_not_a_crash(server: LiveServer, ci: Any, name: str,
                                                                  value: float) -> None:
    """json.loads reads NaN, Infinity and a 400-digit int; float() or int() of them raised OverflowError or
    ValueError while the report was written, for anyone posting a token that names a pinned issuer."""
    add_policy(server, trust_spec(ci, server))
    token = ci.keys.sign({**claims_of(ci.mint(server.issuer)), name: value})
    assert_refused(server, token)
    report = explain(server, token)  # a report, not a 500 (the signature check refuses the claim first)
    assert report["outcome"] == "refused" and failed_check(report).split(":")[0] in ("signature", name), report
