"""Issue 10.5: a body that never arrives in full (Content-Length larger than what is sent, or a stalled upload)
gets 408 after ``server.body_timeout`` and its connection is closed; a SIGTERM while such a client stalls
still stops the server promptly, and the client gets its 408 or a closed connection, never a 500."""

from __future__ import annotations

import json
import signal

from .conftest import no_traceback, raw_connect, read_response

STALLED = {"OSTIARY_SERVER__BODY_TIMEOUT": "2"}


def _stalled_request(path: str, content_type: str, headers: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{headers}"
            "Content-Length: 100\r\n\r\ngrant_type").encode()


PATHS = [("/token", "application/x-www-form-urlencoded"), ("/login", "application/x-www-form-urlencoded"),
         ("/device_authorization", "application/x-www-form-urlencoded"), ("/admin/api/clients", "application/json")]


def test_a_body_shorter_than_its_content_length_gets_408_and_the_connection_closes(pg_server) -> None:
    fs = pg_server(extra_env=STALLED)
    for path, content_type in PATHS:  # a protocol endpoint, a page, the device flow, the admin API
        auth = f"Authorization: Bearer {fs.srv.admin_token}\r\n" if path.startswith("/admin") else ""
        with raw_connect(fs.port) as sock:
            sock.sendall(_stalled_request(path, content_type, auth))  # 10 of the 100 bytes announced
            raw = read_response(sock)  # until the server closes the connection
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), (path, raw)
        assert b"connection: close" in head.lower()
        assert json.loads(body)["error"] == "invalid_request"
    assert no_traceback(fs.log())


def test_sigterm_while_a_client_stalls_its_body_stops_the_server(pg_server) -> None:
    fs = pg_server(extra_env=STALLED)
    proc = fs.srv.procs[0]
    with raw_connect(fs.port) as sock:
        sock.sendall(_stalled_request("/token", "application/x-www-form-urlencoded"))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)  # graceful shutdown waits for the request, which the body timeout ends
        raw = read_response(sock)
    assert raw == b"" or raw.startswith(b"HTTP/1.1 408"), raw
    log = fs.log()
    assert no_traceback(log), log
    assert "500" not in raw.decode("latin-1")


def test_request_heads_are_bounded_in_time_and_size(pg_server) -> None:
    """Uvicorn (httptools) bounds neither; ``ostiary serve`` does (web/protocol.py)."""
    fs = pg_server(extra_env={"OSTIARY_SERVER__HEADER_TIMEOUT": "2"})
    with raw_connect(fs.port) as sock:  # headers that never end
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        raw = read_response(sock)
    assert raw.startswith(b"HTTP/1.1 408"), raw
    with raw_connect(fs.port) as sock:  # a connection that never sends anything
        assert read_response(sock).startswith(b"HTTP/1.1 408")
    with raw_connect(fs.port) as sock:  # a 64 KiB header (the limit is 32 KiB)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        raw = read_response(sock)
    assert raw.startswith(b"HTTP/1.1 400"), raw
    with raw_connect(fs.port) as sock:  # an ordinary request, and a second on the same connection
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer
    assert no_traceback(fs.log())
