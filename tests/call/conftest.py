"""The whole stack over real sockets: simulated Asterisk (ARI + talking caller legs), AudioSocket
server, WebSocket media client, ARI client, and the app, with the instant simulation speech engines.

``make_stack(..., media="websocket")`` gives every call WebSocket media (the simulator paces it like
chan_websocket); the default is AudioSocket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from ivr.ari.client import AriClient
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.ari_app import AriApp, AriAppConfig
from ivr.call.flows import FlowCatalog
from ivr.call.ports import SpeechFactory
from ivr.call.report import Tracer
from ivr.call.services import CallServices
from ivr.call.turn_models import TurnModels
from ivr.flow.model import FlowSettings
from ivr.ops.metrics import Metrics
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.caller_leg import CallerLegs, CallerVoice
from ivr.sim.ws_media import talking_legs
from ivr.speech.registry import CallSpeech
from ivr.speech.simulated import TextTranscriber, ToneSynthesizer
from ivr.websocket import WebSocketMediaClient
from tests.fakes.openai_server import API_KEY, FakeOpenAI

DATA = Path(__file__).parent / "data"
FLOWS = Path(__file__).parents[2] / "flows"


def sim_speech(ms_per_char: float = 4) -> SpeechFactory:
    """The instant simulation engines for every call."""

    def factory(settings: FlowSettings, rate: int) -> CallSpeech:
        return CallSpeech(TextTranscriber(), ToneSynthesizer(ms_per_char=ms_per_char, min_ms=100))

    return factory


@dataclass
class Stack:
    sim: SimAsterisk
    legs: CallerLegs
    app: AriApp
    audiosocket: AudioSocketServer
    websocket: WebSocketMediaClient

    async def leg(self, caller_id: str, timeout: float = 5.0) -> CallerVoice:
        found: list[CallerVoice] = []

        def ready() -> bool:
            leg = self.legs.for_caller(self.sim, caller_id)
            if leg is not None:
                found.append(leg)
            return bool(found)

        await self.sim.wait_for(ready, timeout)
        return found[0]

    async def wait_ended(self, count: int = 1, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.app.reports) < count or self.app.calls:  # noqa: ASYNC110 - app state, no event
                await asyncio.sleep(0.02)

    def assert_clean(self) -> None:
        """Nothing left in Asterisk or in the app after the calls ended."""
        assert not self.sim.bridges, self.sim.bridges
        assert not [c for c in self.sim.channels.values() if c.kind == "media"]
        assert not self.app.calls
        assert not self.audiosocket.sessions
        assert not self.websocket.sessions


async def hang_up_before_replying(sim: SimAsterisk) -> None:
    """Asterisk has handled a call's request; before the reply leaves, the caller hangs up and the app has
    handled it (for the races of a call stopped while waiting for a reply)."""
    caller = next(c for c in sim.channels.values() if c.kind != "media")
    await sim.hangup(caller.id)
    await sim.wait_for(lambda: caller.id in sim.destroyed)
    await asyncio.sleep(0.2)  # the app has handled the hang-up (the call's task was stopped)


async def make_stack(
    flows: Path,
    default: str | None,
    *,
    ms_per_char: float = 4,
    tracer: Tracer | None = None,
    speech: SpeechFactory | None = None,
    metrics: Metrics | None = None,
    turns: TurnModels | None = None,
    legs: CallerLegs | None = None,
    sim_type: type[SimAsterisk] = SimAsterisk,
    **config: object,
) -> Stack:
    legs = legs or CallerLegs()
    sim = sim_type(
        username="ivr", password="pw", media_connector=legs.connect, websocket_legs=talking_legs(legs)
    )
    await sim.start()
    audiosocket = AudioSocketServer(AudioSocketConfig(port=0))
    await audiosocket.start()
    websocket = WebSocketMediaClient(sim.base_url)
    ari = AriClient(sim.base_url, "ivr", "pw")
    app = AriApp(
        ari=ari,
        audiosocket=audiosocket,
        websocket=websocket,
        services=CallServices(
            flows=FlowCatalog(flows, default=default),
            speech=speech or sim_speech(ms_per_char),
            tracer=tracer,
            metrics=metrics,
            turns=turns,
            max_call_seconds=float(config.pop("max_call_seconds", 3600.0)),  # type: ignore[arg-type]
            engine_executor=config.pop("engine_executor", None),  # type: ignore[arg-type]
        ),
        config=AriAppConfig(**{"advertise": f"127.0.0.1:{audiosocket.port}", "step_timeout": 3.0, **config}),  # type: ignore[arg-type]
    )
    await app.start(heartbeat=1.0)
    return Stack(sim, legs, app, audiosocket, websocket)


async def close_stack(stack: Stack) -> None:
    await stack.app.close()
    assert stack.app.ari is not None
    await stack.app.ari.close()
    await stack.websocket.close()
    await stack.audiosocket.close()
    await stack.sim.stop()


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """After every call test: no task left running (every task is owned and ended with its call)."""
    before = set(asyncio.all_tasks())
    yield
    for _ in range(50):
        left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
        if not left:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"tasks left behind: {[t.get_name() for t in left]}")


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = await make_stack(DATA, "menu")
    yield s
    await close_stack(s)


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeOpenAI, dict[str, str]]]:
    """A local OpenAI stand-in (``tests.fakes.openai_server``) and the environment that points at it."""
    fake = FakeOpenAI()
    runner = web.AppRunner(fake.app(), handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    await runner.cleanup()
