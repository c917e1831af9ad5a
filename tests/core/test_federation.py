"""Workload identity federation in the core: trust policies, RFC 8693 token exchange, explain.

Memory store, fixed clock; the external issuer's keys come from an in-memory JWKS (the web layer fetches
them over HTTP, tested in tests/web/test_federation.py).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import pytest
from pydantic import ValidationError

from ostiary.admin.federation import FederationService, TrustPolicyCreate
from ostiary.admin.service import AdminError
from ostiary.core import jose
from ostiary.core.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    UnauthorizedClient,
)
from ostiary.core.federation import (
    TOKEN_EXCHANGE_GRANT,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_JWT,
    Condition,
    ExternalKeysUnavailable,
    FederationReport,
    TrustPolicy,
    evaluate,
    render_subject,
    template_fields,
)
from ostiary.core.grants.token_exchange import GENERIC_REFUSAL
from ostiary.core.issuance import TokenResponse

from .conftest import ISSUER, Engine

CI = "https://ci.example.com"
DEPLOY = "https://deploy.example.com"


class CIPlatform:
    """An external issuer: keys, a published JWKS, and an ExternalKeys view of it that counts fetches."""

    def __init__(self, issuer: str = CI) -> None:
        self.issuer = issuer
        self.signing = [("k1", jose.generate_private_key("ES256"))]
        self.published = [jose.public_jwk(k, kid) for kid, k in self.signing]
        self.fetches = 0
        self.forced = 0
        self.available = True

    async def keys(self, issuer: str, *, force: bool = False) -> list[jose.PublicJwk]:
        if issuer != self.issuer or not self.available:
            raise ExternalKeysUnavailable("unreachable")
        self.fetches += 1
        self.forced += force
        return jose.parse_jwks({"keys": self.published})

    def rotate(self, publish: bool = True) -> None:
        kid = f"k{len(self.signing) + 1}"
        key = jose.generate_private_key("ES256")
        self.signing.insert(0, (kid, key))
        if publish:
            self.published.append(jose.public_jwk(key, kid))

    def token(self, now: float, *, kid: str | None = None, key: jose.PrivateKey | None = None,
              drop: tuple[str, ...] = (), **claims: Any) -> str:
        body: dict[str, Any] = {
            "iss": self.issuer, "aud": ISSUER, "sub": "repo:acme/api:ref:refs/heads/main", "jti": secrets.token_hex(8),
            "iat": int(now), "nbf": int(now), "exp": int(now) + 300, "repository": "acme/api",
            "repository_owner": "acme", "ref": "refs/heads/main", "environment": "production",
            "job_workflow_ref": "acme/deploy/.github/workflows/deploy.yml@refs/heads/main", "run_id": "123",
        }
        body.update(claims)
        for name in drop:
            body.pop(name, None)
        own_kid, own_key = self.signing[0]
        return jose.sign_jwt(body, key or own_key, alg="ES256", kid=kid or own_kid)


def policy(**kw: Any) -> TrustPolicy:
    base: dict[str, Any] = dict(
        policy_id="deploy", name="deploy", issuer=CI, audience=ISSUER,
        conditions=(Condition("repository", "eq", "acme/api"), Condition("ref", "glob", "refs/heads/main")),
        subject_template="ci:{repository}@{environment}", scopes=("deploy", "read"), audiences=(DEPLOY,))
    base.update(kw)
    return TrustPolicy(**base)


@pytest.fixture
def ci() -> CIPlatform:
    return CIPlatform()


class Fed:
    def __init__(self, engine: Engine, ci: CIPlatform) -> None:
        self.engine = engine
        self.ci = ci

    @property
    def now(self) -> float:
        return self.engine.clock.now()

    def token(self, **kw: Any) -> str:
        return self.ci.token(self.now, **kw)

    async def add(self, **kw: Any) -> TrustPolicy:
        p = policy(**kw)
        await self.engine.store.add_trust_policy(p)
        return p

    async def exchange(self, subject_token: str, basic: tuple[str, str] | None = None,
                       **form: str) -> TokenResponse:
        from ostiary.core.endpoints.token import TokenEndpoint
        from ostiary.core.grants import default_grants

        data = {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject_token,
                "subject_token_type": TOKEN_TYPE_JWT, **form}
        ctx = dataclasses.replace(self.engine.ctx, external_keys=self.ci)
        return await TokenEndpoint(ctx, default_grants()).handle(self.engine.request("/token", data, basic))

    async def explain(self, token: str, **kw: Any) -> FederationReport:
        svc = FederationService(self.engine.store, self.engine.policy, self.engine.clock)
        return await svc.explain(token, self.ci, **kw)

    def claims(self, access_token: str, audience: str = DEPLOY) -> dict[str, Any]:
        return dict(jose.verify_jwt(access_token, self.engine.keyring().verification_keys, issuer=ISSUER,
                                    audience=audience, typ="at+jwt", now=self.now).claims)

    def events(self) -> list[Any]:
        return [e for e in self.engine.audit.events if e.type == "federation.exchange"]


@pytest.fixture
def fed(engine: Engine, ci: CIPlatform) -> Fed:
    return Fed(engine, ci)


async def refused(fed: Fed, token: str, **form: str) -> str:
    """Exchange must fail with the generic invalid_grant; returns the precise (audited) reason."""
    with pytest.raises(InvalidGrant) as exc:
        await fed.exchange(token, **form)
    assert exc.value.description == GENERIC_REFUSAL
    assert exc.value.body() == {"error": "invalid_grant", "error_description": GENERIC_REFUSAL}
    event = fed.events()[-1]
    assert event.outcome == "failure"
    assert token not in repr(event.as_dict())
    return str(event.detail["reason"])


# -- conditions, specificity, templating (pure) ----------------------------------------------------------

@pytest.mark.parametrize(("cond", "claims", "ok"), [
    (Condition("repository", "eq", "acme/api"), {"repository": "acme/api"}, True),
    (Condition("repository", "eq", "acme/api"), {"repository": "acme/api2"}, False),
    (Condition("repository", "eq", "acme/api"), {"repository": "ACME/api"}, False),
    (Condition("repository", "eq", "acme/api"), {}, False),  # a missing claim never matches
    (Condition("ref", "glob", "refs/heads/main"), {"ref": "refs/heads/main"}, True),
    (Condition("ref", "glob", "refs/heads/*"), {"ref": "refs/heads/feature/x"}, True),
    (Condition("ref", "glob", "refs/heads/*"), {"ref": "refs/tags/v1"}, False),
    (Condition("ref", "glob", "*"), {}, False),
    (Condition("job_workflow_ref", "glob", "acme/deploy/.github/workflows/*@refs/heads/main"),
     {"job_workflow_ref": "acme/deploy/.github/workflows/deploy.yml@refs/heads/main"}, True),
    (Condition("job_workflow_ref", "glob", "acme/deploy/.github/workflows/*@refs/heads/main"),
     {"job_workflow_ref": "acme/deploy/.github/workflows/deploy.yml@refs/heads/dev"}, False),
    (Condition("run_attempt", "glob", "1*"), {"run_attempt": 1}, False),  # glob: strings only
    (Condition("run_attempt", "eq", "1"), {"run_attempt": 1}, True),  # numbers compare by JSON text
    (Condition("ref_protected", "eq", "true"), {"ref_protected": True}, True),
    (Condition("ref_protected", "eq", "true"), {"ref_protected": False}, False),
    (Condition("groups", "eq", "a"), {"groups": ["a"]}, False),
    (Condition("name", "glob", "[ab]?"), {"name": "bz"}, True),
])
def test_condition(cond: Condition, claims: dict[str, Any], ok: bool) -> None:
    assert cond.test(claims) is ok


def test_subject_template() -> None:
    claims = {"repository": "acme/api", "environment": "production", "run_id": 7, "list": [1]}
    assert render_subject("ci:{repository}@{environment}", claims) == ("ci:acme/api@production", "")
    assert render_subject("{{literal}}:{run_id}", claims) == ("{literal}:7", "")
    assert render_subject("ci:{missing}", claims)[0] is None
    assert render_subject("ci:{list}", claims)[0] is None
    assert render_subject("x{repository}", {"repository": "a\nb"})[0] is None
    assert template_fields("ci:{repository}@{environment}") == ["repository", "environment"]
    for bad in ("{a.b}", "{0}", "{a!r}", "{a:>9}", "{a[0]}", "{"):
        with pytest.raises(ValueError):
            template_fields(bad)


def test_specificity_orders_more_conditions_then_exact_then_id() -> None:
    eq, glob = Condition("a", "eq", "x"), Condition("b", "glob", "*")
    ps = [policy(policy_id="z-two", conditions=(eq, glob)), policy(policy_id="a-one", conditions=(eq,)),
          policy(policy_id="b-two-exact", conditions=(eq, Condition("c", "eq", "y"))),
          policy(policy_id="a-two-exact", conditions=(eq, Condition("c", "eq", "y")))]
    assert [p.policy_id for p in sorted(ps, key=lambda p: p.specificity)] == [
        "a-two-exact", "b-two-exact", "z-two", "a-one"]


# -- the exchange ----------------------------------------------------------------------------------

async def test_exchange_issues_a_normal_access_token_with_the_external_identity(fed: Fed) -> None:
    await fed.add()
    resp = await fed.exchange(fed.token(), scope="deploy")
    assert resp.issued_token_type == TOKEN_TYPE_ACCESS_TOKEN
    assert resp.refresh_token is None and resp.id_token is None
    body = resp.body()
    assert body["token_type"] == "Bearer" and body["scope"] == "deploy" and "refresh_token" not in body
    c = fed.claims(resp.access_token)
    assert c["sub"] == "ci:acme/api@production"
    assert c["client_id"] == "federation:deploy"
    assert c["aud"] == DEPLOY and c["scope"] == "deploy"
    assert c["act"] == {"iss": CI, "sub": "repo:acme/api:ref:refs/heads/main"}
    assert c["federation_policy"] == "deploy"
    assert c["exp"] - c["iat"] == resp.expires_in == 900

    event = fed.events()[-1]
    assert event.outcome == "success" and event.jti == c["jti"] and event.subject == c["sub"]
    assert event.detail["issuer"] == CI and event.detail["policy"] == "deploy"
    assert event.detail["external_subject"] == "repo:acme/api:ref:refs/heads/main"
    assert event.detail["lifetime"] == 900
    assert resp.access_token not in repr(event.as_dict())


async def test_id_token_type_and_defaults(fed: Fed) -> None:
    await fed.add()
    resp = await fed.exchange(fed.token(), subject_token_type=TOKEN_TYPE_ID_TOKEN,
                              requested_token_type=TOKEN_TYPE_ACCESS_TOKEN)
    assert fed.claims(resp.access_token)["scope"] == "deploy read"  # default: all the policy's scopes


async def test_request_parameter_errors(fed: Fed) -> None:
    await fed.add()
    token = fed.token()
    for form in ({"subject_token_type": ""}, {"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
                 {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
                 {"actor_token": "x", "actor_token_type": TOKEN_TYPE_JWT}, {"subject_token": ""},
                 {"scope": "a  b"}):
        with pytest.raises(InvalidRequest):
            await fed.exchange(form.pop("subject_token", token), **form)
    with pytest.raises(InvalidScope):
        await fed.exchange(token, scope="deploy admin")
    with pytest.raises(InvalidTarget):
        await fed.exchange(token, audience="https://other.example.com")
    with pytest.raises(InvalidTarget):
        await fed.exchange(token, resource="https://other.example.com")
    resp = await fed.exchange(token, resource=DEPLOY)
    assert fed.claims(resp.access_token)["aud"] == DEPLOY


async def test_audience_and_resource_choose_among_the_policy_audiences(fed: Fed) -> None:
    other = "https://other.example.com"
    await fed.add(audiences=(DEPLOY, other))
    resp = await fed.exchange(fed.token(), audience=other)
    assert fed.claims(resp.access_token, other)["aud"] == other


@pytest.mark.parametrize(("make", "reason"), [
    (lambda f: f.ci.token(f.now, iss="https://evil.example.com"), "no trust policy for issuer"),
    (lambda f: f.ci.token(f.now, drop=("iss",)), "no iss"),
    (lambda f: f.ci.token(f.now, aud="https://someone-else.example.com"), "no trust policy matches"),
    (lambda f: f.ci.token(f.now, exp=int(f.now) - 31), "exp"),
    (lambda f: f.ci.token(f.now, drop=("exp",)), "no exp"),
    (lambda f: f.ci.token(f.now, iat=int(f.now) + 120), "iat"),
    (lambda f: f.ci.token(f.now, drop=("iat",)), "no iat"),
    (lambda f: f.ci.token(f.now, nbf=int(f.now) + 120), "nbf"),
    (lambda f: f.ci.token(f.now, drop=("sub",)), "sub"),
    (lambda f: f.ci.token(f.now, key=jose.generate_private_key("ES256")), "signature verification failed"),
    (lambda f: f.ci.token(f.now, kid="nope"), "no key with kid 'nope'"),
    (lambda f: f.ci.token(f.now, repository="acme/other"), "no trust policy matches"),
    (lambda f: f.ci.token(f.now, ref="refs/heads/dev"), "no trust policy matches"),
    (lambda f: f.ci.token(f.now, drop=("environment",)), "no trust policy matches"),  # template claim missing
    (lambda f: "not-a-jwt", "not a JWT"),
])
async def test_every_refusal_is_a_generic_invalid_grant_with_a_precise_audit_reason(fed: Fed, make: Any,
                                                                                      reason: str) -> None:
    await fed.add()
    token = make(fed)
    assert reason in await refused(fed, token)
    report = await fed.explain(token)
    assert not report.allowed and report.error == "invalid_grant" and report.reason and reason in report.reason


async def test_hs256_and_none_are_refused(fed: Fed) -> None:
    import jwt

    await fed.add()
    claims = jose.decode_unverified(fed.token())[1]
    for token in (jwt.encode(claims, "s" * 32, algorithm="HS256", headers={"kid": "k1"}),
                  jwt.encode(claims, None, algorithm="none")):
        assert "signature" in await refused(fed, token)


async def test_unknown_kid_refetches_once_then_works_after_rotation(fed: Fed) -> None:
    await fed.add()
    fed.ci.rotate()
    resp = await fed.exchange(fed.token())
    assert resp.access_token
    assert fed.ci.forced == 0  # the JWKS (fetched per call here) already had the new key
    fed.ci.rotate(publish=False)
    await refused(fed, fed.token())
    assert fed.ci.forced == 1


async def test_issuer_keys_unavailable_is_a_generic_refusal(fed: Fed) -> None:
    await fed.add()
    fed.ci.available = False
    assert "cannot fetch the issuer's keys" in await refused(fed, fed.token())


async def test_one_time_jti(fed: Fed) -> None:
    await fed.add(one_time_jti=True)
    token = fed.token()
    # explain looks the jti up but never consumes it
    assert (await fed.explain(token)).allowed
    assert (await fed.explain(token)).allowed
    await fed.exchange(token)
    assert "already exchanged" in await refused(fed, token)
    report = await fed.explain(token)
    assert not report.allowed and report.reason and "already exchanged" in report.reason
    # a token without a jti does not match a one-time policy
    assert "no trust policy matches" in await refused(fed, fed.token(drop=("jti",)))
    # without the one-time rule, the same token may be exchanged again
    await fed.engine.store.delete_trust_policy("deploy")
    await fed.add(one_time_jti=False)
    await fed.exchange(token)


async def test_one_time_jti_expires_with_the_token(fed: Fed) -> None:
    await fed.add(one_time_jti=True, max_lifetime=60)
    token = fed.token(exp=int(fed.now) + 60)
    await fed.exchange(token)
    fed.engine.clock.advance(60 + fed.engine.policy.leeway + 1)
    assert "exp" in await refused(fed, token)  # expired, not "replayed": the cache entry may go


async def test_max_token_age(fed: Fed) -> None:
    await fed.add(max_token_age=120)
    token = fed.token()
    fed.engine.clock.advance(120)
    await fed.exchange(token)
    fed.engine.clock.advance(1)
    assert "no trust policy matches" in await refused(fed, token)
    report = await fed.explain(token)
    age = [c for c in report.policies[0].checks if c.name == "max_token_age"][0]
    assert not age.ok and "121s old" in age.detail


@pytest.mark.parametrize(("cap", "server_ttl", "exp_in", "expected"), [
    (900, 900, 300, 900),  # default 15 min
    (120, 900, 300, 120),  # the policy's cap
    (3600, 900, 300, 900),  # never above the server's access-token lifetime
    (7200, 3600, 300, 3600),  # never above 1 h, whatever the policy says
    (60, 900, -20, 40),  # never beyond the external token's expiry plus the policy's cap
])
async def test_lifetime_caps(fed: Fed, cap: int, server_ttl: int, exp_in: int, expected: int) -> None:
    fed.engine.policy = dataclasses.replace(fed.engine.policy, access_token_ttl=server_ttl)
    await fed.add(max_lifetime=cap)
    token = fed.token(exp=int(fed.now) + exp_in)
    resp = await fed.exchange(token)
    c = fed.claims(resp.access_token)
    assert resp.expires_in == expected == c["exp"] - c["iat"]
    assert c["exp"] <= int(fed.now) + exp_in + min(cap, 3600)
    assert fed.events()[-1].detail["lifetime"] == expected


async def test_most_specific_policy_wins(fed: Fed) -> None:
    await fed.add(policy_id="any-branch", conditions=(Condition("repository", "eq", "acme/api"),),
                  subject_template="ci:{repository}", scopes=("read",))
    await fed.add(policy_id="main-prod", subject_template="ci:{repository}@{environment}", scopes=("deploy",),
                  conditions=(Condition("repository", "eq", "acme/api"), Condition("ref", "glob", "refs/heads/main"),
                              Condition("environment", "eq", "production")))
    await fed.add(policy_id="main-glob", scopes=("x",),
                  conditions=(Condition("repository", "glob", "acme/*"), Condition("ref", "glob", "refs/heads/main"),
                              Condition("environment", "glob", "prod*")))
    c = fed.claims((await fed.exchange(fed.token())).access_token)
    assert c["federation_policy"] == "main-prod" and c["scope"] == "deploy"
    c = fed.claims((await fed.exchange(fed.token(ref="refs/heads/dev"))).access_token)
    assert c["federation_policy"] == "any-branch" and c["sub"] == "ci:acme/api" and c["scope"] == "read"
    report = await fed.explain(fed.token())
    assert report.selected == "main-prod"
    assert [r.policy.policy_id for r in report.policies if r.matched] == ["any-branch", "main-glob", "main-prod"]


async def test_allowed_clients_require_authentication(fed: Fed) -> None:
    cid, secret = await fed.engine.client(grant_types=[TOKEN_EXCHANGE_GRANT, "client_credentials"])
    other, other_secret = await fed.engine.client(grant_types=[TOKEN_EXCHANGE_GRANT])
    await fed.add(allowed_clients=(cid,))
    token = fed.token()
    assert "no trust policy matches" in await refused(fed, token)  # unauthenticated
    report = await fed.explain(token)
    assert "did not authenticate" in [c for c in report.policies[0].checks if c.name == "client"][0].detail
    with pytest.raises(InvalidGrant):
        await fed.exchange(token, (other, str(other_secret)))
    with pytest.raises(InvalidClient):
        await fed.exchange(token, (cid, "wrong"))
    resp = await fed.exchange(token, (cid, str(secret)))
    assert fed.claims(resp.access_token)["client_id"] == cid
    assert fed.events()[-1].client_id == cid
    assert (await fed.explain(token, client_id=cid)).allowed


async def test_client_authentication_is_checked_when_present_even_if_not_required(fed: Fed) -> None:
    await fed.add()
    cc_only, secret = await fed.engine.client(grant_types=["client_credentials"])
    with pytest.raises(UnauthorizedClient):
        await fed.exchange(fed.token(), (cc_only, str(secret)))
    with pytest.raises(InvalidClient):
        await fed.exchange(fed.token(), (cc_only, "wrong"))


async def test_a_removed_policy_stops_matching_at_once(fed: Fed) -> None:
    await fed.add()
    await fed.exchange(fed.token())
    assert await fed.engine.store.delete_trust_policy("deploy")
    assert "no trust policy for issuer" in await refused(fed, fed.token())
    assert (await fed.explain(fed.token())).policies == ()


async def test_explain_shows_every_policy_and_condition(fed: Fed) -> None:
    await fed.add(policy_id="deploy")
    await fed.add(policy_id="other-issuer", issuer="https://gitlab.example.com")
    report = await fed.explain(fed.token(ref="refs/heads/dev"))
    assert not report.allowed and report.grant is None and report.selected is None
    by_id = {r.policy.policy_id: r for r in report.policies}
    assert set(by_id) == {"deploy", "other-issuer"}
    assert [c.name for c in by_id["other-issuer"].checks] == ["issuer"]
    assert not by_id["other-issuer"].checks[0].ok
    conds = {c.condition.claim: c for c in by_id["deploy"].conditions}
    assert conds["repository"].ok and conds["repository"].actual == '"acme/api"'
    assert not conds["ref"].ok and conds["ref"].actual == '"refs/heads/dev"'
    data = report.as_dict()
    assert data["outcome"] == "refused" and data["would_issue"] is None

    ok = await fed.explain(fed.token(), scope="deploy")
    assert ok.allowed and ok.grant is not None
    assert ok.as_dict()["would_issue"] == {"policy_id": "deploy", "subject": "ci:acme/api@production",
                                           "client_id": "federation:deploy", "audience": [DEPLOY],
                                           "scope": "deploy", "lifetime": 900,
                                           "act": {"iss": CI, "sub": "repo:acme/api:ref:refs/heads/main"}}
    assert not fed.events()  # explain issues nothing and audits nothing
    bad_scope = await fed.explain(fed.token(), scope="admin")
    assert bad_scope.error == "invalid_scope"


# -- administration ------------------------------------------------------------------------------------

def spec(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "Deploy prod", "issuer": CI, "audience": ISSUER,
                            "conditions": [{"claim": "repository", "value": "acme/api"}],
                            "subject_template": "ci:{repository}", "audiences": [DEPLOY]}
    base.update(kw)
    return base


@pytest.mark.parametrize("bad", [
    {"issuer": "http://ci.example.com"}, {"issuer": "ftp://ci.example.com"}, {"issuer": "https://ci.example.com?x=1"},
    {"max_lifetime": 3601}, {"max_lifetime": "2h"}, {"max_lifetime": 10}, {"subject_template": "ci:{a.b}"},
    {"subject_template": "ci:{"}, {"conditions": []}, {"audiences": []}, {"audiences": ["deploy"]},
    {"conditions": [{"claim": "ref", "op": "regex", "value": ".*"}]}, {"scopes": ["a b"]}, {"policy_id": "a b"},
    {"unknown": 1},
])
def test_policy_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TrustPolicyCreate.model_validate(spec(**bad))


async def test_admin_service(engine: Engine) -> None:
    svc = FederationService(engine.store, engine.policy, engine.clock)
    p = await svc.add(TrustPolicyCreate.model_validate(spec(max_lifetime="10m", max_token_age="5m")))
    assert (p.policy_id, p.max_lifetime, p.max_token_age) == ("deploy-prod", 600, 300)
    assert p.conditions == (Condition("repository", "eq", "acme/api"),)
    with pytest.raises(AdminError, match="already exists"):
        await svc.add(TrustPolicyCreate.model_validate(spec()))
    with pytest.raises(AdminError, match="not this server"):
        await svc.add(TrustPolicyCreate.model_validate(spec(name="self", issuer=ISSUER)))
    with pytest.raises(AdminError, match="does not exist"):
        await svc.add(TrustPolicyCreate.model_validate(spec(name="c", allowed_clients=["nobody"])))
    cid, _ = await engine.client()
    with pytest.raises(AdminError, match="may not use token exchange"):
        await svc.add(TrustPolicyCreate.model_validate(spec(name="c", allowed_clients=[cid])))
    # http only for a loopback issuer, and only when this server is itself on loopback (development)
    loop = TrustPolicyCreate.model_validate(spec(name="loop", issuer="http://127.0.0.1:9100"))
    with pytest.raises(AdminError, match="development"):
        await svc.add(loop)
    dev = FederationService(engine.store, dataclasses.replace(engine.policy, issuer="http://127.0.0.1:8000"),
                            engine.clock)
    assert (await dev.add(loop)).issuer == "http://127.0.0.1:9100"
    assert [x.policy_id for x in await svc.list_policies()] == ["deploy-prod", "loop"]
    assert [x.policy_id for x in await svc.list_policies(CI)] == ["deploy-prod"]
    await svc.remove("loop")
    with pytest.raises(AdminError):
        await svc.get("loop")


async def test_evaluate_without_key_source_refuses(engine: Engine) -> None:
    await engine.store.add_trust_policy(policy())
    ci = CIPlatform()
    report = await evaluate(ci.token(engine.clock.now()), policies=engine.store, keys=None, now=engine.clock.now(),
                            leeway=30, server_ttl=900)
    assert not report.allowed and report.reason and "no way to fetch" in report.reason
