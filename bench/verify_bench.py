"""Access-token verification throughput: ostiary.resource.TokenVerifier vs PyJWT's jwt.decode.

Both sides do the same checks on the same RFC 9068 tokens: signature, typ ``at+jwt``, iss, aud,
exp/nbf/iat with 30 s leeway, required claims. The verifier's JWKS comes over an httpx MockTransport
(fetched once, before timing). Pinned to one core and timed in process CPU time (so other load
on the machine disturbs it less); prints a markdown table of medians.

    .venv/bin/python bench/verify_bench.py [--runs 7] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from ostiary.core.jose import generate_private_key, public_jwk, sign_jwt
from ostiary.resource import TokenVerifier

ISSUER = "https://issuer.bench.example"
AUDIENCE = "https://api.bench.example"
REQUIRED = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]
ALGS = ("ES256", "RS256", "EdDSA")


def setup() -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    keys = {alg: generate_private_key(alg) for alg in ALGS}  # type: ignore[arg-type]
    jwks = {"keys": [public_jwk(k, f"kid-{alg}", alg) for alg, k in keys.items()]}
    now = int(time.time())
    tokens = {alg: sign_jwt({"iss": ISSUER, "sub": "user-1", "aud": AUDIENCE, "client_id": "web",
                             "scope": "orders:read profile", "iat": now, "nbf": now, "exp": now + 3600,
                             "jti": f"jti-{alg}"}, k, alg=alg, kid=f"kid-{alg}", typ="at+jwt")
              for alg, k in keys.items()}
    public = {f"kid-{alg}": (k.public_key(), alg) for alg, k in keys.items()}
    return tokens, jwks, public


def verifier(jwks: dict[str, Any], cache_size: int) -> TokenVerifier:
    def issuer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        return httpx.Response(200, json=jwks)

    return TokenVerifier(ISSUER, AUDIENCE, cache_size=cache_size,
                         http_client=httpx.Client(transport=httpx.MockTransport(issuer)))


def pyjwt_decode(public: dict[str, Any]) -> Callable[[str], object]:
    def decode(token: str) -> object:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "at+jwt":
            raise jwt.InvalidTokenError("typ")
        key, alg = public[header["kid"]]
        return jwt.decode(token, key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER, leeway=30,
                          options={"require": REQUIRED})
    return decode


def per_second(fn: Callable[[str], object], token: str, seconds: float) -> float:
    fn(token)  # warm
    n, start = 0, time.process_time()  # CPU time: robust when other work shares the machine
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn(token)
        n += 50
        now = time.process_time()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    tokens, jwks, public = setup()
    uncached, cached, baseline = verifier(jwks, 0), verifier(jwks, 10_000), pyjwt_decode(public)
    print(f"runs={args.runs} x {args.seconds}s CPU each, one core; verifications per CPU-second (median)\n")
    print("| alg | PyJWT jwt.decode | ostiary uncached | cost vs PyJWT | ostiary cached | cached speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for alg in ALGS:
        token = tokens[alg]
        rows: dict[str, list[float]] = {"pyjwt": [], "uncached": [], "cached": []}
        for _ in range(args.runs):  # interleave so drift hits every column alike
            rows["pyjwt"].append(per_second(baseline, token, args.seconds))
            rows["uncached"].append(per_second(uncached.verify, token, args.seconds))
            rows["cached"].append(per_second(cached.verify, token, args.seconds))
        p, u, c = (statistics.median(rows[k]) for k in ("pyjwt", "uncached", "cached"))
        print(f"| {alg} | {p:,.0f} | {u:,.0f} | {p / u:.2f}x | {c:,.0f} | {c / u:.0f}x |")


if __name__ == "__main__":
    main()
