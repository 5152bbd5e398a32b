"""A slow OpenAI stream: one chunk every `--gap` seconds, to show the relay forwards each
chunk as it arrives instead of buffering the answer.

    python bench/slow_upstream.py --port 0 --chunks 5 --gap 0.2   # prints its port
"""

from __future__ import annotations

import argparse
import asyncio

import orjson

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args: argparse.Namespace
) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    writer.write(HEAD)
    base = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    for index in range(args.chunks):
        delta = {"index": 0, "delta": {"content": f"piece{index} "}, "finish_reason": None}
        writer.write(chunk(event({**base, "choices": [delta]})))
        await writer.drain()
        await asyncio.sleep(args.gap)
    usage = {"prompt_tokens": 9, "completion_tokens": args.chunks, "total_tokens": 9 + args.chunks}
    writer.write(chunk(event({**base, "choices": [], "usage": usage}) + b"data: [DONE]\n\n"))
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--gap", type=float, default=0.2)
    args = parser.parse_args()
    server = await asyncio.start_server(lambda r, w: serve(r, w, args), "127.0.0.1", args.port)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
