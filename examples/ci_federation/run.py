"""Deploy from CI without stored secrets, end to end on one machine.

Starts a stand-in CI platform (OIDC discovery + JWKS), Ostiary on a temporary SQLite database, and a deploy
API protected by ``ostiary.resource``; adds a trust policy with the CLI; mints a GitHub Actions-shaped job
token; exchanges it at Ostiary's token endpoint (RFC 8693); calls the deploy API with the result; then shows
a refused exchange and ``ostiary federation explain`` for it. Everything is cleaned up at the end.

    python examples/ci_federation/run.py          (or: examples/ci_federation/run.sh)
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DEPLOY_AUDIENCE = "https://deploy.example.com"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(cmd: list[str]) -> None:
    shown = [Path(c).name if c in (sys.executable, str(BIN / "ostiary")) else c for c in cmd]
    shown = [Path(c).name if c.endswith(".py") else c for c in shown]
    print("$ " + shlex.join(shown), flush=True)


def ostiary_bin() -> str:
    candidate = BIN / "ostiary"
    return str(candidate) if candidate.exists() else "ostiary"


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start at {url}")


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


def short(token: str) -> str:
    return token[:24] + "…" + f" ({len(token)} characters)"


class Demo:
    """The three services and the commands the walkthrough runs against them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ostiary = ostiary_bin()
        self.ost_port, self.ci_port, self.api_port = free_port(), free_port(), free_port()
        self.issuer = f"http://127.0.0.1:{self.ost_port}"
        self.ci_issuer = f"http://127.0.0.1:{self.ci_port}"
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.keys = str(workdir / "ci-keys.json")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OSTIARY_")}
        self.env.update({
            "OSTIARY_ISSUER": self.issuer,
            "OSTIARY_DATABASE_URL": f"sqlite:///{workdir / 'ostiary.db'}",
            "OSTIARY_SECRET_KEY_FILE": str(workdir / "secret.key"),
            "OSTIARY_LOG_FORMAT": "text",
            "OSTIARY_LOG_LEVEL": "warning",
            "OSTIARY_KEYS__PUBLISH_DELAY": "0",
        })

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self.ostiary, *args]
        show(cmd)
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        print(proc.stdout.rstrip(), flush=True)
        if check and proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"ostiary {args[0]} failed ({proc.returncode})")
        return proc

    def mint(self, **claims: str) -> str:
        cmd = [sys.executable, str(HERE / "ci_issuer.py"), "mint", "--issuer", self.ci_issuer, "--keys", self.keys,
               "--aud", self.issuer]
        for name, value in claims.items():
            cmd += [f"--{name.replace('_', '-')}", value]
        show(cmd)
        token = subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=True).stdout.strip()
        header, payload = (json.loads(_b64(part)) for part in token.split(".")[:2])
        print(f"job token {short(token)}, kid {header['kid']}")
        print("claims: " + json.dumps({k: payload[k] for k in ("iss", "aud", "sub", "repository", "ref",
                                                             "environment", "job_workflow_ref") if k in payload}))
        return token

    def exchange(self, token: str) -> httpx.Response:
        form = {"grant_type": TOKEN_EXCHANGE, "subject_token": token, "subject_token_type": JWT_TYPE,
                "audience": DEPLOY_AUDIENCE, "scope": "deploy"}
        print(f"$ curl -s {self.issuer}/token -d grant_type={TOKEN_EXCHANGE} -d subject_token=$JOB_TOKEN "
              f"-d subject_token_type={JWT_TYPE} -d audience={DEPLOY_AUDIENCE} -d scope=deploy")
        return httpx.post(self.issuer + "/token", data=form, timeout=30)

    def run(self) -> int:
        step("1. Start the stand-in CI platform (OIDC discovery + JWKS)")
        issuer_cmd = [sys.executable, str(HERE / "ci_issuer.py"), "serve", "--port", str(self.ci_port),
                      "--keys", self.keys]
        show(issuer_cmd)
        with background(issuer_cmd, self.env, self.workdir / "ci-issuer.log") as ci_proc:
            wait_http(self.ci_issuer + "/.well-known/openid-configuration", ci_proc, "the CI issuer")
            print(f"CI issuer at {self.ci_issuer}")

            step("2. Set up Ostiary on a temporary SQLite database")
            self.cli("migrate")

            step("3. Trust the CI platform: only production deploys of acme/api from main")
            self.cli("federation", "trust", "add", "--id", "acme-api-deploy", "--name", "acme/api production deploys",
                     "--issuer", self.ci_issuer, "--token-audience", self.issuer,
                     "--claim", "repository=acme/api", "--claim", "environment=production",
                     "--claim-glob", "ref=refs/heads/main",
                     "--claim-glob", "job_workflow_ref=acme/api/.github/workflows/*@refs/heads/main",
                     "--subject", "ci:{repository}@{environment}", "--scope", "deploy",
                     "--audience", DEPLOY_AUDIENCE, "--max-lifetime", "10m", "--one-time-jti")

            step("4. Start Ostiary and the deploy API")
            serve_cmd = [self.ostiary, "serve", "--port", str(self.ost_port)]
            show(serve_cmd)
            with background(serve_cmd, self.env, self.workdir / "ostiary.log") as ost_proc:
                wait_http(self.issuer + "/readyz", ost_proc, "ostiary")
                print(f"Ostiary at {self.issuer}")
                api_cmd = [sys.executable, str(HERE / "deploy_api.py"), "--issuer", self.issuer, "--audience",
                           DEPLOY_AUDIENCE, "--port", str(self.api_port)]
                show(api_cmd)
                with background(api_cmd, self.env, self.workdir / "deploy-api.log") as api_proc:
                    wait_http(self.api + "/healthz", api_proc, "the deploy API")
                    print(f"deploy API at {self.api}")
                    return self.pipeline()

    def pipeline(self) -> int:
        step("5. The CI job gets its OIDC token from the platform")
        token = self.mint(repository="acme/api", ref="refs/heads/main", environment="production")

        step("6. Exchange it at Ostiary for a short-lived access token (RFC 8693)")
        r = self.exchange(token)
        body = r.json()
        if r.status_code != 200:
            print(f"unexpected: HTTP {r.status_code} {body}")
            return 1
        access_token = body.pop("access_token")
        print(f"HTTP {r.status_code} " + json.dumps({"access_token": short(access_token), **body}))
        claims = json.loads(_b64(access_token.split(".")[1]))
        print("access token claims: " + json.dumps({k: claims[k] for k in ("sub", "client_id", "aud", "scope", "act",
                                                                          "federation_policy") if k in claims}))

        step("7. Deploy with it")
        print(f"$ curl -s -X POST {self.api}/deploy -H 'Authorization: Bearer $ACCESS_TOKEN' "
              "-d '{\"version\": \"1.4.2\"}'")
        d = httpx.post(self.api + "/deploy", json={"version": "1.4.2"},
                       headers={"Authorization": f"Bearer {access_token}"}, timeout=30)
        print(f"HTTP {d.status_code} {d.text}")
        if d.status_code != 200:
            return 1

        step("8. The same job token again: refused (one-time use)")
        again = self.exchange(token)
        print(f"HTTP {again.status_code} {again.text}")

        step("9. A job on a feature branch: refused, with a generic answer")
        feature = self.mint(repository="acme/api", ref="refs/heads/feature-x", environment="production")
        refused = self.exchange(feature)
        print(f"HTTP {refused.status_code} {refused.text}")
        if refused.status_code != 400 or again.status_code != 400:
            return 1

        step("10. The platform engineer asks why")
        path = self.workdir / "refused-token.jwt"
        path.write_text(feature)
        self.cli("federation", "explain", "--token", str(path), check=False)

        step("Done: no long-lived secret was stored anywhere")
        return 0


def _b64(part: str) -> str:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ostiary-ci-federation-") as tmp:
        return Demo(Path(tmp)).run()


if __name__ == "__main__":
    sys.exit(main())
