"""web/http.py's form reader and JSON responses, against what they replaced: ``parse_qsl`` (keep_blank_values,
errors="strict", 200 fields), Starlette's ``Request.stream`` and ``Response``; and core's scope-token check
against RFC 6749 §3.3's NQCHAR, character by character."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ostiary.core.errors import InvalidRequest
from ostiary.core.requests import is_scope_token, scope_set
from ostiary.web.http import NO_STORE, RequestTooLarge, WrongContentType, json_response, read_form

FORM = b"application/x-www-form-urlencoded"


def request(body: bytes | list[bytes], ctype: bytes | None = FORM, length: bytes | None = None) -> Request:
    chunks = [body] if isinstance(body, bytes) else list(body)
    headers = [(b"content-type", ctype)] if ctype is not None else []
    if length is not None:
        headers.append((b"content-length", length))
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/token", "headers": headers}, receive)


BODIES = [b"", b"a=1", b"a=1&b=2", b"a=1&&b=2&", b"&a", b"a", b"a=", b"=b", b"=", b"a=1=2", b"a+b=c+d", b"a%20b=%3A%2F",
          b"scope=api%3Aread+other", b"x=%E2%82%AC", b"x=%zz", b"x=%", b"x=%4", b"%41=%42", b"a=1;b=2", b"a=\xe2\x82\xac",
          b"grant_type=client_credentials&scope=api%3Aread", b"+=+", b"%2B=%2b"]


@pytest.mark.parametrize("body", BODIES)
async def test_the_form_is_what_parse_qsl_reads(body: bytes) -> None:
    expected = tuple(parse_qsl(body.decode(), keep_blank_values=True, errors="strict", max_num_fields=200))
    assert await read_form(request(body), 65536) == expected


async def test_random_forms_are_what_parse_qsl_reads() -> None:
    rng = random.Random(15)
    alphabet = "ab=&+%2041E2C3zé\x01"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        try:
            expected: Any = tuple(parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=200))
            if any("\x00" in n or "\x00" in v for n, v in expected):
                expected = InvalidRequest
        except UnicodeDecodeError:
            expected = InvalidRequest
        if expected is InvalidRequest:
            with pytest.raises(InvalidRequest):
                await read_form(request(text.encode()), 65536)
        else:
            assert await read_form(request(text.encode()), 65536) == expected, text


async def test_refusals() -> None:
    with pytest.raises(InvalidRequest, match="NUL"):
        await read_form(request(b"a=%00"), 65536)
    with pytest.raises(InvalidRequest, match="UTF-8"):
        await read_form(request(b"a=%ff"), 65536)
    with pytest.raises(InvalidRequest, match="UTF-8"):
        await read_form(request(b"a=\xff"), 65536)
    await read_form(request(b"&".join([b"a=1"] * 200)), 65536)
    with pytest.raises(InvalidRequest, match="too many"):
        await read_form(request(b"&".join([b"a=1"] * 201)), 65536)
    with pytest.raises(RequestTooLarge):
        await read_form(request([b"a=" + b"1" * 10, b"2" * 10]), 15)
    with pytest.raises(RequestTooLarge):
        await read_form(request(b"a=1", length=b"100"), 15)
    with pytest.raises(RequestTooLarge):
        await read_form(request(b"a=1", length=b"-1"), 15)
    with pytest.raises(WrongContentType):
        await read_form(request(b"a=1", ctype=b"application/json"), 15)
    with pytest.raises(WrongContentType):
        await read_form(request(b"a=1", ctype=None), 15)
    with pytest.raises(WrongContentType):
        await read_form(request(b"a=1", ctype=FORM + b"; charset=latin-1"), 15)
    assert await read_form(request(b"a=1", ctype=b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"), 15) == (
        ("a", "1"),)


async def test_a_body_in_chunks_and_read_again() -> None:
    req = request([b"a=1&", b"b=", b"2"])
    assert await read_form(req, 100) == (("a", "1"), ("b", "2"))
    assert await req.body() == b"a=1&b=2"  # Starlette's own reader still finds it
    assert await read_form(req, 100) == (("a", "1"), ("b", "2"))


async def test_a_client_gone_before_its_body() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    req = Request({"type": "http", "method": "POST", "path": "/token", "headers": [(b"content-type", FORM)]},
                  receive)
    with pytest.raises(ClientDisconnect):
        await read_form(req, 100)


@pytest.mark.parametrize(("status", "headers"), [(200, NO_STORE), (400, {"Cache-Control": "no-store",
                                                                         "WWW-Authenticate": "Basic"}),
                                                 (200, None), (201, {"X-A": "b"}), (204, None),
                                                 (200, {"Content-Type": "application/jwt"})])
def test_json_responses_are_starlettes(status: int, headers: dict[str, str] | None) -> None:
    data = {"a": [1, "é"]}
    ours = json_response(data, status, headers)
    theirs = Response(b'{"a":[1,"\xc3\xa9"]}', status_code=status, headers=dict(headers or {}),
                      media_type="application/json")
    assert (ours.status_code, ours.body, ours.raw_headers) == (theirs.status_code, theirs.body, theirs.raw_headers)
    ours.headers["x-later"] = "1"  # a route may still add a header
    assert (b"x-later", b"1") in ours.raw_headers


def test_scope_tokens_are_nqchar() -> None:
    for code in range(0x250):
        c = chr(code)
        nqchar = code == 0x21 or 0x23 <= code <= 0x5B or 0x5D <= code <= 0x7E
        assert is_scope_token(c) is nqchar, hex(code)
        assert is_scope_token("a" + c + "b") is nqchar
    assert not is_scope_token("")
    assert not is_scope_token("a\n")
    assert scope_set("a b:c") == frozenset({"a", "b:c"})
    for bad in ("a  b", " a", "a\tb", 'a"'):
        with pytest.raises(InvalidRequest):
            scope_set(bad)
