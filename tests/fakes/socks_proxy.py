"""A SOCKS5 proxy (RFC 1928, with RFC 1929's username/password when asked), for the tests
of RELAY_PROXY and USER_CONTENT_REQUEST_PROXY set to socks5:// URLs.

It serves CONNECT only, which is all an HTTP client asks of a SOCKS proxy, and records each
one as (username, host, port): `host` is the name exactly as the client sent it, so a test can
tell that names reached the proxy unresolved.

    with SocksProxy(username="u", password="p") as proxy:
        ...   # RELAY_PROXY=f"socks5://u:p@127.0.0.1:{proxy.port}"
        assert proxy.connects == [("u", "127.0.0.1", 8001)]
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

from tests.fakes.stream_server import StreamServer, pipe

__all__ = ["SocksProxy"]

NO_AUTH, USERNAME_PASSWORD, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CONNECT = 0x01
IPV4, DOMAIN, IPV6 = 0x01, 0x03, 0x04
SUCCEEDED, GENERAL_FAILURE, COMMAND_NOT_SUPPORTED = 0x00, 0x01, 0x07


class SocksProxy(StreamServer):
    thread_name = "socks-proxy"

    def __init__(
        self, username: str | None = None, password: str | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.credentials = (username, password) if username is not None else None
        super().__init__(host)
        self.connects: list[tuple[str | None, str, int]] = []
        self.refused_logins = 0

    def url(self, scheme: str = "socks5") -> str:
        if self.credentials is None:
            return f"{scheme}://{self.host}:{self.port}"
        username, password = self.credentials
        return f"{scheme}://{username}:{password}@{self.host}:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, OSError, ValueError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        if version != 5:
            return
        methods = set(await reader.readexactly(count))
        wanted = USERNAME_PASSWORD if self.credentials else NO_AUTH
        if wanted not in methods:
            writer.write(bytes([5, NO_ACCEPTABLE]))
            return
        writer.write(bytes([5, wanted]))
        username = await self._login(reader, writer) if self.credentials else None
        if self.credentials and username is None:
            return
        _, command, _, kind = await reader.readexactly(4)
        host = await _read_address(reader, kind)
        (port,) = struct.unpack(">H", await reader.readexactly(2))
        if command != CONNECT:
            writer.write(_reply(COMMAND_NOT_SUPPORTED))
            return
        self.connects.append((username, host, port))
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.write(_reply(GENERAL_FAILURE))
            return
        writer.write(_reply(SUCCEEDED))
        await writer.drain()
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _login(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str | None:
        assert self.credentials is not None
        _, length = await reader.readexactly(2)
        username = (await reader.readexactly(length)).decode()
        (length,) = await reader.readexactly(1)
        password = (await reader.readexactly(length)).decode()
        if (username, password) != self.credentials:
            self.refused_logins += 1
            writer.write(bytes([1, 1]))
            return None
        writer.write(bytes([1, 0]))
        return username


async def _read_address(reader: asyncio.StreamReader, kind: int) -> str:
    if kind == IPV4:
        return str(ipaddress.IPv4Address(await reader.readexactly(4)))
    if kind == IPV6:
        return str(ipaddress.IPv6Address(await reader.readexactly(16)))
    if kind == DOMAIN:
        (length,) = await reader.readexactly(1)
        return (await reader.readexactly(length)).decode("idna")
    raise ValueError(f"unknown address type {kind}")


def _reply(status: int) -> bytes:
    return bytes([5, status, 0, IPV4, 0, 0, 0, 0, 0, 0])
