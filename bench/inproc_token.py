"""CPU cost per /token request inside the ASGI app (no HTTP server, no network), with a profile.

Usage: .venv/bin/python bench/inproc_token.py [--n 5000] [--profile] [--dpop] [--refresh]
With --dpop every request carries a fresh ES256 DPoP proof (RFC 9449), all signed before the timing starts.
With --refresh every request rotates a refresh token (``grant_type=refresh_token``, public client
BENCH_CLIENT_ID, starting from BENCH_REFRESH_TOKEN; each response's refresh token is presented next).
Needs OSTIARY_* settings of a migrated database (for --refresh: those of the server that issued the token, its
secret key included) and BENCH_CLIENT_ID / BENCH_CLIENT_SECRET.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import os
import pstats
import time
from typing import Any
from urllib.parse import urlencode

from ostiary.config import load_settings
from ostiary.web.app import create_app


def _proofs(count: int, url: str) -> list[bytes]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.web._dpop import DPoPKey

    key = DPoPKey()
    return [key.proof(url).encode() for _ in range(count)]


async def main(n: int, profile: bool, path: str, dpop: bool = False, refresh: bool = False) -> None:
    app = create_app(load_settings())
    auth = base64.b64encode(f"{os.environ['BENCH_CLIENT_ID']}:{os.environ.get('BENCH_CLIENT_SECRET', '')}".encode())
    body = b"grant_type=client_credentials&scope=api%3Aread"
    token: dict[str, Any] = {"refresh": os.environ.get("BENCH_REFRESH_TOKEN", ""), "body": body}
    method = "POST" if path == "/token" else "GET"
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/x-www-form-urlencoded"),
                    (b"content-length", str(len(body)).encode()), (b"authorization", b"Basic " + auth)],
        "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []
    proofs = iter(_proofs(n + 200, load_settings().issuer.rstrip("/") + path)) if dpop else None

    def request_scope() -> dict[str, Any]:
        if refresh:
            form = urlencode({"grant_type": "refresh_token", "refresh_token": token["refresh"],
                              "client_id": os.environ["BENCH_CLIENT_ID"]}).encode()
            token["body"] = form
            return {**scope, "headers": [(b"host", b"127.0.0.1:8000"),
                                         (b"content-type", b"application/x-www-form-urlencoded"),
                                         (b"content-length", str(len(form)).encode())]}
        if proofs is None:
            return dict(scope)
        return {**scope, "headers": [*scope["headers"], (b"dpop", next(proofs))]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": token["body"] if method == "POST" else b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif refresh and message["type"] == "http.response.body" and message.get("body"):
            token["refresh"] = json.loads(message["body"])["refresh_token"]

    async with app.router.lifespan_context(app):
        for _ in range(200):
            await app(request_scope(), receive, send)
        prof = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        c0 = time.process_time()
        if prof:
            prof.enable()
        for _ in range(n):
            await app(request_scope(), receive, send)
        if prof:
            prof.disable()
        cpu = time.process_time() - c0
        wall = time.perf_counter() - t0
    assert set(statuses) == {200}, set(statuses)
    what = "refresh-token rotations" if refresh else "requests"
    print(f"{path}: {n} {what}, {cpu / n * 1e6:.1f} us CPU each, {wall / n * 1e6:.1f} us wall each")
    if refresh:
        print(f"BENCH_REFRESH_TOKEN={token['refresh']}  # the family's latest, to go on from")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--path", default="/token")
    ap.add_argument("--dpop", action="store_true", help="a fresh DPoP proof on every request")
    ap.add_argument("--refresh", action="store_true", help="rotate a refresh token on every request")
    a = ap.parse_args()
    asyncio.run(main(a.n, a.profile, a.path, a.dpop, a.refresh))
