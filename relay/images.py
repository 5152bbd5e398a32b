"""Images a client names by URL: their size (token counts) and bytes (inline upstreams).

The gateway fetches what a client names, so every fetch is guarded against reaching the
gateway's own network (SSRF): only http(s); a host must resolve to public addresses only,
and the connection goes to the addresses that were checked (the resolver filters, so DNS
cannot answer differently in between); literal IPs, which aiohttp never resolves, are
checked apart; each redirect hop is checked again. Time and bytes are bounded.
`IMAGE_FETCH_ALLOWED_NETWORKS` lets fetches reach the private networks an operator serves
images from; `IMAGE_FETCH_ALLOW_PRIVATE` lifts the address check altogether.

With `USER_CONTENT_REQUEST_PROXY` (One API's setting) every fetch goes through that HTTP(S) or
SOCKS5 proxy, which then resolves the image hosts: schemes, literal IPs and redirect hops are still
checked here, but which addresses a name may reach is the proxy's policy (the operator's
egress), since this process no longer sees them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import io
import ipaddress
import logging
import re
import socket
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import imagesize
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings
from yarl import URL

from oneapi import proxies
from relay.errors import RelayError

if TYPE_CHECKING:
    from relay.http import Request

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
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Size = tuple[int, int]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


class ImageFetchError(Exception):
    """A named image could not be had; the message says why, for the client."""


@dataclass(frozen=True)
class InlineImage:
    media_type: str
    data: str  # base64


# ---------------------------------------------------------------------- image parts


def image_reference(part: dict[str, Any]) -> tuple[str, str] | None:
    """(url, detail) of an `image_url` part (or a Responses-style `input_image`)."""
    image = part.get("image_url")
    if isinstance(image, dict):
        url, detail = image.get("url"), image.get("detail")
    else:
        url, detail = image, part.get("detail")
    if not isinstance(url, str) or not url:
        return None
    return url, detail if isinstance(detail, str) else ""


def image_parts(messages: Any) -> Iterator[tuple[str, str]]:
    """(url, detail) of every image part of chat messages, in order."""
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") in ("image_url", "input_image"):
                reference = image_reference(part)
                if reference is not None:
                    yield reference


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


@functools.cache
def _networks(spec: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def allowed_networks() -> tuple[IPNetwork, ...]:
    """`IMAGE_FETCH_ALLOWED_NETWORKS`: private networks an operator lets fetches reach."""
    return _networks(tuple(settings.IMAGE_FETCH_ALLOWED_NETWORKS))


def address_allowed(host: str) -> bool:
    """True for a public unicast address. IPv4 inside IPv6 (mapped, 6to4, Teredo, NAT64) is judged
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
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            address = embedded
    if any(address in network for network in allowed_networks()):
        return True
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


def content_proxy() -> str | None:
    return settings.USER_CONTENT_REQUEST_PROXY or None


def new_session() -> aiohttp.ClientSession:
    """A session for one request's images: its own connector, whose resolver guards (unless
    a proxy resolves the image hosts: the resolver would only see the proxy's own name). Not
    shared: image hosts are rarely the same twice, and nothing outlives the request."""
    proxy = content_proxy()
    resolver = None if proxy else GuardedResolver()
    connector = proxies.aiohttp_connector(proxy, resolver=resolver, limit=MAX_CONCURRENT_FETCHES)
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, headers={"User-Agent": USER_AGENT}
    )


