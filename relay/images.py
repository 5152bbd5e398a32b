"""Images a client names by URL: their size (token counts) and bytes (inline upstreams).

The gateway fetches what a client names, so every fetch is guarded against reaching the
gateway's own network (SSRF): only http(s); a host must resolve to public addresses only,
and the connection goes to the addresses that were checked (the resolver filters, so DNS
cannot answer differently in between); literal IPs, which aiohttp never resolves, are
checked apart; each redirect hop is checked again. Time and bytes are bounded.
`IMAGE_FETCH_ALLOW_PRIVATE` lifts the address check for operators who serve images from
their own network.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import logging
import re
import socket
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import imagesize
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings
from yarl import URL

from relay.errors import RelayError

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
# OpenAI refuses images over 20 MB; nothing larger is worth holding in memory.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# A size lives in the header: JPEG's can follow a large EXIF block, hence the later steps.
PROBE_STEPS = (16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024)
# A count only sizes the reservation, so it never holds a request longer than this.
MEASURE_TIMEOUT_SECONDS = 5.0
MAX_CONCURRENT_FETCHES = 4
MAX_REMOTE_IMAGES = 16  # per request; the rest are not fetched
SIZE_CACHE_ENTRIES = 1024
USER_AGENT = "oneapi-py image fetcher"
# `data:<type>[;param=value...];base64,<data>`
DATA_URL = re.compile(
    r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+)(?:;[^;,]*)*;base64,(?P<data>.*)$", re.DOTALL
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Size = tuple[int, int]
T = TypeVar("T")


class ImageFetchError(Exception):
    """A named image could not be had; the message says why, for the client."""


@dataclass(frozen=True)
class InlineImage:
    media_type: str
    data: str  # base64


# ---------------------------------------------------------------------- image bytes


def sniff_media_type(head: bytes) -> str | None:
    """The raster formats One API decodes (PNG, JPEG, GIF, WebP), by their magic bytes."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def dimensions(data: bytes) -> Size | None:
    """Width and height from the header, None while it is incomplete or not an image.
    Only sniffed raster formats reach the parser (no SVG/XML from strangers)."""
    if sniff_media_type(data) is None:
        return None
    width, height = imagesize.get(io.BytesIO(data), exif_rotation=False)
    return (width, height) if width > 0 and height > 0 else None


def decode_data_url(url: str) -> tuple[str, bytes]:
    match = DATA_URL.match(url)
    if match is None:
        raise ImageFetchError("image data: URLs must be base64 (data:<type>;base64,...)")
    try:
        return match["media_type"], base64.b64decode(match["data"], validate=False)
    except (binascii.Error, ValueError):
        raise ImageFetchError("image data: URL is not valid base64") from None


# ---------------------------------------------------------------------- the guard


