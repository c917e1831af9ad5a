"""DPoP at the API (RFC 9449 §7): proofs checked by ``ostiary.resource`` in a real API process over real HTTP.

The API (``_dpop_api.py``) runs Starlette + ``BearerAuthMiddleware`` on uvicorn in its own process; two of them
share a Redis replay cache. Tokens come from the stand-in issuer; proofs are made by the client toolkit's
``DpopKey`` (valid ones) or forged here (invalid ones).
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import flask
import httpx
import jwt as pyjwt
import pytest
import redis
from _dpop_api import Api
from _issuer import AUDIENCE, StandInIssuer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi import Depends, FastAPI

from ostiary._clock import SystemClock
from ostiary._secrets import b64url, sha256_b64url
from ostiary.client.dpop import DpopKey
from ostiary.resource import (
    AccessToken,
    DpopPolicy,
    InvalidDpopProof,
    InvalidToken,
    MemoryReplayCache,
    ProtectedResourceMetadata,
    RedisReplayCache,
    TokenVerifier,
)
from ostiary.resource.dpop import DpopRequest
from ostiary.resource.fastapi import install, require_token
from ostiary.resource.flask import require_token as flask_require_token

REDIS_URL = "redis://127.0.0.1:6379/0"
PREFIX = f"ostiary-test-dpopkit:{uuid.uuid4().hex[:12]}:"
NONCE_SECRET = "dpop-nonce-secret-for-the-tests"
PUBLIC = "https://api.example.test"  # the public URL of the two API processes behind one (imagined) proxy


@pytest.fixture(scope="module")
def stand_in(_server: StandInIssuer) -> StandInIssuer:
    state = _server.reset()
    state.clock = SystemClock()  # the API processes use the real clock
    state.secrets["billing"] = "billing-secret"
    state.dpop = True
    return _server


@pytest.fixture(scope="module")
def apis(stand_in: StandInIssuer) -> Iterator[dict[str, Api]]:
    started = {"a": Api(stand_in.url, REDIS_URL=REDIS_URL, REDIS_PREFIX=PREFIX, EXTERNAL_URL=PUBLIC),
               "b": Api(stand_in.url, REDIS_URL=REDIS_URL, REDIS_PREFIX=PREFIX, EXTERNAL_URL=PUBLIC),
               "nonce": Api(stand_in.url, NONCE_SECRET=NONCE_SECRET, REQUIRED="1")}
    yield started
    for api in started.values():
        api.stop()
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter(PREFIX + "*"):
        r.delete(key)
    r.close()


@pytest.fixture
def api(apis: dict[str, Api]) -> Api:
    return apis["a"]


# -- tokens and proofs -----------------------------------------------------------------------------


def token(issuer: StandInIssuer, key: DpopKey | None = None, **overrides: Any) -> str:
    now = int(time.time())
    return issuer.mint(iat=now, nbf=now, exp=now + 300, auth_time=now,
                       cnf={"jkt": key.thumbprint} if key is not None else None, **overrides)


def proof(key: DpopKey, url: str, access_token: str | None, method: str = "GET", **kw: Any) -> str:
    return key.proof(method, url, now=kw.pop("now", time.time()), access_token=access_token, **kw)


def forge(claims: dict[str, Any], *, header: dict[str, Any] | None = None, key: Any = None, alg: str = "ES256",
          jwk: dict[str, Any] | None = None) -> str:
    """A proof with any header, claims, key and algorithm (PyJWT signs; none and HMAC included)."""
    if key is None and alg.startswith("ES"):
        key = ec.generate_private_key(ec.SECP256R1())
    if jwk is None and isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = DpopKey(key).jwk
    headers = {"typ": "dpop+jwt", **({"jwk": jwk} if jwk is not None else {}), **(header or {})}
    with warnings.catch_warnings():  # a weak RSA key is made on purpose
        warnings.simplefilter("ignore")
        return pyjwt.encode(claims, key, algorithm=alg, headers=headers)


def claims_for(url: str, access_token: str, method: str = "GET", **overrides: Any) -> dict[str, Any]:
    claims = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": int(time.time()),
              "ath": sha256_b64url(access_token)}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def call(api: Api, access_token: str, proofs: list[str] | str | None, *, method: str = "GET", path: str = "/me",
         scheme: str = "DPoP") -> httpx.Response:
    headers: list[tuple[str, str]] = [("Authorization", f"{scheme} {access_token}")]
    for p in [proofs] if isinstance(proofs, str) else proofs or []:
        headers.append(("DPoP", p))
    return httpx.request(method, api.url + path, headers=headers, timeout=10)


def assert_dpop_error(response: httpx.Response, error: str = "invalid_dpop_proof") -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == error
    challenges = response.headers.get_list("www-authenticate")
    dpop = [c for c in challenges if c.startswith("DPoP ")]
    assert len(dpop) == 1 and f'error="{error}"' in dpop[0] and 'algs="ES256 ' in dpop[0], challenges


# -- accepted -----------------------------------------------------------------------------------------


def test_a_dpop_bound_token_with_its_proof_is_accepted(stand_in: StandInIssuer, api: Api) -> None:
    key = DpopKey()
    at = token(stand_in, key)
    for _ in range(2):
        r = call(api, at, proof(key, api.public + "/me", at))
        assert r.status_code == 200, r.text
        assert r.json()["jkt"] == key.thumbprint
    # htu is compared without query and fragment, scheme and host case-insensitively (RFC 9449 §4.3)
    r = call(api, at, proof(key, "HTTPS://API.Example.TEST:443/me?x=1#f", at), path="/me?x=1")
    assert r.status_code == 200, r.text
    r = call(api, at, proof(key, api.public + "/me", at, method="POST"), method="POST")
    assert r.status_code == 200, r.text



def test_htu_of_a_percent_encoded_path(stand_in: StandInIssuer, api: Api) -> None:
    """RFC 9449 §4.3: ``htu`` is the URI the client addressed, compared after RFC 3986 §6.2.2 normalisation: a
    path with percent-encoded characters matches itself (not the decoded path the framework routes by), with
    hex digits in either case and unreserved characters encoded or not; another path does not."""
    key = DpopKey()
    at = token(stand_in, key)
    for requested, in_proof in (("/files/a%20b%2Fc", "/files/a%20b%2Fc"), ("/files/a%20b%2Fc", "/files/a%20b%2fc"),
                                ("/files/%61bc", "/files/abc"), ("/files/caf%C3%A9", "/files/caf%c3%a9")):
        r = call(api, at, proof(key, api.public + in_proof, at), path=requested)
        assert r.status_code == 200, (requested, in_proof, r.text)
    assert_dpop_error(call(api, at, proof(key, api.public + "/files/a%2Fc", at), path="/files/a/c"))
    assert_dpop_error(call(api, at, proof(key, api.public + "/files/a b", at), path="/files/a%2Bb"))

def test_challenges_offer_dpop_and_bearer(stand_in: StandInIssuer, api: Api, apis: dict[str, Api]) -> None:
    r = httpx.get(api.url + "/me")
    assert r.status_code == 401
    assert r.headers.get_list("www-authenticate") == [
        "Bearer", 'DPoP algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256"']
    # an API that requires DPoP: no Bearer challenge, and a plain Bearer token is refused
    strict = apis["nonce"]
    r = httpx.get(strict.url + "/me", headers={"Authorization": f"Bearer {token(stand_in)}"})
    assert r.status_code == 401
    assert r.headers.get_list("www-authenticate") == [
        'DPoP error="invalid_token", algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256"']
    # a plain Bearer token is still fine where Bearer is allowed
    assert httpx.get(api.url + "/me", headers={"Authorization": f"Bearer {token(stand_in)}"}).status_code == 200


# -- refused --------------------------------------------------------------------------------------------


def test_bearer_downgrade_of_a_bound_token_is_refused(stand_in: StandInIssuer, api: Api) -> None:
    key = DpopKey()
    at = token(stand_in, key)
    r = call(api, at, None, scheme="Bearer")
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert r.headers.get_list("www-authenticate")[0] == 'Bearer error="invalid_token"'
    # with a valid proof alongside, Bearer is still a downgrade
    assert call(api, at, proof(key, api.public + "/me", at), scheme="Bearer").status_code == 401



@pytest.mark.parametrize("jkt", [123, None, {"kty": "EC"}])
def test_a_token_with_a_malformed_cnf_jkt_is_not_a_bearer_token(stand_in: StandInIssuer, api: Api,
                                                                 jkt: Any) -> None:
    """Fail safe: a ``cnf.jkt`` that is present but not a thumbprint (RFC 9449 §6.1: a base64url string) does not
    make the token an unbound one usable as ``Bearer``; it is refused either way."""
    now = int(time.time())
    at = stand_in.mint(iat=now, nbf=now, exp=now + 300, auth_time=now, cnf={"jkt": jkt})
    r = call(api, at, None, scheme="Bearer")
    assert r.status_code == 401 and r.json()["error"] == "invalid_token", r.text
    key = DpopKey()
    r = call(api, at, proof(key, api.public + "/me", at))
    assert r.status_code == 401, r.text

def test_missing_or_repeated_proof(stand_in: StandInIssuer, api: Api) -> None:
    key = DpopKey()
    at = token(stand_in, key)
    assert_dpop_error(call(api, at, None))
    assert_dpop_error(call(api, at, [proof(key, api.public + "/me", at), proof(key, api.public + "/me", at)]))


@pytest.mark.parametrize("bad", ["not-a-jwt", "a.b.c", "e30.e30.", "x" * 200])
def test_not_a_jwt(stand_in: StandInIssuer, api: Api, bad: str) -> None:
    key = DpopKey()
    assert_dpop_error(call(api, token(stand_in, key), bad))


def test_wrong_htm_or_htu(stand_in: StandInIssuer, api: Api) -> None:
    key = DpopKey()
    at = token(stand_in, key)
    assert_dpop_error(call(api, at, proof(key, api.public + "/me", at, method="POST")))  # GET request
    assert_dpop_error(call(api, at, proof(key, api.public + "/other", at)))
    assert_dpop_error(call(api, at, proof(key, "http://api.example.test/me", at)))  # another scheme
    assert_dpop_error(call(api, at, proof(key, api.url + "/me", at)))  # the internal URL, not the public one



def test_an_unparseable_htu_or_host_is_refused_not_a_server_error(stand_in: StandInIssuer, api: Api,
                                                                   apis: dict[str, Api]) -> None:
    """RFC 9449 §4.3: a proof whose ``htu`` is not a URL (``urlsplit`` raises ``ValueError`` for an unclosed IPv6
    literal) does not match the request: 401 ``invalid_dpop_proof``, never a 5xx. The same for a request whose
    ``Host`` header makes its own URL unparseable (an API without ``external_url`` builds it from that header)."""
    key = DpopKey()
    at = token(stand_in, key)
    assert_dpop_error(call(api, at, forge(claims_for("https://[::1/me", at), key=key._key)))
    local = apis["nonce"]  # no external_url: the request URL comes from the Host header
    r = httpx.get(local.url + "/me", headers={"Host": "[::1", "Authorization": f"DPoP {at}",
                                              "DPoP": proof(key, local.url + "/me", at)})
    assert r.status_code == 401 and r.json()["error"] == "invalid_dpop_proof", r.text

def test_stale_or_future_iat(stand_in: StandInIssuer, api: Api) -> None:
    key = DpopKey()
    at = token(stand_in, key)
    assert_dpop_error(call(api, at, proof(key, api.public + "/me", at, now=time.time() - 3600)))
    assert_dpop_error(call(api, at, proof(key, api.public + "/me", at, now=time.time() + 3600)))
    assert_dpop_error(call(api, at, forge(claims_for(api.public + "/me", at, iat="now"), key=key._key)))
    # NaN compares false with both bounds of the window: it must be refused, not pass as always fresh
    assert_dpop_error(call(api, at, forge(claims_for(api.public + "/me", at, iat=float("nan")), key=key._key)))
    # json.loads reads any number of digits; float() of this one (in now - iat) raised OverflowError: a 500
    assert_dpop_error(call(api, at, forge(claims_for(api.public + "/me", at, iat=10**400), key=key._key)))


def test_replayed_jti_is_refused(stand_in: StandInIssuer, api: Api) -> None:
    key = DpopKey()
    at = token(stand_in, key)
    p = proof(key, api.public + "/me", at)
    assert call(api, at, p).status_code == 200
    assert_dpop_error(call(api, at, p))


def test_replay_to_another_process_sharing_redis_is_refused(stand_in: StandInIssuer,
                                                            apis: dict[str, Api]) -> None:
    """Two processes of one service (same public URL, same Redis): a proof used at one is refused by the other."""
    a, b = apis["a"], apis["b"]
    key = DpopKey()
    at = token(stand_in, key)
    p = proof(key, PUBLIC + "/me", at)
    first = call(a, at, p)
    assert first.status_code == 200, first.text
    assert_dpop_error(call(b, at, p))
    p2 = proof(key, PUBLIC + "/me", at)
    second = call(b, at, p2)
    assert second.status_code == 200 and second.json()["pid"] != first.json()["pid"]
    assert_dpop_error(call(a, at, p2))


def test_refused_algorithms_and_keys(stand_in: StandInIssuer, api: Api) -> None:
    key = DpopKey()
    at = token(stand_in, key)
    claims = claims_for(api.public + "/me", at)
    assert_dpop_error(call(api, at, forge(claims, alg="none", key=None, jwk=key.jwk)))
    hmac_key = b"k" * 32
    assert_dpop_error(call(api, at, forge(dict(claims, jti="h"), alg="HS256", key=hmac_key,
                                          jwk={"kty": "oct", "k": b64url(hmac_key)})))
    # an HMAC proof claiming the EC public key (key confusion)
    assert_dpop_error(call(api, at, forge(dict(claims, jti="h2"), alg="HS256", key=hmac_key, jwk=key.jwk)))
    private = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key._key))
    assert_dpop_error(call(api, at, forge(dict(claims, jti="p"), key=key._key, jwk=private)))
    assert_dpop_error(call(api, at, forge(dict(claims, jti="n"), key=key._key, header={"jwk": None})))
    assert_dpop_error(call(api, at, forge(dict(claims, jti="t"), key=key._key, header={"typ": "JWT"})))
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_jwk = {k: v for k, v in json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(weak.public_key())).items()
                if k in ("kty", "n", "e")}
    assert_dpop_error(call(api, at, forge(dict(claims, jti="w"), key=weak, alg="RS256", jwk=weak_jwk)))


def test_ath_mismatch(stand_in: StandInIssuer, api: Api) -> None:
    key = DpopKey()
    at, other = token(stand_in, key), token(stand_in, key)
    assert_dpop_error(call(api, at, proof(key, api.public + "/me", other)))
    assert_dpop_error(call(api, at, proof(key, api.public + "/me", None)))


def test_key_mismatch_and_unbound_token(stand_in: StandInIssuer, api: Api) -> None:
    key, thief = DpopKey(), DpopKey()
    at = token(stand_in, key)
    r = call(api, at, proof(thief, api.public + "/me", at))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert 'DPoP error="invalid_token"' in r.headers.get_list("www-authenticate")[1]
    unbound = token(stand_in)
    r = call(api, unbound, proof(key, api.public + "/me", unbound))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_huge_proof_refused(stand_in: StandInIssuer, api: Api) -> None:
    """A correctly signed proof is refused once it is larger than the cap (8 KB): 100 KB never gets parsed."""
    key = DpopKey()
    at = token(stand_in, key)
    small = forge(claims_for(api.public + "/me", at, pad="x" * 1000), key=key._key)
    assert call(api, at, small).status_code == 200
    huge = forge(claims_for(api.public + "/me", at, pad="x" * 100_000), key=key._key)
    assert len(huge) > 100_000
    assert_dpop_error(call(api, at, huge))


def test_resource_nonce(stand_in: StandInIssuer, apis: dict[str, Api]) -> None:
    api = apis["nonce"]
    key = DpopKey()
    at = token(stand_in, key)
    r = call(api, at, proof(key, api.public + "/me", at))
    assert_dpop_error(r, "use_dpop_nonce")
    nonce = r.headers["DPoP-Nonce"]
    assert call(api, at, proof(key, api.public + "/me", at, nonce=nonce)).status_code == 200
    assert_dpop_error(call(api, at, proof(key, api.public + "/me", at, nonce="made-up-" + nonce[8:])),
                      "use_dpop_nonce")


# -- in process: the verifier, Redis fallback, the other adapters, metadata -----------------------------


def test_proofs_nested_too_deeply_are_refused(stand_in: StandInIssuer) -> None:
    """JSON nested past the recursion limit makes json.loads raise RecursionError: a 401, not a crash."""
    verifier = TokenVerifier(stand_in.url, AUDIENCE, dpop=DpopPolicy())
    private = ec.generate_private_key(ec.SECP256R1())
    key = DpopKey(private)
    at = token(stand_in, key)
    url = "https://api.example.test/me"
    deep = b"[" * 1500 + b"]" * 1500
    in_header = b64url(deep) + "." + b64url(b"{}") + "." + b64url(b"sig")
    signing_input = (b64url(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk}).encode()) + "."
                     + b64url(b'{"a":' + deep + b"}"))
    r, s = decode_dss_signature(private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    in_claims = signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))  # signed by the key
    for p in (in_header, in_claims):
        with pytest.raises(InvalidDpopProof):
            verifier.verify(at, request=DpopRequest("DPoP", (p,), "GET", url))
    verifier.close()


def test_redis_down_falls_back_to_memory_and_still_refuses_replays(stand_in: StandInIssuer) -> None:
    cache = RedisReplayCache("redis://127.0.0.1:1/0", prefix=PREFIX, timeout=0.2)
    verifier = TokenVerifier(stand_in.url, AUDIENCE, dpop=DpopPolicy(replay_cache=cache))
    key = DpopKey()
    at = token(stand_in, key)
    url = "https://api.example.test/me"
    p = proof(key, url, at)
    assert verifier.verify(at, request=DpopRequest("DPoP", (p,), "GET", url)).subject == "user-1"
    with pytest.raises(InvalidDpopProof):
        verifier.verify(at, request=DpopRequest("DPoP", (p,), "GET", url))
    assert len(cache.fallback) == 1
    verifier.close()


def test_two_verifiers_sharing_redis_refuse_a_replay(stand_in: StandInIssuer) -> None:
    one = TokenVerifier(stand_in.url, AUDIENCE, dpop=DpopPolicy(replay_cache=RedisReplayCache(REDIS_URL,
                                                                                               prefix=PREFIX)))
    two = TokenVerifier(stand_in.url, AUDIENCE, dpop=DpopPolicy(replay_cache=RedisReplayCache(REDIS_URL,
                                                                                               prefix=PREFIX)))
    mem = TokenVerifier(stand_in.url, AUDIENCE, dpop=DpopPolicy(replay_cache=MemoryReplayCache()))
    key = DpopKey()
    at = token(stand_in, key)
    url = "https://api.example.test/me"
    request = DpopRequest("DPoP", (proof(key, url, at),), "GET", url)
    one.verify(at, request=request)
    with pytest.raises(InvalidDpopProof):
        two.verify(at, request=request)
    mem.verify(at, request=request)  # a process with its own memory cache cannot know: why Redis is needed
    for v in (one, two, mem):
        v.close()


async def test_fastapi_dependency_checks_dpop(stand_in: StandInIssuer) -> None:
    verifier = TokenVerifier(stand_in.url, AUDIENCE)
    app = FastAPI()
    install(app, verifier)

    @app.get("/me")
    async def me(t: AccessToken = Depends(require_token())) -> dict[str, str]:
        return {"sub": t.subject}

    key = DpopKey()
    at = token(stand_in, key)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        ok = await c.get("/me", headers={"Authorization": f"DPoP {at}", "DPoP": proof(key, "http://api.test/me", at)})
        assert ok.status_code == 200, ok.text
        down = await c.get("/me", headers={"Authorization": f"Bearer {at}"})
        assert down.status_code == 401
        assert down.headers.get_list("www-authenticate") == [
            'Bearer error="invalid_token"', 'DPoP algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256"']
        bad = await c.get("/me", headers={"Authorization": f"DPoP {at}", "DPoP": proof(key, "http://x.test/me", at)})
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_dpop_proof"
    verifier.close()


def test_flask_decorator_checks_dpop_behind_a_proxy(stand_in: StandInIssuer) -> None:
    """``external_url``: the API sits behind a proxy; proofs name the public URL, not the internal one."""
    verifier = TokenVerifier(stand_in.url, AUDIENCE, dpop=DpopPolicy(external_url="https://api.example.test"))
    app = flask.Flask("dpop")

    @app.get("/orders")
    @flask_require_token(verifier)
    def orders() -> dict[str, str]:
        return {"sub": flask.g.access_token.subject}

    key = DpopKey()
    at = token(stand_in, key)
    client = app.test_client()
    ok = client.get("/orders", headers={"Authorization": f"DPoP {at}",
                                        "DPoP": proof(key, "https://api.example.test/orders", at)})
    assert ok.status_code == 200, ok.text
    internal = client.get("/orders", headers={"Authorization": f"DPoP {at}",
                                              "DPoP": proof(key, "http://localhost/orders", at)})
    assert internal.status_code == 401 and internal.json["error"] == "invalid_dpop_proof"
    assert client.get("/orders", headers={"Authorization": f"Bearer {at}"}).status_code == 401
    verifier.close()



def test_flask_htu_of_a_percent_encoded_path(stand_in: StandInIssuer) -> None:
    """The Flask decorator, too, compares ``htu`` with the path the client sent (RFC 9449 §4.3), not the decoded
    one Flask routes by."""
    verifier = TokenVerifier(stand_in.url, AUDIENCE, dpop=DpopPolicy(external_url="https://api.example.test"))
    app = flask.Flask("dpop-paths")

    @app.get("/files/<path:name>")
    @flask_require_token(verifier)
    def files(name: str) -> dict[str, str]:
        return {"name": name}

    key = DpopKey()
    at = token(stand_in, key)
    client = app.test_client()
    for requested, in_proof in (("/files/a%20b%2Fc", "/files/a%20b%2Fc"), ("/files/%61bc", "/files/abc")):
        r = client.get(requested, headers={"Authorization": f"DPoP {at}",
                                           "DPoP": proof(key, "https://api.example.test" + in_proof, at)})
        assert r.status_code == 200, (requested, r.text)
    r = client.get("/files/a/c", headers={"Authorization": f"DPoP {at}",
                                          "DPoP": proof(key, "https://api.example.test/files/a%2Fc", at)})
    assert r.status_code == 401 and r.json["error"] == "invalid_dpop_proof"
    verifier.close()

def test_dpop_off_refuses_bound_tokens_and_the_scheme(stand_in: StandInIssuer) -> None:
    verifier = TokenVerifier(stand_in.url, AUDIENCE, dpop=False)
    key = DpopKey()
    at = token(stand_in, key)
    with pytest.raises(InvalidToken):
        verifier.verify(at)
    verifier.close()


def test_protected_resource_metadata_advertises_dpop() -> None:
    policy = DpopPolicy(algorithms=("ES256", "EdDSA"), required=True)
    doc = ProtectedResourceMetadata(resource=AUDIENCE, authorization_servers=["https://login.example.test"]
                                    ).with_dpop(policy).document()
    assert doc["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert doc["dpop_bound_access_tokens_required"] is True
    plain = ProtectedResourceMetadata(resource=AUDIENCE, authorization_servers=["https://login.example.test"])
    assert "dpop_signing_alg_values_supported" not in plain.document()
    with pytest.raises(ValueError):
        DpopPolicy(algorithms=("HS256",))


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "EdDSA", "RS256", "PS256", "PS384"])
def test_every_allowed_algorithm_verifies_and_a_foreign_signature_does_not(stand_in: StandInIssuer,
                                                                        alg: str) -> None:
    """Proofs signed by PyJWT (an independent implementation) with each allowed algorithm are accepted; the same
    proof with another key's signature, or a key of the wrong curve for its alg, is refused."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    def make() -> Any:
        if alg.startswith("ES"):
            return ec.generate_private_key({"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(),
                                            "ES512": ec.SECP521R1()}[alg])
        if alg == "EdDSA":
            return ed25519.Ed25519PrivateKey.generate()
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk_of(private: Any) -> dict[str, Any]:
        algo = (pyjwt.algorithms.ECAlgorithm if alg.startswith("ES") else pyjwt.algorithms.OKPAlgorithm
                if alg == "EdDSA" else pyjwt.algorithms.RSAAlgorithm)
        full = json.loads(algo.to_jwk(private.public_key()))
        return {k: v for k, v in full.items() if k in ("kty", "crv", "x", "y", "n", "e")}

    from ostiary.core.jose import jwk_thumbprint

    key, other = make(), make()
    jwk = jwk_of(key)
    verifier = TokenVerifier(stand_in.url, AUDIENCE, dpop=DpopPolicy(replay_cache=MemoryReplayCache()))
    at = stand_in.mint(**{k: v for k, v in {"iat": int(time.time()), "nbf": int(time.time()),
                                           "exp": int(time.time()) + 300, "auth_time": int(time.time()),
                                           "cnf": {"jkt": jwk_thumbprint(jwk)}}.items()})
    url = "https://api.example.test/me"
    good = forge(claims_for(url, at), key=key, alg=alg, jwk=jwk)
    assert verifier.verify(at, request=DpopRequest("DPoP", (good,), "GET", url)).subject == "user-1"
    foreign = forge(claims_for(url, at), key=other, alg=alg, jwk=jwk)
    with pytest.raises(InvalidDpopProof):
        verifier.verify(at, request=DpopRequest("DPoP", (foreign,), "GET", url))
    if alg == "ES256":  # a P-384 key under an ES256 header
        p384 = ec.generate_private_key(ec.SECP384R1())
        header = b64url(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_of(p384)}).encode())
        signing_input = header + "." + b64url(json.dumps(claims_for(url, at)).encode())
        r, s = decode_dss_signature(p384.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        bad = signing_input + "." + b64url(r.to_bytes(48, "big") + s.to_bytes(48, "big"))
        with pytest.raises(InvalidDpopProof):
            verifier.verify(at, request=DpopRequest("DPoP", (bad,), "GET", url))
    verifier.close()
