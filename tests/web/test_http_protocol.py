"""web/protocol.py's response path (``OneWriteCycle``): the same bytes as Uvicorn's, with the head of a response
of known length sent in one write with its body; streamed, empty and HEAD responses and bad headers as Uvicorn
handles them. Driven through the protocol with an in-memory transport (no socket, no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from ostiary.web.protocol import BoundedHttpToolsProtocol, OneWriteCycle


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


Messages = list[dict[str, Any]]


async def exchange(messages: Messages, request: bytes = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
                   cycles: list[type] | None = None) -> tuple[list[bytes], bool]:
    """Send ``request`` on a fresh connection to an app that answers with ``messages``; the transport's writes
    and whether it was closed."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        for message in messages:
            await send(dict(message))
            await asyncio.sleep(0)  # as a streaming app would: the loop runs between chunks

    config = Config(app=app, log_config=None, access_log=False, server_header=False, date_header=False,
                    lifespan="off")
    config.load()
    proto = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                     _loop=asyncio.get_running_loop())
    transport = Transport()
    proto.connection_made(transport)
    try:
        proto.data_received(request)
        cycle = proto.cycle
        assert cycle is not None
        if cycles is not None:
            cycles.append(type(cycle))
        for _ in range(1000):
            if cycle.response_complete or transport.closed:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        closed = transport.closed
    finally:
        proto.connection_lost(None)
    return transport.writes, closed


JSON_HEAD = [(b"content-type", b"application/json"), (b"content-length", b"11"), (b"cache-control", b"no-store")]


async def test_a_response_of_known_length_is_one_write_of_head_and_body() -> None:
    cycles: list[type] = []
    writes, closed = await exchange([{"type": "http.response.start", "status": 200, "headers": JSON_HEAD},
                                     {"type": "http.response.body", "body": b'{"a":"bcd"}'}], cycles=cycles)
    assert cycles == [OneWriteCycle]
    assert writes == [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n"
                      b"cache-control: no-store\r\n\r\n" + b'{"a":"bcd"}']
    assert not closed


async def test_keep_alive_and_a_second_request_on_the_connection() -> None:
    request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    writes, closed = await exchange([{"type": "http.response.start", "status": 200, "headers": JSON_HEAD},
                                     {"type": "http.response.body", "body": b'{"a":"bcd"}'}], request * 2)
    assert len(writes) == 2 and writes[0] == writes[1] and not closed


async def test_connection_close_closes_after_the_body() -> None:
    headers = [*JSON_HEAD, (b"connection", b"close")]
    writes, closed = await exchange([{"type": "http.response.start", "status": 200, "headers": headers},
                                     {"type": "http.response.body", "body": b'{"a":"bcd"}'}])
    assert len(writes) == 1 and writes[0].endswith(b"connection: close\r\n\r\n" + b'{"a":"bcd"}')
    assert closed
    writes, closed = await exchange([{"type": "http.response.start", "status": 200, "headers": JSON_HEAD},
                                     {"type": "http.response.body", "body": b'{"a":"bcd"}'}],
                                    b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n")  # HTTP/1.0: no keep-alive
    assert len(writes) == 1 and b"connection: close\r\n" in writes[0] and closed


async def test_a_body_in_several_chunks_follows_the_head() -> None:
    headers = [(b"content-length", b"6")]
    writes, _ = await exchange([{"type": "http.response.start", "status": 200, "headers": headers},
                                {"type": "http.response.body", "body": b"abc", "more_body": True},
                                {"type": "http.response.body", "body": b"def"}])
    assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc", b"def"]


async def test_streamed_empty_and_head_responses_are_uvicorns() -> None:
    writes, _ = await exchange([{"type": "http.response.start", "status": 200, "headers": []},
                                {"type": "http.response.body", "body": b"abc", "more_body": True},
                                {"type": "http.response.body", "body": b""}])
    assert b"".join(writes) == (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                                b"3\r\nabc\r\n0\r\n\r\n")
    assert writes[0] == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"  # a stream's head is not held
    writes, _ = await exchange([{"type": "http.response.start", "status": 204, "headers": []},
                                {"type": "http.response.body", "body": b""}])
    assert b"".join(writes) == b"HTTP/1.1 204 No Content\r\n\r\n"
    writes, _ = await exchange([{"type": "http.response.start", "status": 200, "headers": JSON_HEAD},
                                {"type": "http.response.body", "body": b'{"a":"bcd"}'}],
                               b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"".join(writes) == (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n"
                                b"cache-control: no-store\r\n\r\n")


@pytest.mark.parametrize(("name", "value"), [(b"x-bad name", b"v"), (b"x-ok", b"v\r\nx-injected: 1"),
                                             (b"x-ok", b"v\x00")])
async def test_a_header_uvicorn_refuses_is_refused(name: bytes, value: bytes) -> None:
    """Uvicorn raises for such a header (the application's error) and closes the connection without a byte of
    the response; so does the check over the joined names and values."""
    writes, closed = await exchange([{"type": "http.response.start", "status": 200,
                                      "headers": [*JSON_HEAD, (name, value)]},
                                     {"type": "http.response.body", "body": b'{"a":"bcd"}'}])
    assert writes == [] and closed


async def test_a_body_longer_or_shorter_than_its_content_length_is_an_error() -> None:
    writes, closed = await exchange([{"type": "http.response.start", "status": 200, "headers": JSON_HEAD},
                                     {"type": "http.response.body", "body": b'{"a":"bcdefgh"}'}])
    assert not any(b"bcdefgh" in w for w in writes) and closed
    writes, closed = await exchange([{"type": "http.response.start", "status": 200, "headers": JSON_HEAD},
                                     {"type": "http.response.body", "body": b'{"a"}'}])
    assert closed
