"""Messages between this program's own processes: a socket pair, length-prefixed pickles.

Used by the speech worker pool (:mod:`ivr.speech.executor`) and the call workers (:mod:`ivr.workers`).
Pickle is safe here because both ends are this program: a socket pair never leaves the process tree.
A child is started with ``python -c`` and its end of the pair passed as an inherited fd, so no
``multiprocessing`` machinery (fork of a running event loop, resource-sharer threads) is involved; the
child notices its parent's death as EOF on the socket and exits.
"""

from __future__ import annotations

import asyncio
import base64
import pickle
import socket
import struct
import sys
from typing import Any

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 64 * 1024 * 1024
"""The largest message either side accepts (an utterance is a few MB at most)."""

Message = tuple[Any, ...]


class Channel:
    """One end of a socket pair carrying :data:`Message` tuples."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_MESSAGE)
        return cls(reader, writer)

    @classmethod
    async def from_fd(cls, fd: int) -> Channel:
        return await cls.open(socket.socket(fileno=fd))

    async def read(self) -> Message | None:
        """The next message, or None once the other end has gone."""
        try:
            header = await self.reader.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(header)
            if size > MAX_MESSAGE:
                raise ConnectionError(f"a {size}-byte message is over the limit")
            message: Message = pickle.loads(await self.reader.readexactly(size))
            return message
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def send(self, message: Message) -> None:
        """Queue a message; never blocks (the transport buffers)."""
        if self.writer.is_closing():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.write(_HEADER.pack(len(data)) + data)

    async def drain(self) -> None:
        if not self.writer.is_closing():
            await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


def encode_args(value: Any) -> str:
    """Arguments for a child's entry point, as one command-line-safe string."""
    return base64.b64encode(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")


def decode_args(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


async def spawn(entry: str, args: Any, *, name: str) -> tuple[asyncio.subprocess.Process, Channel]:
    """Start ``python -c 'from MODULE import FUNC; FUNC(fd, encoded_args)'`` with one end of a pair.

    ``entry`` is ``"package.module:function"``; the function gets the inherited fd and the encoded
    arguments (see :func:`decode_args`). ``name`` shows in ``ps`` via the process title argument.
    """
    module, _, function = entry.partition(":")
    parent_sock, child_sock = socket.socketpair()
    fd = child_sock.fileno()
    code = f"from {module} import {function}; {function}({fd}, {encode_args(args)!r})"
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, name, pass_fds=(fd,), stdin=asyncio.subprocess.DEVNULL
        )
    except BaseException:
        parent_sock.close()
        raise
    finally:
        child_sock.close()
    return process, await Channel.open(parent_sock)
