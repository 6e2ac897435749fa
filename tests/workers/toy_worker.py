"""A worker entry for the pool's own tests: echoes messages, exits or crashes on request."""

from __future__ import annotations

import asyncio
import os

from ivr.ipc import Channel, decode_args


def main(fd: int, args: str) -> None:
    asyncio.run(_serve(fd, decode_args(args)))


async def _serve(fd: int, options: dict[str, object]) -> None:
    channel = await Channel.from_fd(fd)
    if options.get("fail_at_start"):
        os._exit(3)
    channel.send(("ready", {"pid": os.getpid(), "index": options["index"]}))
    while (message := await channel.read()) is not None:
        if message[0] == "stop":
            break
        if message[0] == "crash":
            os._exit(9)
        channel.send(("echo", *message))
    channel.close()
