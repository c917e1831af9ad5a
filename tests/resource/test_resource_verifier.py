"""TokenVerifier against a real stand-in issuer over HTTP: RFC 9068 §4 checks, JWKS cache, introspection."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from _issuer import AUDIENCE, SigningKey, StandInIssuer, new_key
from cryptography.hazmat.primitives import serialization

from ostiary._clock import FixedClock
from ostiary.resource import (
    AccessToken,
    Introspection,
    InvalidToken,
    IssuerUnavailable,
    TokenVerifier,
    is_service_token,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, object], claims: dict[str, object], signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


@pytest.fixture
def verifier(issuer: StandInIssuer, clock: FixedClock) -> TokenVerifier:
    v = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock=clock)
    yield v
    v.close()


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    assert info.value.description == InvalidToken.description  # the same public text for every cause
    return info.value.reason


# -- accepted tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2], ids=["ES256", "RS256", "EdDSA"])
def test_valid_user_token_for_each_algorithm(issuer: StandInIssuer, verifier: TokenVerifier, index: int) -> None:
    token = issuer.mint(issuer.state.keys[index])
    access = verifier.verify(token)
    assert access.subject == "user-1" and access.client_id == "web-app"
    assert access.scopes == frozenset({"orders:read", "profile"})
    assert access.audience == (AUDIENCE,)
    assert access.is_user and not access.is_service
    assert access.expires_at == issuer.state.clock.now() + 300
    assert token not in repr(access) and access.token_hash not in repr(access)


def test_service_token_and_audience_list(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    access = verifier.verify(issuer.mint(claims=issuer.service_claims(aud=["https://other", AUDIENCE])))
    assert access.is_service and not access.is_user
    assert access.audience == ("https://other", AUDIENCE)


def test_token_kind_rule() -> None:
    assert is_service_token({"sub": "svc", "client_id": "svc"})
    assert not is_service_token({"sub": "svc", "client_id": "svc", "auth_time": 1})
    assert not is_service_token({"sub": "alice", "client_id": "web"})
    assert is_service_token({"sub": "repo:x", "client_id": "ci", "act": {"iss": "https://ci", "sub": "job"}})
    assert not is_service_token({"sub": "ci", "client_id": "ci", "auth_time": 1, "act": {"sub": "ci"}})


async def test_async_verify(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    access = await verifier.averify(issuer.mint())
    assert access.subject == "user-1"


def test_leeway_accepts_small_clock_skew(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    now = int(issuer.state.clock.now())
    verifier.verify(issuer.mint(iat=now + 20, nbf=now + 20))
    verifier.verify(issuer.mint(exp=now - 20))


def test_rfc8414_fallback(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    issuer.state.oidc_discovery = False
    verifier.verify(issuer.mint())
    assert issuer.state.counts["oidc"] == 1 and issuer.state.counts["rfc8414"] == 1


# -- refused tokens ----------------------------------------------------------------------------


def test_other_audience(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    assert "audience" in refused(verifier, issuer.mint(aud="https://another-api.example.test"))


def test_other_issuer_with_its_own_jwks(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    other = StandInIssuer().start()
    try:
        other.reset()
        refused(verifier, other.mint(iss=other.url))  # its kid is unknown to us: refetch, still unknown
        # the other issuer even reuses our kid and claims to be us: the signature does not match
        forged = other.mint(SigningKey("key-es", "ES256", other.state.keys[0].key), iss=issuer.url)
        assert "signature" in refused(verifier, forged)
        # signed by our key but for another issuer
        assert "issuer" in refused(verifier, issuer.mint(iss=other.url))
    finally:
        other.stop()


def test_expired(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    assert "expired" in refused(verifier, issuer.mint(exp=int(issuer.state.clock.now()) - 31))


def test_not_yet_valid(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    assert "not yet valid" in refused(verifier, issuer.mint(nbf=int(issuer.state.clock.now()) + 60))


def test_issued_in_the_future(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    assert "iat" in refused(verifier, issuer.mint(iat=int(issuer.state.clock.now()) + 60, nbf=None))


@pytest.mark.parametrize("claim", ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"])
def test_required_claims(issuer: StandInIssuer, verifier: TokenVerifier, claim: str) -> None:
    refused(verifier, issuer.mint(**{claim: None}))


def test_tampered_payload(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    header, payload, signature = issuer.mint().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "orders:read orders:write admin"
    assert "signature" in refused(verifier, ".".join([header, b64(json.dumps(claims).encode()), signature]))


def test_stripped_signature(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    refused(verifier, issuer.mint().rsplit(".", 1)[0] + ".")


def test_alg_none(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    token = compact({"alg": "none", "typ": "at+jwt", "kid": "key-es"}, issuer.claims())
    assert "algorithm" in refused(verifier, token)


def test_hs256_signed_with_the_public_key(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    rsa_key = issuer.state.keys[1]
    pem = rsa_key.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (pem, json.dumps(rsa_key.jwk).encode()):
        header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": rsa_key.kid}).encode())
        payload = b64(json.dumps(issuer.claims()).encode())
        mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        assert "algorithm" in refused(verifier, f"{header}.{payload}.{b64(mac)}")


@pytest.mark.parametrize("typ", ["JWT", "jwt", "id_token+jwt", None])
def test_typ_must_be_at_jwt(issuer: StandInIssuer, verifier: TokenVerifier, typ: str | None) -> None:
    key = issuer.state.keys[0]
    from ostiary.core.jose import sign_jwt

    headers = {"typ": typ} if typ else {"typ": None}
    token = sign_jwt(issuer.claims(), key.key, alg=key.alg, kid=key.kid, extra_headers=headers)
    assert "type" in refused(verifier, token)


def test_application_at_jwt_is_accepted(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    verifier.verify(issuer.mint(typ="application/at+jwt"))


def test_unknown_crit(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint(headers={"crit": ["exp-policy"], "exp-policy": 1})
    refused(verifier, token)  # PyJWT or jose.verify_jwt: either way it is refused


def test_key_carrying_headers_are_ignored(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    attacker = new_key("ES256", "attacker")
    embedded = {"jwk": attacker.jwk, "jku": "https://attacker.example/jwks", "x5u": "https://attacker.example/c"}
    refused(verifier, issuer.mint(attacker, headers=embedded))  # its kid is not in the issuer's JWKS
    as_ours = SigningKey("key-es", "ES256", attacker.key)
    assert "signature" in refused(verifier, issuer.mint(as_ours, headers=embedded))


def test_opaque_token_without_introspection(verifier: TokenVerifier) -> None:
    assert "introspection" in refused(verifier, "opaque-token-value")


#: a header nested deeper than the recursion limit (json.loads raises RecursionError for it, not ValueError)
DEEP = base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).rstrip(b"=").decode() + ".e30.e30"


@pytest.mark.parametrize("token", ["", "a.b.c", "x" * 20_000, "é.é.é", "e30.e30.e30", DEEP])
def test_garbage(verifier: TokenVerifier, token: str) -> None:
    refused(verifier, token)


def test_algorithm_allow_list(issuer: StandInIssuer, clock: FixedClock) -> None:
    v = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock=clock, algorithms=("ES256",))
    v.verify(issuer.mint(issuer.state.keys[0]))
    refused(v, issuer.mint(issuer.state.keys[1]))


def test_discovery_document_for_another_issuer(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    issuer.state.discovery_issuer = "https://evil.example"
    with pytest.raises(IssuerUnavailable):
        verifier.verify(issuer.mint())
    assert issuer.state.counts["jwks"] == 0


# -- JWKS cache: rotation, TTL, flood protection ----------------------------------------------


def unknown_kid_tokens(issuer: StandInIssuer, n: int) -> list[str]:
    key = issuer.state.keys[0].key
    return [issuer.mint(SigningKey(f"unknown-{i}", "ES256", key)) for i in range(n)]


def test_unknown_kid_flood_threads(issuer: StandInIssuer, verifier: TokenVerifier, clock: FixedClock) -> None:
    verifier.verify(issuer.mint())
    assert issuer.state.counts["jwks"] == 1
    bad = unknown_kid_tokens(issuer, 200)

    def attempt(token: str) -> bool:
        try:
            verifier.verify(token)
        except InvalidToken:
            return False
        return True

    with ThreadPoolExecutor(50) as pool:
        assert not any(pool.map(attempt, bad))
    assert issuer.state.counts["jwks"] == 1  # rate-limited: the clock has not moved 10 s

    clock.advance(11)
    issuer.state.jwks_delay = 0.3
    with ThreadPoolExecutor(50) as pool:
        assert not any(pool.map(attempt, bad))
    assert issuer.state.counts["jwks"] == 2  # single-flight: one refetch for the whole flood


async def test_unknown_kid_flood_asyncio(issuer: StandInIssuer, verifier: TokenVerifier,
                                         clock: FixedClock) -> None:
    await verifier.averify(issuer.mint())
    bad = unknown_kid_tokens(issuer, 200)
    clock.advance(11)
    issuer.state.jwks_delay = 0.3
    results = await asyncio.gather(*(verifier.averify(t) for t in bad), return_exceptions=True)
    assert all(isinstance(r, InvalidToken) for r in results)
    assert issuer.state.counts["jwks"] == 2


def test_rotation_new_kid_is_fetched(issuer: StandInIssuer, verifier: TokenVerifier, clock: FixedClock) -> None:
    verifier.verify(issuer.mint())
    new = new_key("ES256", "rotated")
    issuer.state.keys.append(new)
    clock.advance(10)
    assert verifier.verify(issuer.mint(new)).subject == "user-1"
    assert issuer.state.counts["jwks"] == 2


def test_jwks_ttl(issuer: StandInIssuer, verifier: TokenVerifier, clock: FixedClock) -> None:
    verifier.verify(issuer.mint())
    clock.advance(299)
    verifier.verify(issuer.mint())
    assert issuer.state.counts["jwks"] == 1
    clock.advance(2)
    verifier.verify(issuer.mint())
    assert issuer.state.counts["jwks"] == 2


def test_failed_refetch_keeps_known_keys(issuer: StandInIssuer, verifier: TokenVerifier,
                                         clock: FixedClock) -> None:
    verifier.verify(issuer.mint())
    issuer.state.published = [{"kty": "oct", "k": "c2VjcmV0"}]  # nothing usable: treated as a failure
    clock.advance(301)
    assert verifier.verify(issuer.mint()).subject == "user-1"
    assert issuer.state.counts["jwks"] == 2


# -- verified-token cache ----------------------------------------------------------------------


def test_cache_hit_returns_the_same_object(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint()
    assert verifier.verify(token) is verifier.verify(token)


def test_cache_rechecks_expiry(issuer: StandInIssuer, verifier: TokenVerifier, clock: FixedClock) -> None:
    token = issuer.mint(exp=int(clock.now()) + 60)
    verifier.verify(token)
    clock.advance(60 + 29)
    verifier.verify(token)
    clock.advance(2)
    refused(verifier, token)


def test_cache_entry_dropped_when_its_key_disappears(issuer: StandInIssuer, verifier: TokenVerifier,
                                                     clock: FixedClock) -> None:
    token = issuer.mint(exp=int(clock.now()) + 3600)
    verifier.verify(token)
    issuer.state.keys.pop(0)  # the issuer retires (e.g. compromised) the key
    clock.advance(301)
    verifier.verify(issuer.mint(issuer.state.keys[0], exp=int(clock.now()) + 60))  # triggers the refresh
    refused(verifier, token)


def test_cache_is_bounded(issuer: StandInIssuer, clock: FixedClock) -> None:
    v = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock=clock, cache_size=3)
    for _ in range(10):
        v.verify(issuer.mint())
    assert len(v._cache) == 3


# -- opaque tokens: RFC 7662 introspection -----------------------------------------------------


@pytest.fixture
def introspecting(issuer: StandInIssuer, clock: FixedClock) -> TokenVerifier:
    issuer.state.secrets["orders-api"] = "s3cret&=+"
    return TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock=clock,
                         introspection=Introspection("orders-api", "s3cret&=+"))


def opaque_answer(issuer: StandInIssuer, **overrides: object) -> dict[str, object]:
    answer: dict[str, object] = {"active": True, **issuer.claims(), "token_type": "Bearer"}
    answer.update(overrides)
    return answer


def test_introspection_active_and_cached(issuer: StandInIssuer, introspecting: TokenVerifier,
                                         clock: FixedClock) -> None:
    issuer.state.opaque["opaque-1"] = opaque_answer(issuer, exp=int(clock.now()) + 100)
    access = introspecting.verify("opaque-1")
    assert access.subject == "user-1" and "orders:read" in access.scopes and access.is_user
    assert introspecting.verify("opaque-1") is access
    assert issuer.state.counts["introspect"] == 1
    clock.advance(100)
    refused(introspecting, "opaque-1")  # cached only until exp; the answer now says expired
    assert issuer.state.counts["introspect"] == 2


async def test_introspection_async(issuer: StandInIssuer, introspecting: TokenVerifier) -> None:
    issuer.state.opaque["opaque-2"] = opaque_answer(issuer)
    assert (await introspecting.averify("opaque-2")).client_id == "web-app"
    with pytest.raises(InvalidToken):
        await introspecting.averify("unknown-opaque")


@pytest.mark.parametrize("overrides", [{"active": False}, {"active": "true"}, {"aud": "https://other"},
                                       {"iss": "https://evil.example"}, {"exp": None}])
def test_introspection_refusals(issuer: StandInIssuer, introspecting: TokenVerifier,
                                overrides: dict[str, object]) -> None:
    answer = {k: v for k, v in opaque_answer(issuer, **overrides).items() if v is not None}
    issuer.state.opaque["opaque-3"] = answer
    refused(introspecting, "opaque-3")


def test_introspection_with_wrong_credentials(issuer: StandInIssuer, clock: FixedClock) -> None:
    v = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock=clock,
                      introspection=Introspection("orders-api", "wrong"))
    with pytest.raises(IssuerUnavailable):
        v.verify("opaque-4")


def test_introspection_secret_not_in_repr() -> None:
    assert "hunter2" not in repr(Introspection("api", "hunter2"))


def test_access_token_is_frozen(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    access = verifier.verify(issuer.mint())
    with pytest.raises(AttributeError):
        access.subject = "admin"  # type: ignore[misc]
    assert isinstance(access, AccessToken)


def test_cold_start_callers_wait_for_the_fetch_in_flight(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    issuer.state.jwks_delay = 0.3
    tokens = [issuer.mint() for _ in range(40)]
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(verifier.verify, tokens))
    assert all(r.subject == "user-1" for r in results)
    assert issuer.state.counts["jwks"] == 1


async def test_cold_start_asyncio(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    issuer.state.jwks_delay = 0.3
    results = await asyncio.gather(*(verifier.averify(issuer.mint()) for _ in range(40)))
    assert all(r.subject == "user-1" for r in results)
    assert issuer.state.counts["jwks"] == 1


@pytest.mark.parametrize("exp", [float("nan"), float("inf"), "soon", True, None, pytest.param(10**400, id="10**400")])
def test_claims_whose_exp_is_not_a_finite_number_make_no_access_token(exp: object) -> None:
    """``AccessToken.from_claims`` also takes RFC 7662 introspection answers, parsed by ``json.loads`` (which reads
    NaN and Infinity): a token whose exp is NaN would never expire, so it is refused like one without exp."""
    from ostiary.resource import InvalidToken
    from ostiary.resource.token import AccessToken

    claims = {"sub": "u1", "client_id": "c1", "scope": "read", "aud": AUDIENCE, "exp": exp}
    with pytest.raises(InvalidToken, match="exp"):
        AccessToken.from_claims(claims, "hash")
    assert AccessToken.from_claims({**claims, "exp": 1_700_000_000}, "hash").expires_at == 1_700_000_000
