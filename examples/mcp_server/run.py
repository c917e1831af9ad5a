"""An MCP server behind Ostiary, with one command (``make demo-mcp``).

Starts Ostiary (``ostiary migrate`` + ``ostiary serve`` on a temporary SQLite database), registers a demo user
and a public MCP client with the CLI (its audience is the MCP server's URL, its redirect URI loopback), then
starts ``server.py``: an MCP server built with the official ``mcp`` SDK whose every request needs an Ostiary
token for that URL with ``notes:read``. It prints what to do and waits; Ctrl-C stops everything and removes the
temporary files.

    python examples/mcp_server/run.py            start and wait
    python examples/mcp_server/run.py --check    start, check the MCP server's 401 and RFC 9728 metadata,
                                                 print one JSON line, stop (for scripts and tests)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DEMO_USER = "demo"
CLIENT_ID = "demo-mcp-client"
SCOPE = "notes:read"
REDIRECT_URI = "http://127.0.0.1/callback"  # loopback: any port is accepted (RFC 8252 §7.3)


@dataclass
class Stack:
    issuer: str
    mcp_url: str
    client_id: str
    redirect_uri: str
    username: str
    password: str = field(repr=False)
    workdir: str = ""
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "env"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ostiary_bin() -> str:
    candidate = BIN / "ostiary"
    return str(candidate) if candidate.exists() else "ostiary"


def run_cli(env: dict[str, str], args: list[str], *, input: str | None = None,
            echo: bool = True) -> subprocess.CompletedProcess[str]:
    if echo:
        print("$ " + shlex.join(["ostiary", *args]), flush=True)
    proc = subprocess.run([ostiary_bin(), *args], env=env, capture_output=True, text=True, input=input, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"ostiary {shlex.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, log: Path, ok: tuple[int, ...] = (200,),
              timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=1).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start at {url}:\n{log.read_text(errors='replace')}")


@contextmanager
def background(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def start_all(*, verbose: bool = False) -> Iterator[Stack]:
    """Start Ostiary and the MCP server on free loopback ports; stop them and remove every file on exit."""
    say = print if verbose else (lambda *a, **k: None)
    with tempfile.TemporaryDirectory(prefix="ostiary-mcp-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        ports = {name: free_port() for name in ("ostiary", "mcp")}
        issuer, mcp_url = f"http://127.0.0.1:{ports['ostiary']}", f"http://127.0.0.1:{ports['mcp']}/mcp"
        base = {k: v for k, v in os.environ.items() if not k.startswith("OSTIARY_")}
        env = dict(base, OSTIARY_ISSUER=issuer, OSTIARY_DATABASE_URL=f"sqlite:///{workdir / 'ostiary.db'}",
                   OSTIARY_SECRET_KEY_FILE=str(workdir / "secret.key"), OSTIARY_LOG_FORMAT="text",
                   OSTIARY_LOG_LEVEL="warning", OSTIARY_KEYS__PUBLISH_DELAY="0")

        def cli(args: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
            return run_cli(env, args, input=input, echo=verbose)

        say("\n==> Set up Ostiary on a temporary SQLite database", flush=True)
        cli(["migrate"])
        say("\n==> Register the MCP client (public: it keeps no secret) and a demo user", flush=True)
        cli(["client", "create", "--name", "Demo MCP client", "--client-id", CLIENT_ID, "--public",
             # the SDK sends no DPoP proofs: without --no-dpop its token requests would be refused
             "--no-dpop",
             "--grant-type", "authorization_code", "--grant-type", "refresh_token",
             # the SDK asks for offline_access too (for a refresh token) when the server offers it
             "--scope", SCOPE + " offline_access",
             "--audience", mcp_url, "--redirect-uri", REDIRECT_URI, "--json"])
        password = secrets.token_urlsafe(12)
        cli(["user", "create", DEMO_USER, "--name", "Demo User", "--password-stdin"], input=password + "\n")

        say("\n==> Start Ostiary and the MCP server", flush=True)
        ostiary = stack.enter_context(background([ostiary_bin(), "serve", "--port", str(ports["ostiary"])], env,
                                                 workdir / "ostiary.log"))
        mcp = stack.enter_context(background([sys.executable, str(HERE / "server.py"), "--issuer", issuer,
                                              "--url", mcp_url, "--port", str(ports["mcp"])], env,
                                             workdir / "mcp.log"))
        wait_http(issuer + "/readyz", ostiary, "ostiary", workdir / "ostiary.log")
        wait_http(mcp_url, mcp, "mcp server", workdir / "mcp.log", ok=(401,))  # up, and wants a token
        say(f"ostiary    {issuer}\nmcp        {mcp_url}", flush=True)
        yield Stack(issuer=issuer, mcp_url=mcp_url, client_id=CLIENT_ID, redirect_uri=REDIRECT_URI,
                    username=DEMO_USER, password=password, workdir=tmp, env=env)


def check(stack: Stack) -> dict[str, Any]:
    """What a client sees first: 401 pointing at the RFC 9728 document, which names Ostiary."""
    r = httpx.post(stack.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    challenge = r.headers.get("www-authenticate", "")
    if r.status_code != 401 or "resource_metadata=" not in challenge:
        raise RuntimeError(f"expected 401 with resource_metadata, got {r.status_code} {challenge!r}")
    metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    metadata = httpx.get(metadata_url, timeout=10).json()
    return {**stack.public(), "challenge": challenge, "metadata_url": metadata_url, "metadata": metadata}


def main() -> int:
    parser = argparse.ArgumentParser(description="Run an MCP server behind Ostiary.")
    parser.add_argument("--check", action="store_true",
                        help="start everything, check the MCP server's 401 and metadata, print one JSON line, stop")
    args = parser.parse_args()
    try:
        with start_all(verbose=not args.check) as stack:
            if args.check:
                print(json.dumps(check(stack)), flush=True)
                return 0
            print(f"""
==> Ready. Point an MCP client at {stack.mcp_url}
    with the pre-registered client id {stack.client_id!r} (public, redirect {stack.redirect_uri} on any port),
    and sign in as   username: {stack.username}   password: {stack.password}
    For example, with the official SDK's client (the walkthrough is in examples/mcp_server/README.md):
      python examples/mcp_server/client.py --url {stack.mcp_url} --client-id {stack.client_id}
    It opens your browser at Ostiary, you sign in and Allow, and it calls the server's tools.
    Logs and the database are in {stack.workdir}; Ctrl-C stops everything and removes them.""", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nStopping…", flush=True)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
