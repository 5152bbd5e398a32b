"""An HTTP forward proxy, as RELAY_PROXY and USER_CONTENT_REQUEST_PROXY point at.

It speaks what clients send a proxy: absolute-form requests (`GET http://host:port/path
HTTP/1.1`), forwarded in origin form with `Connection: close` so each one gets its own
upstream connection, and `CONNECT host:port` tunnels (HTTPS). It records every request's
method and target, so a test can tell that traffic went through it:

    with HttpProxy() as proxy:
        ...                    # point the process at proxy.url
        assert ("POST", "http://127.0.0.1:8001/v1/chat/completions") in proxy.requests

Like the other fakes it runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from tests.fakes.stream_server import StreamServer, pipe

__all__ = ["HttpProxy"]

HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"}


class HttpProxy(StreamServer):
    thread_name = "http-proxy"

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.requests: list[tuple[str, str]] = []  # (method, target) in arrival order

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        request_line, *header_lines = head[:-4].split(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        self.requests.append((method, target))
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
            return
        parts = urlsplit(target)
        # aiohttp names a ws:// URL as it is (wss:// goes through CONNECT).
        if parts.scheme not in ("http", "ws") or not parts.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = [
            line
            for line in header_lines
            if line.split(b":", 1)[0].strip().lower() not in HOP_BY_HOP
        ]
        # A WebSocket handshake (Upgrade) keeps its connection: the tunnel then carries frames.
        upgrade = any(line.split(b":", 1)[0].strip().lower() == b"upgrade" for line in headers)
        connection = b"Connection: Upgrade" if upgrade else b"Connection: close"
        forwarded = b"\r\n".join(
            [f"{method} {path} {version}".encode("latin-1"), *headers, connection]
        )
        await self._forward(
            parts.hostname, parts.port or 80, forwarded + b"\r\n\r\n", reader, writer
        )

    async def _forward(
        self,
        host: str,
        port: int,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        upstream_writer.write(head)
        # The request body follows the head; the answer ends when the upstream closes
        # (Connection: close), and so does the client's connection.
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except (OSError, ValueError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )


def _name(header_line: bytes) -> bytes:
    return header_line.split(b":", 1)[0].strip().lower()
