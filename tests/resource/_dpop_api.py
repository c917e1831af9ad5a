"""A protected API in its own process, for the DPoP tests: Starlette + ``BearerAuthMiddleware`` on uvicorn.

Configured by environment: ``ISSUER``, ``AUDIENCE``, ``PORT``; ``REDIS_URL`` and ``REDIS_PREFIX`` for a shared
replay cache; ``NONCE_SECRET`` to require resource nonces; ``REQUIRED=1`` to refuse Bearer; ``EXTERNAL_URL``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ostiary.resource import DpopNonces, DpopPolicy, RedisReplayCache, TokenVerifier
from ostiary.resource.dpop import MemoryReplayCache, ReplayCache
from ostiary.resource.starlette import BearerAuthMiddleware


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the process, seen from the tests -------------------------------------------------------------------------------------


class Api:
    def __init__(self, issuer: str, audience: str = "https://api.example.test", **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.public = env.get("EXTERNAL_URL") or self.url  # the URL clients address (proofs' htu)
        full = {**os.environ, "ISSUER": issuer, "AUDIENCE": audience, "PORT": str(self.port), **env,
                "PYTHONPATH": str(Path(__file__).parent)}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_dpop_api.py")], env=full)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/me", timeout=1)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the API process did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the API -----------------------------------------------------------------------------------------


async def me(request: Request) -> JSONResponse:
    token = request.state.access_token
    return JSONResponse({"sub": token.subject, "jkt": (token.claims.get("cnf") or {}).get("jkt"),
                         "pid": os.getpid()})


async def file(request: Request) -> JSONResponse:
    return JSONResponse({"name": request.path_params["name"]})


def main() -> None:
    env = os.environ
    cache: ReplayCache = (RedisReplayCache(env["REDIS_URL"], prefix=env["REDIS_PREFIX"]) if env.get("REDIS_URL")
                          else MemoryReplayCache())
    policy = DpopPolicy(replay_cache=cache, required=env.get("REQUIRED") == "1",
                        nonces=DpopNonces(env["NONCE_SECRET"]) if env.get("NONCE_SECRET") else None,
                        external_url=env.get("EXTERNAL_URL") or None)
    verifier = TokenVerifier(issuer=env["ISSUER"], audience=env["AUDIENCE"], dpop=policy)
    app = Starlette(routes=[Route("/me", me, methods=["GET", "POST"]), Route("/files/{name:path}", file)])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    uvicorn.run(app, host="127.0.0.1", port=int(env["PORT"]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