def address_allowed(host: str) -> bool:
    """True for a public unicast address. IPv4 inside IPv6 (mapped, 6to4, Teredo) is judged
    as the IPv4 address it carries: Python 3.11 calls ::ffff:127.0.0.1 neither loopback nor
    private."""
    if settings.IMAGE_FETCH_ALLOW_PRIVATE:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            address = embedded
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver and keeps only allowed addresses: aiohttp then
    connects to exactly these."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [result for result in results if address_allowed(result["host"])]
        if not allowed:
            raise ImageFetchError(f"image host {host} resolves to a private address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def checked_url(url: str | URL) -> URL:
    """The URL if its scheme and (literal IP) host may be fetched; names are checked when
    the resolver answers."""
    parsed = url if isinstance(url, URL) else URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ImageFetchError("image URLs must be http(s) or base64 data: URLs")
    host = parsed.host.strip("[]")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return parsed  # a name
    if not address_allowed(host):
        raise ImageFetchError(f"image host {host} is a private address")
    return parsed


_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


def _session() -> aiohttp.ClientSession:
    """The image session of the running loop: its own connector, whose resolver guards."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(), limit=100)
        session = aiohttp.ClientSession(
            connector=connector, trust_env=False, headers={"User-Agent": USER_AGENT}
        )
        _sessions[loop] = session
    return session


async def close_session() -> None:
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


async def _get(url: URL) -> aiohttp.ClientResponse:
    """GET, following at most MAX_REDIRECTS redirects, every hop checked."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = await _session().get(checked_url(url), allow_redirects=False)
        except aiohttp.ClientConnectorDNSError as error:
            cause = error.__cause__
            if isinstance(cause, ImageFetchError):
                raise cause from None
            raise ImageFetchError(f"image host {url.host} could not be resolved") from None
        except ImageFetchError:
            raise
        except aiohttp.ClientError as error:
            raise ImageFetchError(f"image could not be fetched: {error}") from None
        if response.status not in REDIRECT_STATUSES:
            if response.status != 200:
                response.release()
                raise ImageFetchError(f"image URL answered HTTP {response.status}")
            return response
        location = response.headers.get("Location", "")
        response.release()
        if not location:
            raise ImageFetchError("image URL redirected without a Location")
        url = url.join(URL(location))
    raise ImageFetchError(f"image URL redirected more than {MAX_REDIRECTS} times")


async def _fetch(url: str, *, size_only: bool) -> tuple[bytes, str]:
    """The body and Content-Type. With `size_only`, reading stops once the header gives
    the size. Over MAX_IMAGE_BYTES is refused, by Content-Length or as it streams."""
    response = await _get(URL(url))
    try:
        length = response.content_length
        if length is not None and length > MAX_IMAGE_BYTES:
            raise ImageFetchError(f"image is larger than {MAX_IMAGE_BYTES} bytes")
        body = bytearray()
        steps = iter(PROBE_STEPS)
        probe_at = next(steps)
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > MAX_IMAGE_BYTES:
                raise ImageFetchError(f"image is larger than {MAX_IMAGE_BYTES} bytes")
            if size_only and len(body) >= probe_at:
                if dimensions(bytes(body)) is not None:
                    break
                probe_at = next(steps, MAX_IMAGE_BYTES + 1)
        return bytes(body), response.headers.get("Content-Type", "")
    except aiohttp.ClientError as error:
        raise ImageFetchError(f"image could not be fetched: {error}") from None
    finally:
        response.close()  # closes rather than drains what was not read


async def _bounded(awaitable: Awaitable[T], seconds: float) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise ImageFetchError(f"image fetch took longer than {seconds:g} s") from None


# ---------------------------------------------------------------------- sizes


class _SizeCache:
    """URL → size, least recently used dropped first."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._data: OrderedDict[str, Size] = OrderedDict()

    def get(self, url: str) -> Size | None:
        size = self._data.get(url)
        if size is not None:
            self._data.move_to_end(url)
        return size

    def put(self, url: str, size: Size) -> None:
        self._data[url] = size
        self._data.move_to_end(url)
        while len(self._data) > self.entries:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


size_cache = _SizeCache(SIZE_CACHE_ENTRIES)


async def fetch_size(url: str) -> Size:
    """The size of the image at an http(s) URL, reading only as far as its header."""
    cached = size_cache.get(url)
    if cached is not None:
        return cached
    seconds = min(float(settings.USER_CONTENT_REQUEST_TIMEOUT), MEASURE_TIMEOUT_SECONDS)
    body, _ = await _bounded(_fetch(url, size_only=True), seconds)
    size = dimensions(body)
    if size is None:
        raise ImageFetchError("image URL did not return a PNG, JPEG, GIF or WebP image")
    size_cache.put(url, size)
    return size


def image_size(url: str) -> Size:
    """The size of a base64 data: URL image, decoded locally."""
    _, data = decode_data_url(url)
    size = dimensions(data)
    if size is None:
        raise ImageFetchError("image data: URL is not a PNG, JPEG, GIF or WebP image")
    return size


async def fetch_image(url: str) -> InlineImage:
    """The bytes of the image at an http(s) URL, base64, with their media type."""
    seconds = float(settings.USER_CONTENT_REQUEST_TIMEOUT)
    body, content_type = await _bounded(_fetch(url, size_only=False), seconds)
    media_type = sniff_media_type(body)
    if media_type is None:
        declared = content_type.split(";", 1)[0].strip().lower()
        if not declared.startswith("image/"):
            raise ImageFetchError("image URL did not return an image")
        media_type = declared
    return InlineImage(media_type, base64.b64encode(body).decode("ascii"))


async def gather_bounded(awaitables: Iterable[Awaitable[T]]) -> list[T | BaseException]:
    """Run concurrently, at most MAX_CONCURRENT_FETCHES at a time; errors are returned."""
    gate = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)

    async def run(awaitable: Awaitable[T]) -> T:
        async with gate:
            return await awaitable

    return await asyncio.gather(*(run(a) for a in awaitables), return_exceptions=True)


# ---------------------------------------------------------------------- inlining

# The images fetched for the request being relayed: an adaptor's async `prepare` fills it,
# its synchronous `build_request` (same task, right after) reads it. A retry on another
# channel finds what the first try fetched.
_inlined: ContextVar[dict[str, InlineImage] | None] = ContextVar("inlined_images", default=None)


def is_remote(url: object) -> bool:
    return isinstance(url, str) and url.startswith(("http://", "https://"))


async def prefetch(urls: Iterable[str]) -> None:
    """Fetch the http(s) images an upstream needs inline; the first failure is a 400."""
    fetched = _inlined.get()
    if fetched is None:
        fetched = {}
        _inlined.set(fetched)
    wanted = list(dict.fromkeys(url for url in urls if is_remote(url) and url not in fetched))
    if not wanted:
        return
    if len(wanted) > MAX_REMOTE_IMAGES:
        raise image_error(f"at most {MAX_REMOTE_IMAGES} image URLs are fetched per request")
    results = await gather_bounded(fetch_image(url) for url in wanted)
    for url, result in zip(wanted, results, strict=True):
        if isinstance(result, ImageFetchError):
            raise image_error(str(result))
        if isinstance(result, BaseException):
            raise result
        fetched[url] = result


def inlined(url: str) -> InlineImage:
    """The prefetched image of an http(s) URL."""
    fetched = _inlined.get() or {}
    image = fetched.get(url)
    if image is None:
        raise image_error("image URL was not fetched")
    return image


def image_error(message: str) -> RelayError:
    return RelayError(400, message, code="invalid_image_url")
