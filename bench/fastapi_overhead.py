"""Requests per second of a small FastAPI endpoint with and without ``require_scopes``.

Starts uvicorn (one worker, no access log) in a subprocess and loads it with ``wrk`` when installed
(``apt-get install -y wrk``), else with an httpx asyncio loop; the report says which. Endpoints:
``/plain`` (no auth), ``/protected`` (``require_scopes("orders:read")``, verified-token cache on: the
steady state of a client reusing its token) and ``/nocache/protected`` (cache off: every request does
a full signature verification). The issuer's JWKS is served to the verifier by an httpx MockTransport.

    .venv/bin/python bench/fastapi_overhead.py [--runs 3] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI

from ostiary.core.jose import generate_private_key, key_from_pem, key_to_pem, public_jwk, sign_jwt
from ostiary.resource import AccessToken, TokenVerifier
from ostiary.resource.fastapi import install, require_scopes

ISSUER = "https://issuer.bench.example"
AUDIENCE = "https://api.bench.example"


def build_app(pem: bytes) -> FastAPI:
    jwks = {"keys": [public_jwk(key_from_pem(pem), "bench", "ES256")]}

    def issuer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        return httpx.Response(200, json=jwks)

    def verifier(cache_size: int) -> TokenVerifier:
        return TokenVerifier(ISSUER, AUDIENCE, cache_size=cache_size,
                             async_http_client=httpx.AsyncClient(transport=httpx.MockTransport(issuer)))

    def make(cache_size: int) -> FastAPI:
        app = FastAPI()
        install(app, verifier(cache_size))

        @app.get("/plain")
        async def plain() -> dict[str, str]:
            return {"sub": "anonymous"}

        @app.get("/protected")
        async def protected(token: Annotated[AccessToken, Depends(require_scopes("orders:read"))]
                            ) -> dict[str, str]:
            return {"sub": token.subject}

        return app

    app = make(10_000)
    app.mount("/nocache", make(0))
    return app


def serve(port: int) -> None:
    import uvicorn

    pem = base64.b64decode(os.environ["BENCH_KEY_PEM"])
    uvicorn.run(build_app(pem), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, token: str | None, seconds: int, connections: int) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed or got errors:\n{out}")
    return float(match.group(1))


def httpx_loop(url: str, token: str | None, seconds: float, connections: int) -> float:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def run() -> float:
        count = 0
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(limits=limits, headers=headers) as client:
            deadline = time.perf_counter() + seconds
            start = time.perf_counter()

            async def worker() -> None:
                nonlocal count
                while time.perf_counter() < deadline:
                    (await client.get(url)).raise_for_status()
                    count += 1

            await asyncio.gather(*(worker() for _ in range(connections)))
            return count / (time.perf_counter() - start)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    key = generate_private_key("ES256")
    now = int(time.time())
    token = sign_jwt({"iss": ISSUER, "sub": "user-1", "aud": AUDIENCE, "client_id": "web",
                      "scope": "orders:read", "iat": now, "exp": now + 3600, "jti": "bench"},
                     key, alg="ES256", kid="bench", typ="at+jwt")
    port = free_port()
    env = dict(os.environ, BENCH_KEY_PEM=base64.b64encode(key_to_pem(key)).decode())
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/plain")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        tool, load = ("wrk", wrk) if shutil.which("wrk") else ("httpx asyncio loop", httpx_loop)
        cases = [("no auth", "/plain", None), ("require_scopes, cached token", "/protected", token),
                 ("require_scopes, cache off", "/nocache/protected", token)]
        for _, path, tok in cases:  # warm up, and check that each endpoint answers 200
            httpx.get(base + path, headers={"Authorization": f"Bearer {tok}"} if tok else {}).raise_for_status()
        results: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _ in range(args.runs):
            for name, path, tok in cases:
                results[name].append(load(base + path, tok, args.seconds, args.connections))
        print(f"load: {tool}, {args.connections} connections, {args.seconds:g}s x {args.runs} runs; "
              "uvicorn 1 worker\n")
        print("| endpoint | requests/s (median) | vs no auth |")
        print("|---|---:|---:|")
        plain = statistics.median(results["no auth"])
        for name, values in results.items():
            rps = statistics.median(values)
            print(f"| {name} | {rps:,.0f} | {rps / plain:.0%} |")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
