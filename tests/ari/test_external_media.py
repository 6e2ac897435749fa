"""externalMedia through the simulator: dial before reply, the UUID message, naming, hangups and FIN."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ivr.ari import AriClient, ServerError, StasisStart
from ivr.sim import MediaLeg, SimAsterisk, tcp_media_connector
from tests.ari.conftest import APP, AudioSocketServer, Collector, eventually


async def _media(client: AriClient, server: AudioSocketServer, channel_id: str = "media-1") -> uuid.UUID:
    session = uuid.uuid4()
    await client.external_media(
        app=APP, external_host=server.address, format="slin16", data=str(session), channel_id=channel_id
    )
    return session


async def test_connects_and_sends_the_uuid_message(
    sim: SimAsterisk, client: AriClient, events: Collector, audiosocket: AudioSocketServer
) -> None:
    session = uuid.uuid4()
    chan = await client.external_media(
        app=APP, external_host=audiosocket.address, format="slin16", data=str(session), channel_id="media-1"
    )
    assert chan.id == "media-1"
    assert chan.state == "Down"
    assert chan.name == f"AudioSocket/{audiosocket.address}-{session}"
    await asyncio.wait_for(audiosocket.first_message[0].wait(), 5.0)
    assert bytes(audiosocket.received[0][:19]) == b"\x01\x00\x10" + session.bytes
    start = await events.wait("StasisStart", "media-1")
    assert isinstance(start, StasisStart)
    assert start.args == (str(session),)
    assert start.channel.is_audiosocket
    assert start.channel.state == "Up"
    assert events.types("media-1") == ["Dial", "ChannelStateChange", "Dial", "ChannelVarset", "StasisStart"]


async def test_dials_before_the_http_reply(
    sim: SimAsterisk, client: AriClient, events: Collector, audiosocket: AudioSocketServer
) -> None:
    release = asyncio.Event()
    dialled: list[tuple[str, int, uuid.UUID, str, str]] = []

    async def gated(host: str, port: int, session: uuid.UUID, fmt: str, channel_id: str) -> MediaLeg:
        leg = await tcp_media_connector(host, port, session, fmt, channel_id)
        dialled.append((host, port, session, fmt, channel_id))
        await release.wait()
        return leg

    sim.media_connector = gated
    request = asyncio.create_task(_media(client, audiosocket))
    await asyncio.wait_for(audiosocket.connected.wait(), 5.0)
    await asyncio.wait_for(audiosocket.first_message[0].wait(), 5.0)
    await asyncio.sleep(0.2)
    assert not request.done(), "externalMedia replied before its connector finished"
    assert dialled
    assert dialled[0][0:2] == ("127.0.0.1", audiosocket.port)
    assert dialled[0][3:] == ("slin16", "media-1")
    release.set()
    session = await asyncio.wait_for(request, 5.0)
    assert dialled[0][2] == session


async def test_unreachable_media_server_is_a_500(
    sim: SimAsterisk, client: AriClient, events: Collector
) -> None:
    closed = AudioSocketServer()
    await closed.start()
    await closed.close()
    with pytest.raises(ServerError, match="Allocation failed"):
        await _media(client, closed)
    assert "media-1" not in sim.channels


async def test_deleting_the_media_channel_closes_its_socket(
    sim: SimAsterisk, client: AriClient, events: Collector, audiosocket: AudioSocketServer
) -> None:
    await _media(client, audiosocket)
    await events.wait("StasisStart", "media-1")
    assert not audiosocket.eof[0].is_set()
    await client.hangup("media-1")
    await asyncio.wait_for(audiosocket.eof[0].wait(), 5.0)
    destroyed = await events.wait("ChannelDestroyed", "media-1")
    assert destroyed.raw["cause"] == 16


async def test_application_closing_the_socket_hangs_the_media_channel_up(
    sim: SimAsterisk, client: AriClient, events: Collector, audiosocket: AudioSocketServer
) -> None:
    await _media(client, audiosocket)
    await events.wait("StasisStart", "media-1")
    audiosocket.writers[0].close()
    await events.wait("ChannelDestroyed", "media-1")
    assert "ChannelHangupRequest" in events.types("media-1")
    assert "media-1" not in sim.channels


async def test_application_sending_a_non_audio_kind_is_hung_up(
    sim: SimAsterisk, client: AriClient, events: Collector, audiosocket: AudioSocketServer
) -> None:
    session = await _media(client, audiosocket)
    await events.wait("StasisStart", "media-1")
    writer = audiosocket.writers[0]
    writer.write(b"\x12\x00\x04" + b"\x00" * 4)  # audio is fine
    writer.write(b"\x01\x00\x10" + session.bytes)  # a UUID message from the app is an error
    await writer.drain()
    await events.wait("ChannelDestroyed", "media-1")
    await asyncio.wait_for(audiosocket.eof[0].wait(), 5.0)


async def test_caller_dtmf_reaches_the_bridged_socket_and_caller_hangup_leaves_media_bridged(
    sim: SimAsterisk, client: AriClient, events: Collector, audiosocket: AudioSocketServer
) -> None:
    call = await sim.place_call()
    await client.answer(call.id)
    await client.create_bridge(bridge_id="b1")
    await _media(client, audiosocket)
    await events.wait("StasisStart", "media-1")
    await client.add_channel("b1", [call.id, "media-1"])
    await sim.press_dtmf(call.id, "7")
    await events.wait("ChannelDtmfReceived", call.id)
    await eventually(lambda: bytes(audiosocket.received[0][19:23]) == b"\x03\x00\x017")

    await sim.hangup(call.id)
    await events.wait("StasisEnd", call.id)
    assert events.types(call.id)[-3:] == ["ChannelHangupRequest", "ChannelLeftBridge", "StasisEnd"]
    request = next(e for e in events.events if e.type == "ChannelHangupRequest" and call.id in e.channel_ids)
    assert request.raw["cause"] == 16
    assert sim.bridges["b1"].channels == ["media-1"]
    assert "media-1" in sim.channels
    assert not audiosocket.eof[0].is_set()
    await client.hangup("media-1")
    await client.destroy_bridge("b1")
    await asyncio.wait_for(audiosocket.eof[0].wait(), 5.0)
    assert sim.channels == {}
    assert sim.bridges == {}


async def test_stop_closes_media_sockets(
    client: AriClient, events: Collector, audiosocket: AudioSocketServer, sim: SimAsterisk
) -> None:
    await _media(client, audiosocket)
    await sim.stop()
    await asyncio.wait_for(audiosocket.eof[0].wait(), 5.0)
