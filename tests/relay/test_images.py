"""Image token counts (OpenAI's vision formula) and the SSRF-guarded image fetcher.

The fetcher is driven against a real local HTTP server; being on 127.0.0.1, that server is
refused unless a test allows loopback (IMAGE_FETCH_ALLOW_PRIVATE or _ALLOWED_NETWORKS)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import orjson
import pytest
from django.test import override_settings

from oneapi.options import OptionSnapshot
from relay import images, usage
from relay.errors import RelayError
from relay.http import Request
from tests.fakes.http_proxy import HttpProxy
from tests.fakes.image_host import FakeImageHost, jpeg, png
from tests.fakes.socks_proxy import SocksProxy

ALLOW_PRIVATE = override_settings(IMAGE_FETCH_ALLOW_PRIVATE=True)


@pytest.fixture(scope="module")
def host() -> Iterator[FakeImageHost]:
    with FakeImageHost() as server:
        yield server


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    images.size_cache.clear()


def measure(url: str) -> images.Size | images.ImageFetchError:
    return asyncio.run(images.measure_all([url]))[0]


def fetch(url: str) -> images.InlineImage | images.ImageFetchError:
    return asyncio.run(images.fetch_all([url]))[0]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def refusal(result: object) -> str:
    assert isinstance(result, images.ImageFetchError), result
    return str(result)


# ---------------------------------------------------------------------- the formula


@pytest.mark.parametrize(
    ("width", "height", "detail", "model", "tokens"),
    [
        # OpenAI's published examples (vision guide, "Calculating costs").
        (1024, 1024, "high", "gpt-4o", 765),
        (2048, 4096, "high", "gpt-4o", 1105),
        (4096, 8192, "low", "gpt-4o", 85),
        # auto and no detail are billed as high, as One API measured: 125x50 is one tile.
        (125, 50, "auto", "gpt-4o", 255),
        (125, 50, "", "gpt-4-turbo", 255),
        # gpt-4o-mini's constants (One API's token.go): 2833 base, 5667 a tile.
        (1024, 1024, "high", "gpt-4o-mini", 4 * 5667 + 2833),
        (1024, 1024, "low", "gpt-4o-mini-2024-07-18", 2833),
        # Scaled to fit 2048 (204x2048: 1x4 tiles), then the short side to 768 (2x2).
        (1000, 10000, "high", "gpt-4o", 4 * 170 + 85),
        (3000, 3000, "high", "gpt-4o", 4 * 170 + 85),
        (4000, 1000, "high", "gpt-4o", 4 * 1 * 170 + 85),  # 2048x512
    ],
)
def test_image_tokens_follow_openais_formula(
    width: int, height: int, detail: str, model: str, tokens: int
) -> None:
    assert usage.image_tokens(width, height, detail, model) == tokens


def test_data_urls_are_measured_locally_and_low_detail_is_flat() -> None:
    options = OptionSnapshot({"ApproximateTokenEnabled": "false"})

    def prompt(url: str, detail: str = "auto") -> int:
        part = {"type": "image_url", "image_url": {"url": url, "detail": detail}}
        return usage.count_messages([{"role": "user", "content": [part]}], "gpt-4o", options)

    text_only = usage.count_messages([{"role": "user", "content": []}], "gpt-4o", options)
    big = "data:image/png;base64," + base64.b64encode(png(2048, 4096)).decode()
    small = "data:image/jpeg;base64," + base64.b64encode(jpeg(100, 100)).decode()
    assert prompt(big) - text_only == 1105
    assert prompt(small) - text_only == 255
    assert prompt(big, "low") - text_only == 85
    # What cannot be measured counts as nothing, as in One API (it logs it).
    assert prompt("data:image/png;base64,bm90IGFuIGltYWdl") == text_only
    assert prompt(big, "ultra") == text_only
    # Remote images are left to count_remote_images, which fetches them.
    assert prompt("https://example.com/cat.png") == text_only
    assert prompt("https://example.com/cat.png", "low") - text_only == 85


# ---------------------------------------------------------------------- the guard


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fe80::1%eth0",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "not an address",
    ],
)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert not images.address_allowed(address)
    if address != "not an address":
        with ALLOW_PRIVATE:
            assert images.address_allowed(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert images.address_allowed(address)


def test_allowed_networks_open_only_themselves() -> None:
    with override_settings(IMAGE_FETCH_ALLOWED_NETWORKS=["127.0.0.1/32", "fd00::/8"]):
        assert images.address_allowed("127.0.0.1")
        assert images.address_allowed("::ffff:127.0.0.1")
        assert images.address_allowed("fd12::1")
        assert not images.address_allowed("127.0.0.2")
        assert not images.address_allowed("169.254.169.254")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "must be http(s)"),
        ("ftp://example.com/cat.png", "must be http(s)"),
        ("gopher://example.com/", "must be http(s)"),
        ("http:///cat.png", "must be http(s)"),
        ("http://[::1/cat.png", "not a valid URL"),
        ("http://exa mple.com/cat.png", "could not be resolved"),
        ("http://127.0.0.1/cat.png", "127.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a private address"),
        ("http://[::1]:8080/cat.png", "::1 is a private address"),
        ("http://[fc00::1]/cat.png", "fc00::1 is a private address"),
        ("http://[::ffff:127.0.0.1]/cat.png", "is a private address"),
        # Names are resolved, and only allowed addresses are connected to.
        ("http://localhost/cat.png", "localhost resolves to a private address"),
        ("http://2130706433/cat.png", "2130706433"),  # 127.0.0.1, refused by yarl already
        ("http://0x7f.1/cat.png", "resolves to a private address"),
    ],
)
def test_refused_urls_are_never_fetched(url: str, message: str) -> None:
    assert message in refusal(fetch(url))
    assert message in refusal(measure(url))


def test_a_loopback_image_is_refused_by_default(host: FakeImageHost) -> None:
    url = f"{host.base_url}/png/10x10.png"
    assert "private address" in refusal(measure(url))
    assert "private address" in refusal(fetch(url.replace("127.0.0.1", "localhost")))


def test_allowed_with_the_setting(host: FakeImageHost) -> None:
    with ALLOW_PRIVATE:
        assert measure(f"{host.base_url}/png/1024x768.png") == (1024, 768)
        assert measure(f"http://localhost:{host.port}/jpeg/640x480.jpg") == (640, 480)
        image = fetch(f"{host.base_url}/png/3x2.png")
    assert image == images.InlineImage("image/png", base64.b64encode(png(3, 2)).decode())


def test_redirects_are_followed_and_every_hop_is_checked(host: FakeImageHost) -> None:
    target = f"{host.base_url}/png/20x10.png"
    with override_settings(IMAGE_FETCH_ALLOWED_NETWORKS=["127.0.0.1/32"]):
        assert measure(f"{host.base_url}/redirect?to={target}") == (20, 10)
        to_loopback = target.replace("127.0.0.1", "127.0.0.2")
        assert "127.0.0.2 is a private address" in refusal(
            measure(f"{host.base_url}/redirect?to={to_loopback}")
        )
        to_metadata = "http://169.254.169.254/latest/meta-data/"
        assert "169.254.169.254 is a private address" in refusal(
            fetch(f"{host.base_url}/redirect?to={to_metadata}")
        )


def test_at_most_three_redirects(host: FakeImageHost) -> None:
    url = f"{host.base_url}/png/20x10.png"
    for _ in range(4):
        url = f"/redirect?to={url}"
    with ALLOW_PRIVATE:
        assert "more than 3 times" in refusal(measure(host.base_url + url))
        assert measure(host.base_url + url.split("to=", 1)[1]) == (20, 10)


def test_oversize_images_are_refused(host: FakeImageHost) -> None:
    with ALLOW_PRIVATE:
        assert "larger than" in refusal(fetch(f"{host.base_url}/big"))
        assert "larger than" in refusal(fetch(f"{host.base_url}/big-chunked"))
        # A size is looked for in the first MiB only.
        assert "no image size in the first" in refusal(measure(f"{host.base_url}/big-chunked"))


def test_a_size_after_a_large_exif_block_is_found(host: FakeImageHost) -> None:
    with ALLOW_PRIVATE:
        assert measure(f"{host.base_url}/exif/4000x3000.jpg") == (4000, 3000)


def test_slow_images_are_refused_in_bounded_time(host: FakeImageHost) -> None:
    with ALLOW_PRIVATE, override_settings(USER_CONTENT_REQUEST_TIMEOUT=1):
        started = time.monotonic()
        assert "longer than 1 s" in refusal(fetch(f"{host.base_url}/slow"))
        assert "longer than 1 s" in refusal(measure(f"{host.base_url}/drip"))
        assert time.monotonic() - started < 2.5


def test_what_is_not_an_image_is_refused(host: FakeImageHost) -> None:
    with ALLOW_PRIVATE:
        assert "did not return an image" in refusal(fetch(f"{host.base_url}/page.html"))
        assert "HTTP 404" in refusal(fetch(f"{host.base_url}/missing"))
        assert "HTTP 404" in refusal(measure(f"{host.base_url}/missing"))


def test_sizes_are_cached_by_url(host: FakeImageHost) -> None:
    url = f"{host.base_url}/png/300x200.png"
    with ALLOW_PRIVATE:
        before = len(host.requests)
        assert measure(url) == (300, 200)
        assert measure(url) == (300, 200)
    assert len(host.requests) == before + 1


def test_images_of_a_request_are_fetched_concurrently(host: FakeImageHost) -> None:
    urls = [f"{host.base_url}/slow?n={n}" for n in range(4)]
    with ALLOW_PRIVATE:
        started = time.monotonic()
        results = asyncio.run(images.measure_all(urls))
    assert results == [(10, 10)] * 4
    assert time.monotonic() - started < 5  # one 3 s wait, not four


def request_naming(*urls: str) -> Request:
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    body = orjson.dumps({"messages": [{"role": "user", "content": parts}]})
    return Request("POST", "/v1/chat/completions", b"", {}, body, "127.0.0.1", "req-1")


def test_a_failed_prefetch_is_a_client_error() -> None:
    request = request_naming("http://169.254.169.254/latest/meta-data/")

    with pytest.raises(RelayError) as caught:
        asyncio.run(images.prefetch_chat_images(request))
    assert (caught.value.status, caught.value.code) == (400, "invalid_image_url")
    assert "169.254.169.254 is a private address" in caught.value.message


def test_prefetched_images_belong_to_their_request(host: FakeImageHost) -> None:
    url = f"{host.base_url}/png/5x5.png"
    mine, other = request_naming(url), request_naming(url)
    with ALLOW_PRIVATE:
        asyncio.run(images.prefetch_chat_images(mine))

    with images.inlining(mine):
        assert images.inlined(url) == images.InlineImage("image/png", b64(png(5, 5)))
    assert images.inlined(url) is None
    with images.inlining(other):
        assert images.inlined(url) is None


def test_fetches_go_through_the_user_content_proxy(host: FakeImageHost) -> None:
    """The proxy resolves names (here `localhost`, which this process would refuse); literal
    private addresses are still refused before anything is sent."""
    url = f"http://localhost:{host.port}/png/30x20.png"
    with HttpProxy() as proxy, override_settings(USER_CONTENT_REQUEST_PROXY=proxy.url):
        assert measure(url) == (30, 20)
        assert fetch(url) == images.InlineImage("image/png", b64(png(30, 20)))
        assert "127.0.0.1 is a private address" in refusal(fetch(f"{host.base_url}/png/1x1.png"))
        to_metadata = f"{url.replace('png/30x20.png', 'redirect')}?to=http://169.254.169.254/"
        assert "169.254.169.254 is a private address" in refusal(fetch(to_metadata))
    assert proxy.requests == [("GET", url), ("GET", url), ("GET", to_metadata)]


def test_fetches_go_through_a_socks5_user_content_proxy(host: FakeImageHost) -> None:
    url = f"http://localhost:{host.port}/png/40x30.png"
    with SocksProxy() as proxy, override_settings(USER_CONTENT_REQUEST_PROXY=proxy.url("socks5h")):
        assert measure(url) == (40, 30)
        assert "127.0.0.1 is a private address" in refusal(fetch(f"{host.base_url}/png/1x1.png"))
    # The name reached the proxy unresolved.
    assert proxy.connects == [(None, "localhost", host.port)]
