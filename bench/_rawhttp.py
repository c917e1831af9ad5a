"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generators that must cost the server's
machine little CPU (httpx costs several hundred µs per request, and with many concurrent requests on one
client, milliseconds). Used by device_poll_bench.py and refresh_bench.py."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

__all__ = ["RawConnection", "token_request"]


class RawConnection:
    """One persistent HTTP/1.1 connection: write pre-encoded request bytes, read one response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)  # TCP_NODELAY is the default

    def usable(self) -> bool:
        """False when never opened, closed by us, or when the server's FIN has already arrived (idle close)."""
        return not (self.reader is None or self.writer is None or self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        """Send ``payload``; return (status, body). Raises on EOF, reset or a malformed answer."""
        reader, writer = self.reader, self.writer
        if reader is None or writer is None:
            raise ConnectionResetError("connection is closed")
        writer.write(payload)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length: int | None = None
        chunked = close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    break
                parts.append((await reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        elif length is not None:
            body = await reader.readexactly(length)
        else:  # neither: the body runs to the end of the connection
            body, close = await reader.read(), True
        if close:
            self.close()
        return status, body


def token_request(host: str, port: int, form: dict[str, str]) -> bytes:
    body = urlencode(form).encode()
    return (f"POST /token HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
