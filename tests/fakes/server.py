from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

# The machinery every fake upstream shares: a real HTTP server (an aiohttp application) run
# by its own event loop in a daemon thread, so plain synchronous tests and async tests alike
# can use it and it never shares the test's loop; start/stop and the context manager; the
# requests it received; the scenario that switches its behaviour, with failures queued by
# fail_times(); and sleeps that end at once when the server stops.
#
#     class FakeFoo(FakeServer[RecordedRequest]):
#         scenarios = frozenset({"ok", "error_500"})
#         thread_name = "fake-foo"
#
#         async def route(self, request, recorded, scenario):
#             ...  # answer as Foo's API would
#
# A fake that records its own kind of request overrides `_record`; one that records or picks
# scenarios at other points (only some routes consume a scenario, say) overrides `_handle`
# and calls `_remember` and `_next_scenario` itself.

__all__ = [
    "FakeServer",
    "RecordedRequest",
    "ServerStopping",
    "json_object",
    "json_response",
    "lower_headers",
]

RecordT = TypeVar("RecordT")


class ServerStopping(Exception):
    """Raised inside a sleeping handler when stop() is called, so shutdown never waits."""


def lower_headers(request: web.Request) -> dict[str, str]:
    """The request's headers with lower-case names, as the fakes record them."""
    return {name.lower(): value for name, value in request.headers.items()}


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body parsed when it is a JSON object, else None (the fake's route decides)."""
    with contextlib.suppress(ValueError):
        loaded = json.loads(body) if body else None
        return loaded if isinstance(loaded, dict) else None
    return None


def json_response(
    data: Any, status: int = 200, content_type: str = "application/json"
) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), headers={"Content-Type": content_type}
    )


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the fake received it: what FakeServer records unless `_record` differs."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any = None  # any JSON value, not only objects

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))

    @classmethod
    def of(cls, request: web.Request, body: bytes) -> Self:
        parsed: Any = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(body) if body else None
        query = dict(request.query)
        return cls(request.method, request.path, query, lower_headers(request), body, parsed)


class FakeServer(Generic[RecordT]):
    """A local HTTP server with switchable scenarios, recording what it receives.

    Every public attribute may be changed from the test thread at any time; the server reads
    it when the next request arrives."""

    # The scenarios `scenario` and fail_times() accept: a typo fails loudly instead of
    # silently behaving as "ok".
    scenarios: ClassVar[frozenset[str]] = frozenset({"ok"})
    thread_name: ClassVar[str] = "fake-upstream"
    # Bigger bodies get aiohttp's 413; its 1 MiB default is too small for uploads.
    client_max_size: ClassVar[int] = 32 * 1024 * 1024
    # Cancel the handler of a client that gave up (timeout tests) instead of letting it run.
    handler_cancellation: ClassVar[bool] = False

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._lock = threading.Lock()
        self._requests: list[RecordT] = []
        self._scenario = "ok"
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def scenario(self) -> str:
        with self._lock:
            return self._scenario

    @scenario.setter
    def scenario(self, value: str) -> None:
        if value not in self.scenarios:
            expected = sorted(self.scenarios)
            raise ValueError(f"unknown scenario {value!r}; expected one of {expected}")
        with self._lock:
            self._scenario = value

    @property
    def requests(self) -> list[RecordT]:
        """A snapshot copy: safe to iterate while the server keeps appending."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordT:
        with self._lock:
            if not self._requests:
                raise LookupError(f"{type(self).__name__} has not received any request")
            return self._requests[-1]

    def fail_times(self, n: int, scenario: str) -> None:
        """Answer the next n requests with `scenario`, then fall back to `self.scenario`.

        Calls queue up: fail_times(2, "error_500"); fail_times(1, "reset") gives two
        500s, then one reset.
        """
        if scenario not in self.scenarios:
            raise ValueError(f"unknown scenario {scenario!r}")
        with self._lock:
            self._pending.extend([scenario] * n)

    def reset(self) -> None:
        """Forget recorded requests and queued failures; scenario back to "ok"."""
        with self._lock:
            self._requests.clear()
            self._pending.clear()
            self._scenario = "ok"

    def start(self) -> Self:
        if self._loop is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._startup(), loop).result(timeout=10)
        except BaseException:
            self._stop_loop()
            raise
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._stop_loop()
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ for subclasses

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Every request comes in here: recorded, given its scenario, answered by route()."""
        recorded = await self._receive(request)
        return await self.route(request, recorded, self._next_scenario())

    async def _receive(self, request: web.Request) -> RecordT:
        """Read the body, then record the request."""
        return self._remember(self._record(request, await request.read()))

    def _record(self, request: web.Request, body: bytes) -> Any:
        """What to keep of a request; fakes with their own kind of record override this."""
        return RecordedRequest.of(request, body)

    async def route(
        self, request: web.Request, recorded: RecordT, scenario: str
    ) -> web.StreamResponse:
        """The answer to a recorded request under `scenario`."""
        raise NotImplementedError

    def _remember(self, recorded: RecordT) -> RecordT:
        with self._lock:
            self._requests.append(recorded)
        return recorded

    def _next_scenario(self) -> str:
        """The scenario of the request at hand: the next queued failure, else `scenario`."""
        with self._lock:
            return self._pending.pop(0) if self._pending else self._scenario

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once (raising ServerStopping) when stop() is called."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        if self._stopping.is_set():
            raise ServerStopping

    # ------------------------------------------------------------------ lifecycle

    async def _startup(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=self.client_max_size)
        self._add_routes(app)
        # A short shutdown_timeout keeps stop() fast when handlers are still running.
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=self.handler_cancellation,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None
