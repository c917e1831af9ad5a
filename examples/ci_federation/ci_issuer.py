"""A stand-in CI platform: a tiny OIDC issuer that mints GitHub Actions-shaped job tokens.

Real CI platforms (GitHub Actions, GitLab CI, CircleCI, Buildkite, Kubernetes) publish an OIDC discovery
document and a JWKS, and hand each job a short-lived signed token describing it. This does the same on
127.0.0.1 so the federation example and tests run offline. It is deliberately independent of Ostiary: it
signs with PyJWT and ``cryptography`` directly, as an outside platform would.

    python ci_issuer.py serve --port 9100 --keys ci-keys.json
    python ci_issuer.py mint --issuer http://127.0.0.1:9100 --keys ci-keys.json \\
        --repository acme/api --ref refs/heads/main --environment production --aud https://id.example.com
    python ci_issuer.py rotate --keys ci-keys.json        # add a new signing key (it signs from now on)

Keys live in a local JSON file (private keys in PEM; fine for a stand-in, never for a real platform). The
server reads the file on every JWKS request, so ``rotate`` takes effect without a restart.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

__all__ = ["CIIssuer", "KeyFile", "github_actions_claims"]


class KeyFile:
    """Signing keys in a JSON file: ``{"keys": [{"kid", "pem"}]}``; the first key signs. ES256 (P-256)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write([self._new()])

    @staticmethod
    def _new() -> dict[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return {"kid": "ci-" + secrets.token_hex(6), "pem": pem}

    def _write(self, keys: list[dict[str, str]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": keys}, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.path)

    def _read(self) -> list[dict[str, str]]:
        keys: list[dict[str, str]] = json.loads(self.path.read_text())["keys"]
        return keys

    def rotate(self, keep: int = 2) -> str:
        """A new signing key first; the newest ``keep`` keys stay published. Returns the new kid."""
        new = self._new()
        self._write([new, *self._read()][:keep])
        return new["kid"]

    def signing_key(self) -> tuple[str, ec.EllipticCurvePrivateKey]:
        first = self._read()[0]
        key = serialization.load_pem_private_key(first["pem"].encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return first["kid"], key

    def jwks(self) -> dict[str, Any]:
        out = []
        for item in self._read():
            key = serialization.load_pem_private_key(item["pem"].encode(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out.append({**jwk, "kid": item["kid"], "alg": "ES256", "use": "sig"})
        return {"keys": out}

    def sign(self, claims: Mapping[str, Any], *, kid: str | None = None) -> str:
        own_kid, key = self.signing_key()
        return jwt.encode(dict(claims), key, algorithm="ES256", headers={"kid": kid or own_kid, "typ": "JWT"})


def github_actions_claims(issuer: str, *, aud: str, repository: str = "acme/api", ref: str = "refs/heads/main",
                          environment: str | None = "production", workflow: str = "deploy",
                          job_workflow_ref: str | None = None, ttl: int = 300, now: float | None = None,
                          **extra: Any) -> dict[str, Any]:
    """Claims shaped like a GitHub Actions job's OIDC token (docs.github.com, "About security hardening with
    OpenID Connect"). ``sub`` is ``repo:OWNER/REPO:environment:NAME`` for a job that uses an environment,
    else ``repo:OWNER/REPO:ref:REF``, as GitHub does."""
    now = time.time() if now is None else now
    owner = repository.split("/", 1)[0]
    sub = f"repo:{repository}:environment:{environment}" if environment else f"repo:{repository}:ref:{ref}"
    claims: dict[str, Any] = {
        "iss": issuer, "aud": aud, "sub": sub, "jti": secrets.token_hex(16),
        "iat": int(now), "nbf": int(now) - 5, "exp": int(now) + ttl,
        "repository": repository, "repository_owner": owner, "repository_visibility": "private",
        "ref": ref, "ref_type": "branch" if ref.startswith("refs/heads/") else "tag",
        "sha": secrets.token_hex(20), "workflow": workflow,
        "workflow_ref": f"{repository}/.github/workflows/{workflow}.yml@{ref}",
        "job_workflow_ref": job_workflow_ref or f"{repository}/.github/workflows/{workflow}.yml@{ref}",
        "run_id": str(int(now * 1000) % 10**10), "run_number": "42", "run_attempt": "1",
        "actor": "octocat", "event_name": "push", "runner_environment": "github-hosted",
    }
    if environment:
        claims["environment"] = environment
    claims.update(extra)
    return claims


class CIIssuer:
    """The issuer's HTTP side: discovery and JWKS on 127.0.0.1, in a background thread. Counts requests."""

    def __init__(self, keys: KeyFile, *, host: str = "127.0.0.1", port: int = 0, issuer: str | None = None) -> None:
        self.keys = keys
        self.counts: Counter[str] = Counter()
        self.discovery_issuer: str | None = None  # set to announce a different issuer (a misconfiguration)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.counts[self.path] += 1
                if self.path == "/.well-known/openid-configuration":
                    self._json({"issuer": outer.discovery_issuer or outer.issuer,
                                "jwks_uri": outer.issuer + "/.well-known/jwks",
                                "subject_types_supported": ["public"],
                                "response_types_supported": ["id_token"],
                                "id_token_signing_alg_values_supported": ["ES256"],
                                "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref",
                                                     "repository", "repository_owner", "sha", "workflow",
                                                     "job_workflow_ref", "environment", "run_id"]})
                elif self.path == "/.well-known/jwks":
                    self._json(outer.keys.jwks())
                else:
                    self.send_error(404)

            def _json(self, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.issuer = issuer or f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> CIIssuer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="ci-issuer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def mint(self, aud: str, *, kid: str | None = None, **claims: Any) -> str:
        """A GitHub Actions-shaped job token for this issuer; keyword arguments override claims."""
        return self.keys.sign(github_actions_claims(self.issuer, aud=aud, **claims), kid=kid)

    def __enter__(self) -> CIIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A stand-in CI platform OIDC issuer (discovery, JWKS, job tokens).")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve discovery and JWKS until interrupted")
    serve.add_argument("--port", type=int, default=9100)
    serve.add_argument("--keys", default="ci-keys.json", help="key file (created if missing)")
    mint = sub.add_parser("mint", help="print a job token with GitHub Actions-shaped claims")
    mint.add_argument("--issuer", required=True, help="the issuer URL the server runs at")
    mint.add_argument("--keys", default="ci-keys.json")
    mint.add_argument("--aud", required=True, help="audience (what the job asks for; e.g. the Ostiary issuer)")
    mint.add_argument("--repository", default="acme/api")
    mint.add_argument("--ref", default="refs/heads/main")
    mint.add_argument("--environment", default="production", help="empty for none")
    mint.add_argument("--workflow", default="deploy")
    mint.add_argument("--job-workflow-ref", default=None)
    mint.add_argument("--ttl", type=int, default=300)
    rotate = sub.add_parser("rotate", help="add a new signing key (the newest two stay published)")
    rotate.add_argument("--keys", default="ci-keys.json")
    args = parser.parse_args(argv)

    keys = KeyFile(args.keys)
    if args.command == "rotate":
        print(keys.rotate())
        return 0
    if args.command == "mint":
        claims = github_actions_claims(args.issuer, aud=args.aud, repository=args.repository, ref=args.ref,
                                       environment=args.environment or None, workflow=args.workflow,
                                       job_workflow_ref=args.job_workflow_ref, ttl=args.ttl)
        print(keys.sign(claims))
        return 0
    issuer = CIIssuer(keys, port=args.port)
    print(f"CI issuer at {issuer.issuer} (keys in {args.keys})", flush=True)
    try:
        issuer._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        issuer._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
