"""TokenSession refreshes are serialised across processes and threads (the lock file beside the user's cache).

Presenting a spent refresh token makes a server revoke the whole family (OAuth 2.1 §4.3.1), so several CLIs
finding the same expired access token at once must send ONE refresh; the others pick up its result. The issuer
here is a stand-in over real HTTP that rotates refresh tokens and revokes on reuse, with a slow token endpoint
so that unserialised refreshes would overlap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from ostiary.client import TokenSession
from ostiary.client.token_store import EncryptedFileTokenStore, StoredTokens

PASSPHRASE = "a long passphrase"


class _Issuer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.current = "rt-0"
        self.generation = 0
        self.refreshes = 0
        self.reused = 0
        self.mutex = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Issuer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _json(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/.well-known/openid-configuration":
            self._json(200, {"issuer": self.server.url, "token_endpoint": self.server.url + "/token"})
        else:
            self._json(404, {})

    def do_POST(self) -> None:
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
        srv = self.server
        with srv.mutex:
            srv.refreshes += 1
            presented = form.get("refresh_token")
            if presented != srv.current:
                srv.reused += 1
                srv.current = "revoked"  # reuse revokes the family
                self._json(400, {"error": "invalid_grant"})
                return
            srv.generation += 1
            srv.current = f"rt-{srv.generation}"
            body = {"access_token": f"at-{srv.generation}", "token_type": "Bearer", "expires_in": 3600,
                    "refresh_token": srv.current}
        time.sleep(0.3)  # a slow issuer: an unserialised refresh would overlap this one
        self._json(200, body)


@pytest.fixture
def issuer() -> Iterator[_Issuer]:
    server = _Issuer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _seed(issuer: _Issuer, path: Path) -> None:
    EncryptedFileTokenStore(path, PASSPHRASE).save(StoredTokens(
        issuer=issuer.url, client_id="cli", account="alice", access_token="at-0", expires_at=time.time() - 10,
        refresh_token="rt-0"))


_REFRESH = """
import sys, threading
from ostiary.client import TokenSession
from ostiary.client.token_store import EncryptedFileTokenStore
issuer, path = sys.argv[1], sys.argv[2]
out = []
def one():
    session = TokenSession(issuer, "cli", EncryptedFileTokenStore(path, "a long passphrase"), account="alice")
    out.append(session.access_token())
threads = [threading.Thread(target=one) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(out))
"""


def test_concurrent_refreshes_in_several_processes_send_one_refresh(issuer: _Issuer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.enc"
    _seed(issuer, tokens)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    procs = [subprocess.Popen([sys.executable, "-c", _REFRESH, issuer.url, str(tokens)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    for (out, err), p in zip(results, procs, strict=True):
        assert p.returncode == 0, err
        assert out.split() == ["at-1", "at-1"], (out, err)
    assert issuer.refreshes == 1 and issuer.reused == 0
    stored = EncryptedFileTokenStore(tokens, PASSPHRASE).load(issuer.url, "cli", "alice")
    assert stored is not None and stored.refresh_token == "rt-1" and stored.access_token == "at-1"


def test_threads_of_one_process_share_one_refresh(issuer: _Issuer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    tokens = tmp_path / "tokens.enc"
    _seed(issuer, tokens)
    store = EncryptedFileTokenStore(tokens, PASSPHRASE)
    sessions = [TokenSession(issuer.url, "cli", store, account="alice") for _ in range(2)]
    shared = sessions[0]
    got: list[str] = []
    threads = [threading.Thread(target=lambda s=s: got.append(s.access_token()))
               for s in (*sessions, shared, shared)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["at-1"] * 4
    assert issuer.refreshes == 1 and issuer.reused == 0
    for s in sessions:
        s.close()
