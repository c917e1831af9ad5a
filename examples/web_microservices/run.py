"""A web app and two microservices behind Ostiary, on one machine, with one command.

Starts Ostiary (``ostiary migrate`` + ``ostiary serve`` on a temporary SQLite database), registers the
clients and a demo user with the CLI, then starts:

* ``webapp.py``     a backend-for-frontend web app: signs people in (Authorization Code + PKCE + OIDC) and
                    keeps their tokens server-side; the browser only holds an HttpOnly session cookie;
* ``orders.py``     an API that accepts only user tokens for ``https://orders.example.com`` (``orders:read``)
                    and calls inventory for that user with a token it gets by token exchange (RFC 8693);
* ``inventory.py``  an API that accepts only a user's token for ``https://inventory.example.com``
                    (``inventory:read``) exchanged by orders (its ``act`` names ``orders-service``).

It prints the URL to open and the demo user's credentials and waits; Ctrl-C stops everything and removes
the temporary files.

    python examples/web_microservices/run.py            (or: examples/web_microservices/run.sh)
    python examples/web_microservices/run.py --check    start, print one JSON line with URLs and
                                                        credentials, stop (for scripts and tests)
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
ORDERS_AUDIENCE = "https://orders.example.com"
INVENTORY_AUDIENCE = "https://inventory.example.com"
WEBAPP_CLIENT_ID = "webapp"
ORDERS_CLIENT_ID = "orders-service"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEMO_USER = "demo"


@dataclass
class Stack:
    """Where everything runs, and the demo credentials. ``env`` runs the ``ostiary`` CLI on the same database."""

    issuer: str
    webapp: str
    orders: str
    inventory: str
    orders_audience: str
    inventory_audience: str
    username: str
    password: str = field(repr=False)
    workdir: str
    env: dict[str, str] = field(repr=False)
    orders_client_id: str = ORDERS_CLIENT_ID
    orders_client_secret: str = field(default="", repr=False)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("env", "orders_client_secret")}

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, list(args), input=input, echo=False)


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


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
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
def start_all(*, verbose: bool = False, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Start Ostiary and the three apps on free loopback ports; stop them and remove every file on exit."""
    say = print if verbose else (lambda *a, **k: None)
    with tempfile.TemporaryDirectory(prefix="ostiary-web-microservices-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        ports = {name: free_port() for name in ("ostiary", "webapp", "orders", "inventory")}
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OSTIARY_", "WEBAPP_", "ORDERS_"))}
        env = dict(base, OSTIARY_ISSUER=url["ostiary"],
                   OSTIARY_DATABASE_URL=f"sqlite:///{workdir / 'ostiary.db'}",
                   OSTIARY_SECRET_KEY_FILE=str(workdir / "secret.key"), OSTIARY_LOG_FORMAT="text",
                   OSTIARY_LOG_LEVEL="warning", OSTIARY_KEYS__PUBLISH_DELAY="0", **(extra_env or {}))

        def cli(args: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
            return run_cli(env, args, input=input, echo=verbose)

        say("\n==> Set up Ostiary on a temporary SQLite database", flush=True)
        cli(["migrate"])

        say("\n==> Register the web app, the orders service and a demo user", flush=True)
        webapp = json.loads(cli([
            "client", "create", "--name", "Acme Shop", "--client-id", WEBAPP_CLIENT_ID,
            "--grant-type", "authorization_code", "--grant-type", "refresh_token",
            "--scope", "openid profile offline_access orders:read inventory:read", "--audience", ORDERS_AUDIENCE,
            "--redirect-uri", url["webapp"] + "/callback", "--post-logout-redirect-uri", url["webapp"] + "/",
            "--json"]).stdout)
        # orders serves the orders API (the people's tokens are sent to it) and may exchange them, on their
        # behalf, for inventory's audience (RFC 8693): scope at most inventory:read
        orders = json.loads(cli([
            "client", "create", "--name", "orders service", "--client-id", ORDERS_CLIENT_ID,
            "--grant-type", TOKEN_EXCHANGE, "--scope", "inventory:read", "--serves", ORDERS_AUDIENCE,
            "--may-exchange-for", INVENTORY_AUDIENCE, "--json"]).stdout)
        password = secrets.token_urlsafe(12)
        cli(["user", "create", DEMO_USER, "--name", "Demo User", "--password-stdin"], input=password + "\n")
        say("(client secrets are kept in memory and passed to each app in its environment only)")

        say("\n==> Start Ostiary, inventory, orders and the web app", flush=True)
        processes = [
            ("ostiary", [ostiary_bin(), "serve", "--port", str(ports["ostiary"])], {}, "/readyz"),
            ("inventory", [sys.executable, str(HERE / "inventory.py"), "--issuer", url["ostiary"],
                           "--audience", INVENTORY_AUDIENCE, "--caller", ORDERS_CLIENT_ID,
                           "--port", str(ports["inventory"])], {}, "/healthz"),
            ("orders", [sys.executable, str(HERE / "orders.py"), "--issuer", url["ostiary"],
                        "--audience", ORDERS_AUDIENCE, "--client-id", ORDERS_CLIENT_ID,
                        "--inventory-url", url["inventory"], "--inventory-audience", INVENTORY_AUDIENCE,
                        "--port", str(ports["orders"])], {"ORDERS_CLIENT_SECRET": orders["client_secret"]},
             "/healthz"),
            ("webapp", [sys.executable, str(HERE / "webapp.py"), "--issuer", url["ostiary"],
                        "--client-id", WEBAPP_CLIENT_ID, "--base-url", url["webapp"], "--orders-url", url["orders"],
                        "--port", str(ports["webapp"])], {"WEBAPP_CLIENT_SECRET": webapp["client_secret"]},
             "/healthz"),
        ]
        started = [(name, stack.enter_context(background(cmd, dict(env, **secret_env), workdir / f"{name}.log")),
                    health) for name, cmd, secret_env, health in processes]  # all at once: they start faster
        for name, proc, health in started:
            wait_http(url[name] + health, proc, name, workdir / f"{name}.log")
            say(f"{name:<10} {url[name]}", flush=True)

        yield Stack(issuer=url["ostiary"], webapp=url["webapp"], orders=url["orders"], inventory=url["inventory"],
                    orders_audience=ORDERS_AUDIENCE, inventory_audience=INVENTORY_AUDIENCE, username=DEMO_USER,
                    password=password, workdir=tmp, env=env, orders_client_secret=orders["client_secret"])


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the web app + microservices example.")
    parser.add_argument("--check", action="store_true",
                        help="start everything, print one JSON line with URLs and credentials, then stop")
    args = parser.parse_args()
    check = args.check or os.environ.get("OSTIARY_EXAMPLE_CHECK") == "1"
    try:
        with start_all(verbose=not check) as stack:
            if check:
                print(json.dumps(stack.public()), flush=True)
                return 0
            print(f"\n==> Open {stack.webapp}/orders in a browser and sign in as\n"
                  f"      username: {stack.username}\n      password: {stack.password}\n"
                  "    then press Allow. Logs and the database are in " + stack.workdir + "\n"
                  "    Ctrl-C stops everything and removes them.", flush=True)
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