async def _get(session: aiohttp.ClientSession, url: URL) -> aiohttp.ClientResponse:
    """GET, following at most MAX_REDIRECTS redirects, every hop checked."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = await session.get(
                checked_url(url),
                allow_redirects=False,
                proxy=proxies.aiohttp_request_proxy(content_proxy()),
            )
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


async def _fetch(session: aiohttp.ClientSession, url: str, *, size_only: bool) -> tuple[bytes, str]:
    """The body and Content-Type. With `size_only`, reading stops once the header gives
    the size. Over MAX_IMAGE_BYTES is refused, by Content-Length or as it streams."""
    response = await _get(session, URL(url))
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
                probe_at = next(steps, 0)
                if not probe_at:
                    raise ImageFetchError(f"no image size in the first {len(body)} bytes")
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


async def fetch_size(session: aiohttp.ClientSession, url: str) -> Size:
    """The size of the image at an http(s) URL, reading only as far as its header."""
    cached = size_cache.get(url)
    if cached is not None:
        return cached
    seconds = min(float(settings.USER_CONTENT_REQUEST_TIMEOUT), MEASURE_TIMEOUT_SECONDS)
    body, _ = await _bounded(_fetch(session, url, size_only=True), seconds)
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


async def fetch_image(session: aiohttp.ClientSession, url: str) -> InlineImage:
    """The bytes of the image at an http(s) URL, base64, with their media type."""
    seconds = float(settings.USER_CONTENT_REQUEST_TIMEOUT)
    body, content_type = await _bounded(_fetch(session, url, size_only=False), seconds)
    media_type = sniff_media_type(body)
    if media_type is None:
        declared = content_type.split(";", 1)[0].strip().lower()
        if not declared.startswith("image/"):
            raise ImageFetchError("image URL did not return an image")
        media_type = declared
    return InlineImage(media_type, base64.b64encode(body).decode("ascii"))


async def _each(
    urls: list[str], fetch: Callable[[aiohttp.ClientSession, str], Awaitable[T]]
) -> list[T | ImageFetchError]:
    """`fetch` for every URL, at most MAX_CONCURRENT_FETCHES at a time, in one session;
    a refusal or failure is returned in its URL's place."""
    gate = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)

    async def run(session: aiohttp.ClientSession, url: str) -> T | ImageFetchError:
        async with gate:
            try:
                return await fetch(session, url)
            except ImageFetchError as error:
                return error
            except ValueError:  # yarl's verdict on a malformed URL or Location
                return ImageFetchError("image URL is not a valid URL")

    async with new_session() as session:
        return await asyncio.gather(*(run(session, url) for url in urls))


async def measure_all(urls: list[str]) -> list[Size | ImageFetchError]:
    """The size of each http(s) image, fetched concurrently as far as its header."""
    cached = {url: size_cache.get(url) for url in urls}
    missing = [url for url, size in cached.items() if size is None]
    fetched = dict(zip(missing, await _each(missing, fetch_size), strict=True)) if missing else {}
    return [cached[url] or fetched[url] for url in urls]


async def fetch_all(urls: list[str]) -> list[InlineImage | ImageFetchError]:
    """The bytes of each http(s) image, fetched concurrently."""
    return await _each(urls, fetch_image)


# ---------------------------------------------------------------------- inlining

# The images fetched for each request being relayed, kept until the request object is
# collected: an adaptor's async `prepare` fetches them, its synchronous `build_request`
# reads them inside `inlining(request)`. A retry on another channel finds them fetched.
_fetched: dict[int, dict[str, InlineImage]] = {}
_active: ContextVar[dict[str, InlineImage] | None] = ContextVar("inline_images", default=None)


def is_remote(url: object) -> bool:
    return isinstance(url, str) and url.startswith(("http://", "https://"))


def _fetched_for(request: Request) -> dict[str, InlineImage]:
    key = id(request)
    fetched = _fetched.get(key)
    if fetched is None:
        fetched = _fetched[key] = {}
        weakref.finalize(request, _fetched.pop, key, None)
    return fetched


async def prefetch(request: Request, urls: Iterable[str]) -> None:
    """Fetch the http(s) images an upstream needs inline; the first failure is a 400."""
    fetched = _fetched_for(request)
    wanted = list(dict.fromkeys(url for url in urls if is_remote(url) and url not in fetched))
    if not wanted:
        return
    if len(wanted) > MAX_REMOTE_IMAGES:
        raise image_error(f"at most {MAX_REMOTE_IMAGES} image URLs are fetched per request")
    for url, result in zip(wanted, await fetch_all(wanted), strict=True):
        if isinstance(result, ImageFetchError):
            raise image_error(str(result))
        fetched[url] = result


async def prefetch_chat_images(request: Request) -> None:
    """Prefetch the http(s) images of a chat request (OpenAI's format), for an adaptor's
    `prepare`."""
    if b'"http' not in request.body:  # spares parsing the many bodies without any URL
        return
    try:
        payload = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return
    if isinstance(payload, dict):
        await prefetch(request, (url for url, _ in image_parts(payload.get("messages"))))


@contextlib.contextmanager
def inlining(request: Request) -> Iterator[None]:
    """Within: `inlined` answers from the images prefetched for `request`."""
    token = _active.set(_fetched.get(id(request)))
    try:
        yield
    finally:
        _active.reset(token)


def inlined(url: str) -> InlineImage | None:
    """The prefetched image of an http(s) URL; None when none was (the adaptor then does
    what it did before: refuses, or passes the URL on)."""
    fetched = _active.get()
    return fetched.get(url) if fetched else None


def image_error(message: str) -> RelayError:
    return RelayError(400, message, code="invalid_image_url")
