"""A TCP proxy between a process under test and a real service, for injecting network faults.

The shared PostgreSQL, MariaDB and Redis must never be stopped (other test runs use them), so
a fault is injected here instead: point the process at `proxy.port` and

    with TcpProxy("127.0.0.1", 5432) as proxy:
        ...                  # traffic flows
        proxy.cut()          # every open connection is reset, new ones are refused
        proxy.restore()      # new connections are forwarded again
        proxy.pause()        # connections stay open but nothing is forwarded (a stall)
        proxy.resume()
        proxy.lose_reply_to(b"COMMIT")  # the next message ending so reaches the service,
                                        # its client gets a reset instead of the answer

Like the fake upstreams, the proxy runs its own event loop in a daemon thread, so plain
synchronous tests can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Self

__all__ = ["TcpProxy"]

CHUNK = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN, as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.accepted = 0  # connections accepted in total (forwarded or refused)
        self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self._flowing: asyncio.Event | None = None
        self._trigger: bytes | None = None
        self._doomed: set[asyncio.StreamWriter] = set()  # clients whose answers are dropped
        self.replies_lost = 0

    # ------------------------------------------------------------------ control

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._loop = loop
        self._call(self._startup())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until `restore()`."""
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._set_refusing(False))

    def pause(self) -> None:
        """Stop forwarding bytes (both ways) without closing anything."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    def lose_reply_to(self, trigger: bytes) -> None:
        """One shot: the next client bytes ending with `trigger` (NULs aside: PostgreSQL ends
        a query with one) reach the service, but that connection's client is reset before any
        answer (an ambiguous commit, say). The end, not anywhere: MySQL's `SET autocommit=0`
        must not match "COMMIT"."""
        self._call(self._arm(trigger))

    @property
    def open_connections(self) -> int:
        return len(self._writers) // 2

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ loop side

    def _call(self, coroutine: object) -> None:
        assert self._loop is not None, "the proxy is not started"
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _startup(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _cut(self) -> None:
        self._refusing = True
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _set_refusing(self, refusing: bool) -> None:
        self._refusing = refusing

    async def _arm(self, trigger: bytes) -> None:
        self._trigger = trigger

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            self.refused += 1
            _reset(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer, writer, from_client=True),
            self._pipe(upstream_reader, writer, upstream_writer),
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        from_client: bool = False,
    ) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(CHUNK):
                await self._flowing.wait()
                if writer not in self._writers or writer in self._doomed:
                    return
                doomed = (
                    from_client
                    and self._trigger is not None
                    and data.rstrip(b"\0").endswith(self._trigger)
                )
                if doomed:
                    self._trigger = None
                    self._doomed.add(other)  # nothing more reaches this client
                writer.write(data)
                await writer.drain()
                if doomed:
                    self.replies_lost += 1
                    self._writers.discard(other)
                    _reset(other)
                    # Long enough for the service to act on what it was sent.
                    await asyncio.sleep(0.5)
                    return
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other one too, as a real connection would.
            for end in (writer, other):
                if end in self._writers:
                    self._writers.discard(end)
                    with contextlib.suppress(Exception):
                        end.close()
