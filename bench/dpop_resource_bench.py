"""DPoP's cost at the resource server (issue 12): ``TokenVerifier.verify`` per request, Bearer vs DPoP, in process.

Same run, same issuer key (ES256 access tokens), same verifier settings. Bearer: an unbound token. DPoP: a token
bound to the client's ES256 key, with a fresh proof per request (``htm``, ``htu``, ``iat``, ``jti``, ``ath``), the
``jti`` recorded in the replay cache: process memory, or Redis on 127.0.0.1:6379 (its own key prefix, removed
afterwards). Proofs are made before timing (the client's cost is not the API's). Rows: the access token already
in the verifier's token cache (what an API sees for a client's second and later calls) and not cached
(``cache_size=0``: every request verifies the token's signature too). Wall-clock time, pinned to one core,
medians of interleaved runs; prints a markdown table.

    .venv/bin/python bench/dpop_resource_bench.py [--runs 7] [--requests 2000] [--no-redis]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from ostiary.client.dpop import DpopKey
from ostiary.core.jose import generate_private_key, public_jwk, sign_jwt
from ostiary.resource import DpopPolicy, MemoryReplayCache, RedisReplayCache, TokenVerifier
from ostiary.resource.dpop import DpopRequest, ReplayCache

ISSUER = "https://issuer.bench.example"
AUDIENCE = "https://api.bench.example"
URL = AUDIENCE + "/orders"
REDIS_URL = "redis://127.0.0.1:6379/0"


def verifier(jwks: dict[str, Any], cache_size: int, cache: ReplayCache) -> TokenVerifier:
    def issuer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        return httpx.Response(200, json=jwks)

    return TokenVerifier(ISSUER, AUDIENCE, cache_size=cache_size, dpop=DpopPolicy(replay_cache=cache),
                         http_client=httpx.Client(transport=httpx.MockTransport(issuer)))


def per_request_us(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """Wall-clock and process-CPU µs per call."""
    fn(-1)  # warm (fetches the JWKS once)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    signing = generate_private_key("ES256")
    jwks = {"keys": [public_jwk(signing, "k1", "ES256")]}
    client_key = DpopKey()
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "user-1", "aud": AUDIENCE, "client_id": "web", "scope": "orders:read",
              "iat": now, "nbf": now, "exp": now + 3600, "jti": "t"}
    bearer = sign_jwt(claims, signing, alg="ES256", kid="k1", typ="at+jwt")
    bound = sign_jwt({**claims, "cnf": {"jkt": client_key.thumbprint}}, signing, alg="ES256", kid="k1",
                     typ="at+jwt")
    prefix = f"ostiary-bench-dpop:{uuid.uuid4().hex[:8]}:"
    caches: dict[str, Callable[[], ReplayCache]] = {"memory": MemoryReplayCache}
    if not args.no_redis:
        caches["Redis"] = lambda: RedisReplayCache(REDIS_URL, prefix=prefix)

    print(f"runs={args.runs} x {args.requests} requests, one core; µs per request, median of wall clock "
          "(process CPU in brackets: less disturbed by other load, but without the wait for Redis)\n")
    print("| access token | Bearer | DPoP, memory cache | ratio | " +
          ("DPoP, Redis cache | ratio |" if "Redis" in caches else ""))
    print("|---|---:|---:|---:|" + ("---:|---:|" if "Redis" in caches else ""))
    for label, cache_size in (("cached", 10_000), ("not cached", 0)):
        rows: dict[str, list[tuple[float, float]]] = {"bearer": [], **{name: [] for name in caches}}
        for _ in range(args.runs):
            plain = verifier(jwks, cache_size, MemoryReplayCache())

            def plain_call(_i: int, v: TokenVerifier = plain) -> object:
                return v.verify(bearer)

            rows["bearer"].append(per_request_us(plain_call, args.requests))
            for name, make in caches.items():
                v = verifier(jwks, cache_size, make())
                proofs = [client_key.proof("GET", URL, now=time.time(), access_token=bound)
                          for _ in range(args.requests + 1)]

                def dpop(i: int, v: TokenVerifier = v, proofs: list[str] = proofs) -> object:
                    return v.verify(bound, request=DpopRequest("DPoP", (proofs[i],), "GET", URL))

                rows[name].append(per_request_us(dpop, args.requests))
        b, bc = (statistics.median(x[i] for x in rows["bearer"]) for i in (0, 1))
        cells = [f"{b:.1f} ({bc:.1f})"]
        for name in caches:
            d, dc = (statistics.median(x[i] for x in rows[name]) for i in (0, 1))
            cells += [f"{d:.1f} ({dc:.1f})", f"{d / b:.1f}× ({dc / bc:.1f}×)"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if "Redis" in caches:
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(prefix + "*", count=1000):
            r.delete(key)
        r.close()


if __name__ == "__main__":
    main()
