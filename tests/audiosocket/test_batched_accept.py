"""A burst of connections is accepted at one wake-up of the loop, on uvloop as on asyncio's own loop.

uvloop's ``create_server`` accepts one connection per turn of the loop; a worker busy with hundreds of
calls turns every 100-300 ms, so a burst of Asterisk's media connections waited past the set-up
deadline in the listen queue. These tests count turns of the loop, not seconds.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ivr.audiosocket import AudioSocketConfig, AudioSocketServer
from ivr.audiosocket.protocol import encode_uuid
from ivr.listener import BatchedListener

BURST = 40
MOST_TURNS = 8
"""Turns of the loop a burst may take: accept (1), each transport's start (2-3), slack. One accept per
turn needs BURST + 1."""

uvloop = pytest.importorskip("uvloop")  # a core dependency of ``ivr run`` (the uvloop extra)

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def run_on(kind: str, main: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[kind]) as runner:
        runner.run(main)


class Recorder(asyncio.Protocol):
    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


async def turns_until(done: Callable[[], bool], limit: int = 200) -> int:
    turns = 0
    while not done() and turns < limit:
        await asyncio.sleep(0)  # one turn of the loop (ready callbacks, then a poll)
        turns += 1
    return turns


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_a_burst_of_connections_is_accepted_at_once(kind: str) -> None:
    async def main() -> None:
        made: list[asyncio.BaseTransport] = []
        listener = BatchedListener(lambda: Recorder(made), "127.0.0.1", 0)
        await listener.start()
        port = listener.sockets[0].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(BURST)]  # queued, unaccepted
        try:
            turns = await turns_until(lambda: len(made) == BURST)
            assert len(made) == BURST
            assert turns <= MOST_TURNS, f"{turns} turns of the loop for {BURST} connections"
            for transport in made:
                sock = transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            for client in clients:
                client.close()
            for transport in made:
                transport.close()
            listener.close()
            await listener.wait_closed()
        assert listener.sockets == []

    run_on(kind, main())


def test_a_closed_listener_refuses_new_connections() -> None:
    async def main() -> None:
        listener = BatchedListener(asyncio.Protocol, "127.0.0.1", 0)
        await listener.start()
        port = listener.sockets[0].getsockname()[1]
        listener.close()
        await listener.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    run_on("uvloop", main())


def test_an_audiosocket_burst_on_uvloop_becomes_sessions_within_a_few_turns() -> None:
    """What ARI mode needs: Asterisk connects for every externalMedia of a burst, each with its UUID;
    every expected session exists a few turns of the loop later (it took one turn per connection)."""

    async def main() -> None:
        server = AudioSocketServer(AudioSocketConfig(host="127.0.0.1", port=0, pacer="loop"))
        await server.start()
        ids = [uuid.uuid4() for _ in range(BURST)]
        expectations = [server.expect(i, "slin16") for i in ids]
        clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in ids]
        try:
            for client, call_id in zip(clients, ids, strict=True):
                client.sendall(encode_uuid(call_id))
            turns = await turns_until(lambda: all(e.future.done() for e in expectations))
            assert sorted(server.sessions) == sorted(ids)
            assert turns <= MOST_TURNS + 2, f"{turns} turns of the loop for {BURST} sessions"
        finally:
            for client in clients:
                client.close()
            await server.close()

    run_on("uvloop", main())


def test_a_host_name_listens_on_every_address_it_names() -> None:
    """A name with several addresses (``localhost`` is 127.0.0.1 and ::1 on many systems, ::1 first)
    gets a listener on each, as ``create_server`` binds them: Asterisk dialling the second address must
    not miss a listener bound to the first alone. Two loopback addresses of 127/8 stand in for the pair,
    so the test needs no IPv6."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        named = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
        ]

        async def resolve(*args: Any, **kwargs: Any) -> list[Any]:
            return named

        loop.getaddrinfo = resolve  # type: ignore[method-assign]
        made: list[asyncio.BaseTransport] = []
        listener = BatchedListener(lambda: Recorder(made), "two-addresses.test", 0)
        await listener.start()
        try:
            assert sorted(s.getsockname()[0] for s in listener.sockets) == ["127.0.0.1", "127.0.0.2"]
            clients = [socket.create_connection(s.getsockname()[:2]) for s in listener.sockets]
            try:
                assert await turns_until(lambda: len(made) == 2) <= MOST_TURNS
            finally:
                for client in clients:
                    client.close()
                for transport in made:
                    transport.close()
        finally:
            listener.close()
            await listener.wait_closed()

    run_on("uvloop", main())
