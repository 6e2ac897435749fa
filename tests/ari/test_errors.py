"""Each HTTP error becomes its own exception carrying the ARI message."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ivr.ari import (
    AriClient,
    AriConnectionError,
    AriHttpError,
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    ServerError,
    Unauthorized,
    UnprocessableEntity,
)
from ivr.ari.errors import Forbidden, error_for_status
from ivr.sim import SimAsterisk
from tests.ari.conftest import APP, PASSWORD, USER, AudioSocketServer, Collector


async def test_401_wrong_password(sim: SimAsterisk) -> None:
    async with AriClient(sim.base_url, USER, "wrong-password-xyz") as bad:
        with pytest.raises(Unauthorized) as info:
            await bad.asterisk_info()
    assert info.value.status == 401
    assert info.value.message == "Authentication required"
    assert "wrong-password-xyz" not in str(info.value)
    assert info.value.path == "/asterisk/info"


async def test_api_key_query_parameter_is_accepted(sim: SimAsterisk, client: AriClient) -> None:
    data = await client.request("GET", "/asterisk/ping", {"api_key": f"{USER}:{PASSWORD}"})
    assert data["ping"] == "pong"


async def test_400_external_media_without_data(client: AriClient, audiosocket: AudioSocketServer) -> None:
    with pytest.raises(BadRequest) as info:
        await client.external_media(app=APP, external_host=audiosocket.address, format="slin16", data="")
    assert info.value.message == "data can not be empty"
    assert not audiosocket.connected.is_set()


async def test_404_unknown_channel_and_bridge(client: AriClient) -> None:
    with pytest.raises(NotFound) as info:
        await client.get_channel("nope")
    assert info.value.message == "Channel not found"
    with pytest.raises(NotFound) as binfo:
        await client.destroy_bridge("nope")
    assert binfo.value.message == "Bridge not found"


async def test_409_not_in_stasis_and_duplicate_id(
    sim: SimAsterisk, client: AriClient, events: Collector
) -> None:
    call = await sim.place_call()
    await client.continue_in_dialplan(call.id)
    with pytest.raises(Conflict) as info:
        await client.answer(call.id)
    assert info.value.message == "Channel not in Stasis application"
    await client.originate("PJSIP/bob", app=APP, channel_id="dup")
    with pytest.raises(Conflict) as dup:
        await client.originate("PJSIP/bob", app=APP, channel_id="dup")
    assert dup.value.message == "Channel with given unique ID already exists"
    await client.create_bridge(bridge_id="b")
    with pytest.raises(Conflict, match="already exists"):
        await client.create_bridge(bridge_id="b")


async def test_422_add_channel_before_media_stasis_start(
    sim: SimAsterisk, client: AriClient, events: Collector, audiosocket: AudioSocketServer
) -> None:
    sim.media_stasis_delay = 0.3
    call = await sim.place_call()
    await client.create_bridge(bridge_id="b1")
    session = uuid.uuid4()
    media = await client.external_media(
        app=APP, external_host=audiosocket.address, format="slin16", data=str(session), channel_id="media-1"
    )
    with pytest.raises(UnprocessableEntity) as info:
        await client.add_channel("b1", [call.id, media.id])
    assert info.value.message == "Channel not in Stasis application"
    assert sim.bridges["b1"].channels == []
    await events.wait("StasisStart", "media-1")
    await client.add_channel("b1", [call.id, media.id])
    assert sim.bridges["b1"].channels == [call.id, "media-1"]


async def test_422_remove_channel_not_in_bridge(
    sim: SimAsterisk, client: AriClient, events: Collector
) -> None:
    call = await sim.place_call()
    await client.create_bridge(bridge_id="b2")
    with pytest.raises(UnprocessableEntity, match="Channel not in this bridge"):
        await client.remove_channel("b2", call.id)
    with pytest.raises(BadRequest, match="Channel not found"):
        await client.add_channel("b2", "ghost")


async def test_422_redirect_to_other_technology(
    sim: SimAsterisk, client: AriClient, events: Collector
) -> None:
    call = await sim.place_call(tech="PJSIP")
    with pytest.raises(UnprocessableEntity, match="not the same type"):
        await client.redirect(call.id, "IAX2/elsewhere")


async def test_400_invalid_hangup_reason(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    call = await sim.place_call()
    with pytest.raises(BadRequest, match="Invalid reason for hangup provided"):
        await client.hangup(call.id, reason="because")


async def test_500_external_media_with_non_uuid_data(
    client: AriClient, audiosocket: AudioSocketServer
) -> None:
    with pytest.raises(ServerError) as info:
        await client.external_media(app=APP, external_host=audiosocket.address, format="slin16", data="abc")
    assert info.value.status == 500
    assert info.value.message == "Allocation failed"


@pytest.fixture
async def precondition_server() -> AsyncIterator[str]:
    """A bare HTTP server answering 412 the way Asterisk does (the simulator has no such state)."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"message": "Channel in invalid state"}, status=412)

    app = web.Application()
    app.router.add_post("/ari/channels/{id}/answer", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_412_precondition_failed(precondition_server: str) -> None:
    async with AriClient(precondition_server, USER, PASSWORD) as c:
        with pytest.raises(PreconditionFailed) as info:
            await c.answer("c1")
    assert (info.value.status, info.value.message) == (412, "Channel in invalid state")
    assert info.value.method == "POST"


def test_error_for_status_mapping() -> None:
    assert isinstance(error_for_status(403, "x"), Forbidden)
    assert isinstance(error_for_status(503, "x"), ServerError)
    other = error_for_status(418, "teapot")
    assert type(other) is AriHttpError
    assert str(other) == "ARI 418: teapot"


async def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AriClient(f"http://127.0.0.1:{port}", USER, PASSWORD, timeout=2.0) as c:
        with pytest.raises(AriConnectionError):
            await c.asterisk_info()
