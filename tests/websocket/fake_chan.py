"""A socket that joins a WebSocket media session to the chan_websocket model, which the tests tick by
hand (virtual time). The model itself (``ivr.sim.chan_websocket``) is shared with the simulated Asterisk.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMessage, WSMsgType

from ivr.sim.chan_websocket import ChanWebsocketModel

__all__ = ["ChanWebsocketModel", "ModelSocket", "settle"]


class ModelSocket:
    """The session's socket, wired to a :class:`ChanWebsocketModel`; the test calls :meth:`tick`."""

    def __init__(self, model: ChanWebsocketModel) -> None:
        self.model = model
        self.incoming: asyncio.Queue[WSMessage] = asyncio.Queue()
        self.sent: list[bytes | str] = []
        self.close_code: int | None = None
        self.gate: asyncio.Event | None = None
        """When set to an unset Event, writes wait for it (a peer that stopped reading)."""

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None:
        await self._wait_gate()
        self._check_open()
        self.sent.append(bytes(data))
        for text in self.model.receive_binary(bytes(data)):
            self.feed_text(text)

    async def send_str(self, data: str, compress: int | None = None) -> None:
        await self._wait_gate()
        self._check_open()
        self.sent.append(data)
        for text in self.model.receive_text(data):
            self.feed_text(text)

    async def receive(self, timeout: float | None = None) -> WSMessage:
        return await self.incoming.get()

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        if self.close_code is not None:
            return False
        self.close_code = code
        self.incoming.put_nowait(WSMessage(WSMsgType.CLOSED, None, None))
        return True

    def feed_text(self, text: str) -> None:
        self.incoming.put_nowait(WSMessage(WSMsgType.TEXT, text, None))

    def feed_binary(self, data: bytes) -> None:
        self.incoming.put_nowait(WSMessage(WSMsgType.BINARY, data, None))

    def feed_close(self, code: int = 1000) -> None:
        self.incoming.put_nowait(WSMessage(WSMsgType.CLOSE, code, ""))

    def tick(self, count: int = 1) -> list[bytes | None]:
        played = []
        for _ in range(count):
            frame, events = self.model.tick()
            played.append(frame)
            for text in events:
                self.feed_text(text)
        return played

    def texts(self) -> list[str]:
        return [m for m in self.sent if isinstance(m, str)]

    async def _wait_gate(self) -> None:
        if self.gate is not None:
            await self.gate.wait()

    def _check_open(self) -> None:
        if self.close_code is not None:
            raise ConnectionResetError("Cannot write to closing transport")


async def settle(rounds: int = 30) -> None:
    """Let every ready task run (the session's sender and reader) without any timer."""
    for _ in range(rounds):
        await asyncio.sleep(0)
