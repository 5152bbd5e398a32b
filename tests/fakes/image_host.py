"""A web server serving images of any size, for the image fetcher's tests.

/png/<w>x<h>.png        a PNG of that size (header and an empty IDAT)
/jpeg/<w>x<h>.jpg       a JPEG header of that size
/exif/<w>x<h>.jpg       the same after ~300 KB of APP1 (EXIF) segments
/redirect?to=<url>      302 to <url>
/big                    21 MiB, Content-Length announced
/big-chunked            21 MiB, chunked (no Content-Length)
/slow                   answers after 3 s
/drip                   a PNG header, then a byte a second
/page.html              text/html
/missing                404
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.server import FakeServer, RecordedRequest

BIG = 21 * 1024 * 1024


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int, exif_bytes: int = 0) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b""
    while exif_bytes > 0:  # a segment holds at most 65533 bytes
        size = min(exif_bytes, 60_000)
        app1 += b"\xff\xe1" + struct.pack(">H", size + 2) + b"\x00" * size
        exif_bytes -= size
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    sof += b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + app1 + sof + b"\xff\xd9"


def _size(name: str) -> tuple[int, int]:
    width, height = name.split(".", 1)[0].split("x")
    return int(width), int(height)


class FakeImageHost(FakeServer[RecordedRequest]):
    thread_name: ClassVar[str] = "fake-image-host"
    handler_cancellation: ClassVar[bool] = True

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        kind, name = parts[0], parts[-1]
        if kind == "png":
            return web.Response(body=png(*_size(name)), content_type="image/png")
        if kind == "jpeg":
            return web.Response(body=jpeg(*_size(name)), content_type="image/jpeg")
        if kind == "exif":
            return web.Response(body=jpeg(*_size(name), 300_000), content_type="image/jpeg")
        if kind == "redirect":
            raise web.HTTPFound(request.query["to"])
        if kind == "big":
            return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"\x00" * BIG)
        if kind == "big-chunked":
            return await self._stream(request, [b"\x00" * (1024 * 1024)] * 21)
        if kind == "slow":
            await self._sleep(3)
            return web.Response(body=png(10, 10), content_type="image/png")
        if kind == "drip":
            return await self._stream(request, [b"\x89PNG"] + [b"\x00"] * 10, pause=1.0)
        if kind == "page.html":
            return web.Response(text="<html></html>", content_type="text/html")
        return web.Response(status=404)

    async def _stream(self, request: web.Request, chunks: list[bytes], pause: float = 0) -> Any:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
            if pause:
                await self._sleep(pause)
        await response.write_eof()
        return response
