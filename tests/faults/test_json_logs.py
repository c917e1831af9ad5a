"""Every line a server writes is one JSON object, even under hostile input (issue 10.8); request ids and the
access log tie a request's lines together; the Prometheus directory does not outlive the server (10.9)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support import LiveServer, create_pg_database, drop_pg_database, spawn, start_server

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Any:
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


def _lines(srv: LiveServer) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(srv.log().splitlines(), 1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {n} is not JSON: {line!r}") from None
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def _raw(port: int, data: bytes, *, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        if not read:
            return b""  # close with the request half sent
        s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


FORM = "application/x-www-form-urlencoded"
RAW = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS ClientHello on the plain port
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nzz\r\n",
    b"GET /%ZZ\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
]


def test_every_line_is_json_after_a_hostile_barrage(pg: str, tmp_path: Path) -> None:
    srv = start_server(pg, tmp_path, workers=2)
    port = int(srv.base_url.rsplit(":", 1)[1])
    try:
        for data in RAW:
            _raw(port, data)
        for path in ("/token", "/admin/api/clients", "/device", "/login"):  # the client goes away mid-body
            _raw(port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: 5000\r\n\r\n"
                       "grant_type=cli".encode(), read=False)
        with httpx.Client(base_url=srv.base_url, timeout=10) as http:
            bodies: list[tuple[str, dict[str, Any]]] = [
                ("/token", {"content": b"\xff\xfe=\x00", "headers": {"Content-Type": FORM}}),
                ("/token", {"content": b"{}", "headers": {"Content-Type": "application/json"}}),
                ("/token", {"content": b"a=" + b"b" * 70_000, "headers": {"Content-Type": FORM}}),
                ("/token", {"data": {"grant_type": "client_credentials"},
                            "headers": {"X-Forwarded-For": "a" * 65, "X-Request-ID": "x" * 500}}),
                ("/introspect", {"content": b"token=%ED%A0%80", "headers": {"Content-Type": FORM}}),
                ("/admin/api/clients", {"content": b"{not json", "headers": {"Authorization": "Bearer x"}}),
                ("/authorize?client_id=%00&redirect_uri=%ff", {}),
                ("/nowhere", {}),
            ]
            for path, kw in bodies:
                r = http.post(path, **kw)
                assert r.status_code < 500, (path, r.status_code, r.text)
                assert "x-request-id" in r.headers
            r = http.get("/authorize", params={"response_type": "code", "client_id": "x" * 10_000})
            assert r.status_code < 500
            metrics = http.get("/metrics").text
    finally:
        srv.stop()
    lines = _lines(srv)  # every line parses as a JSON object: the assertion of this test
    messages = [obj.get("msg", "") for obj in lines]
    assert "Invalid HTTP request received." in messages  # Uvicorn's own warning, now a JSON line
    disconnected = [obj for obj in lines if obj.get("msg") == "client_disconnected"]
    assert {obj["path"] for obj in disconnected} >= {"/token"}
    assert not [obj for obj in lines if obj.get("level") in ("error", "critical")], \
        [obj for obj in lines if obj.get("level") in ("error", "critical")]
    assert 'status="500"' not in metrics


def test_request_id_ties_a_requests_lines_together(pg: str, tmp_path: Path) -> None:
    srv = start_server(pg, tmp_path)
    try:
        c = srv.create_client(grant_types=["client_credentials"], scopes=["api:read"], audiences=["https://api"])
        r = httpx.post(srv.base_url + "/token?secret=in-the-url", auth=(c["client_id"], c["client_secret"]),
                       data={"grant_type": "client_credentials"})
        assert r.status_code == 200
        rid = r.headers["x-request-id"]
        other = httpx.post(srv.base_url + "/token", headers={"X-Request-ID": "chosen-by-the-client"},
                           auth=("bogus", "x"), data={"grant_type": "client_credentials"})
    finally:
        srv.stop()
    lines = _lines(srv)
    mine = [obj for obj in lines if obj.get("request_id") == rid]
    assert {obj["logger"] for obj in mine} == {"ostiary.audit", "ostiary.access"}
    access = next(obj for obj in mine if obj["logger"] == "ostiary.access")
    assert access["msg"] == "http.request" and access["method"] == "POST" and access["status"] == 200
    assert access["path"] == "/token" and access["client_id"] == c["client_id"]  # no query string
    assert isinstance(access["duration_ms"], float)
    # no trusted proxy is configured: a client does not choose its request id
    assert other.headers["x-request-id"] != "chosen-by-the-client"
    assert "in-the-url" not in srv.log()


def _metrics_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("ostiary-metrics-*"))


def test_metrics_directory_removed_on_exit_and_a_killed_servers_cleaned_at_start(
        pg: str, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp / f"ostiary-metrics-{gone.pid}-old"  # left by a server that was killed
    stale.mkdir()
    (stale / "counter_123.db").write_bytes(b"\0" * 16)
    srv = start_server(pg, tmp_path, workers=2, extra_env={"TMPDIR": str(tmp)})
    port = int(srv.base_url.rsplit(":", 1)[1])
    try:
        parent = srv.procs[0]
        assert _metrics_dirs(tmp) == [next(tmp.glob(f"ostiary-metrics-{parent.pid}-*"))]
        assert httpx.get(srv.base_url + "/metrics").status_code == 200
        # kill -9 the whole server (parent and workers, as an OOM killer or a container stop would)
        with open(f"/proc/{parent.pid}/task/{parent.pid}/children") as fh:
            workers = [int(p) for p in fh.read().split()]
        for pid in (parent.pid, *workers):
            os.kill(pid, signal.SIGKILL)
        parent.wait()
        for pid in workers:
            while os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid):
                time.sleep(0.05)
        srv.procs.clear()
        leftover = _metrics_dirs(tmp)
        assert len(leftover) == 1
        proc = spawn(srv, port, workers=2)
        assert _metrics_dirs(tmp) == [next(tmp.glob(f"ostiary-metrics-{proc.pid}-*"))]  # the leftover is gone
    finally:
        srv.stop()
    assert _metrics_dirs(tmp) == []  # removed after SIGTERM


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
