"""Every call ends with exactly one record, one "ended" log line and the active-calls gauge back at zero,
whatever fails and whenever: each failure point of an ARI call and of a dialplan-only call is driven here.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from ivr.ari.client import AriClient
from ivr.ari.models import parse_event
from ivr.audiosocket.protocol import encode_audio, encode_uuid
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.ari_app import AriApp, AriAppConfig
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import FlowCatalog
from ivr.call.ports import SpeechFactory
from ivr.call.report import CallReport
from ivr.call.services import CallServices
from ivr.flow.model import FlowSettings
from ivr.ops.metrics import Metrics
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.caller_leg import CallerLegs
from ivr.speech.base import Synthesizer, VoiceIdentity
from ivr.speech.registry import CallSpeech
from ivr.speech.simulated import TextTranscriber, ToneSynthesizer

from .conftest import DATA, hang_up_before_replying

pytestmark = pytest.mark.virtual_time

Hook = Callable[[], None]


class HookedSynthesizer(Synthesizer):
    """The instant simulation voice, with a hook run just before each prompt starts (to hit races)."""

    engine = "sim-text"

    def __init__(self, before: Hook | None = None) -> None:
        self.inner = ToneSynthesizer(ms_per_char=4, min_ms=100)
        self.before = before

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        return self.inner.identity(voice=voice, instructions=instructions)

    def synthesize(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> Any:
        if self.before is not None:
            self.before()
        return self.inner.synthesize(text, rate=rate, voice=voice, instructions=instructions)


def hooked_speech(before: Hook | None = None, *, fail: bool = False) -> SpeechFactory:
    def factory(settings: FlowSettings, rate: int) -> CallSpeech:
        if fail:
            raise RuntimeError("speech engines exploded")
        return CallSpeech(TextTranscriber(), HookedSynthesizer(before))

    return factory


@dataclass
class Ledger:
    """What the apps reported, and how the process saw each call end."""

    metrics: Metrics = field(default_factory=Metrics)
    records: list[CallReport] = field(default_factory=list)
    sink_fails: bool = False

    async def sink(self, report: CallReport) -> None:
        self.records.append(report)
        if self.sink_fails:
            raise OSError("disk full")

    def active(self) -> float:
        return self.metrics.active_calls._value.get()  # type: ignore[no-any-return]

    async def wait(self, count: int, timeout: float = 10.0) -> list[CallReport]:
        async with asyncio.timeout(timeout):
            while len(self.records) < count:  # noqa: ASYNC110 - the sink's own list
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # a second record would show up now
        return self.records

    def check(self, caplog: pytest.LogCaptureFixture, call_ids: Sequence[str]) -> None:
        assert sorted(r.call_id for r in self.records) == sorted(call_ids), "exactly one record per call"
        for call_id in call_ids:
            ended = [r for r in caplog.records if r.getMessage().startswith(f"call {call_id}: ended (")]
            assert len(ended) == 1, f"one 'ended' line for {call_id}: {[r.getMessage() for r in ended]}"
        assert self.active() == 0, "ivr_active_calls is back at zero"
        tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]
        assert not tracebacks, [r.getMessage() for r in tracebacks]


# -- dialplan-only mode ------------------------------------------------------------------------


@dataclass
class Dialplan:
    app: DialplanApp
    server: AudioSocketServer
    ledger: Ledger


async def start_dialplan(ledger: Ledger, speech: SpeechFactory, **kw: Any) -> Dialplan:
    app = DialplanApp(
        services=CallServices(
            flows=FlowCatalog(DATA, default="menu"),
            speech=speech,
            on_report=ledger.sink,
            metrics=ledger.metrics,
        ),
        rate_timeout=kw.pop("rate_timeout", 0.3),
        **kw,
    )
    server = AudioSocketServer(AudioSocketConfig(port=0, idle_timeout=5.0), on_session=app.handle)
    await server.start()
    return Dialplan(app, server, ledger)


async def peer(
    port: int, call_id: uuid.UUID, first: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_uuid(call_id) + first)
    await writer.drain()
    return reader, writer


async def talk(writer: asyncio.StreamWriter, rate: int, seconds: float) -> None:
    """Send silence frames at ``rate`` for ``seconds``, paced, as Asterisk does while the caller is up."""
    frame = encode_audio(bytes(rate // 50 * 2), rate)
    for _ in range(int(seconds * 50)):
        if writer.is_closing():
            return
        writer.write(frame)
        await asyncio.sleep(0.02)


async def test_dialplan_call_hung_up_just_as_a_prompt_starts(caplog: pytest.LogCaptureFixture) -> None:
    """Defect 4: play() on a session closed a moment before must not fail the handler."""
    caplog.set_level(logging.INFO)
    ledger = Ledger()
    call_id = uuid.uuid4()
    holder: list[Dialplan] = []

    def hang_up_first() -> None:
        holder[0].server.sessions[call_id].hangup("caller hung up")

    dp = await start_dialplan(ledger, hooked_speech(hang_up_first))
    holder.append(dp)
    try:
        _, writer = await peer(dp.server.port, call_id, encode_audio(bytes(640), 16000))
        [report] = await ledger.wait(1)
        assert report.outcome in ("caller_hangup", "hangup")
        ledger.check(caplog, [str(call_id)])
        writer.close()
    finally:
        await dp.server.close()


async def _wait_session(dp: Dialplan, call_id: uuid.UUID) -> None:
    async with asyncio.timeout(5):
        while call_id not in dp.server.sessions:  # noqa: ASYNC110 - server state
            await asyncio.sleep(0.01)


DIALPLAN_CASES = [
    "uuid_and_malformed_message_in_one_packet",
    "closed_before_any_audio",
    "no_audio_at_all",
    "speech_engines_fail",
    "unknown_flow",
    "record_not_written",
    "over_the_limit",
    "server_closes_mid_call",
    "peer_resets_mid_prompt",
    "caller_hangs_up_mid_prompt",
]


@pytest.mark.parametrize("case", DIALPLAN_CASES)
async def test_dialplan_call_failure_points(case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ledger = Ledger(sink_fails=case == "record_not_written")
    kw: dict[str, Any] = {}
    if case == "unknown_flow":
        kw["flow"] = "nope"
    if case == "over_the_limit":
        kw["max_calls"] = 1
    dp = await start_dialplan(ledger, hooked_speech(fail=case == "speech_engines_fail"), **kw)
    ids = [uuid.uuid4()]
    writers: list[asyncio.StreamWriter] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        first = b"\x10\x00\x03abc" if case == "uuid_and_malformed_message_in_one_packet" else b""
        _, writer = await peer(dp.server.port, ids[0], first)
        writers.append(writer)
        if case == "closed_before_any_audio":
            writer.close()
        elif case != "no_audio_at_all" and not first:
            tasks.append(asyncio.create_task(talk(writer, 16000, 3.0)))
        if case == "no_audio_at_all":
            await asyncio.sleep(0.8)  # past the rate timeout: the call starts at 8 kHz
            writer.close()
        elif case == "over_the_limit":
            await _wait_session(dp, ids[0])
            ids.append(uuid.uuid4())
            _, second = await peer(dp.server.port, ids[1], encode_audio(bytes(640), 16000))
            writers.append(second)
            await ledger.wait(1)
            writer.close()
        elif case == "server_closes_mid_call":
            await _wait_session(dp, ids[0])
            await asyncio.sleep(0.3)
            await dp.server.close()
        elif case == "peer_resets_mid_prompt":
            await asyncio.sleep(0.3)
            writer.transport.abort()
        elif case == "caller_hangs_up_mid_prompt":
            await asyncio.sleep(0.3)
            writer.close()
        records = await ledger.wait(len(ids))
        ledger.check(caplog, [str(i) for i in ids])
        outcomes = {r.call_id: r.outcome for r in records}
        if case in ("speech_engines_fail", "unknown_flow"):
            assert outcomes[str(ids[0])] == "error"
        if case == "over_the_limit":
            assert outcomes[str(ids[1])] == "busy"
        if case == "record_not_written":
            assert dp.app.reports[0].call_id == str(ids[0]), "the app still knows the call"
            assert any("call record not written" in r.getMessage() for r in caplog.records)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            writer.close()
        await dp.server.close()


# -- ARI mode ----------------------------------------------------------------------------------


@dataclass
class Ari:
    sim: SimAsterisk
    app: AriApp
    server: AudioSocketServer
    ledger: Ledger


async def start_ari(
    ledger: Ledger,
    speech: SpeechFactory,
    *,
    sim_kw: dict[str, Any] | None = None,
    sim_type: type[SimAsterisk] = SimAsterisk,
    **config: Any,
) -> Ari:
    legs = CallerLegs()
    sim = sim_type(**{"username": "ivr", "password": "pw", "media_connector": legs.connect, **(sim_kw or {})})
    await sim.start()
    server = AudioSocketServer(AudioSocketConfig(port=0))
    await server.start()
    app = AriApp(
        ari=AriClient(sim.base_url, "ivr", "pw"),
        audiosocket=server,
        services=CallServices(
            flows=FlowCatalog(DATA, default="menu"),
            speech=speech,
            on_report=ledger.sink,
            metrics=ledger.metrics,
        ),
        config=AriAppConfig(advertise=f"127.0.0.1:{server.port}", step_timeout=0.5, **config),
    )
    await app.start(heartbeat=1.0)
    return Ari(sim, app, server, ledger)


async def stop_ari(ari: Ari) -> None:
    await ari.app.close()
    assert ari.app.ari is not None
    await ari.app.ari.close()
    await ari.server.close()
    await ari.sim.stop()


async def silent_connector(host: str, port: int, session: uuid.UUID, fmt: str, channel_id: str) -> Any:
    """An Asterisk whose AudioSocket connection never sends the UUID."""
    reader, writer = await asyncio.open_connection(host, port)

    class Leg:
        async def wait_closed(self) -> None:
            await reader.read()

        async def send_dtmf(self, digit: str) -> None:
            return None

        async def close(self) -> None:
            writer.close()

    return Leg()


ARI_CASES = [
    "hangup_just_as_a_prompt_starts",
    "caller_hangs_up_during_setup",
    "uuid_never_arrives",
    "speech_engines_fail",
    "unknown_flow",
    "record_not_written",
    "over_the_limit",
    "app_closes_mid_call",
    "media_reset_mid_call",
    "originate_never_answered",
]


@pytest.mark.parametrize("case", ARI_CASES)
async def test_ari_call_failure_points(case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ledger = Ledger(sink_fails=case == "record_not_written")
    holder: list[Ari] = []

    def hang_up_first() -> None:
        for session in list(holder[0].server.sessions.values()):
            session.hangup("caller hung up")

    before = hang_up_first if case == "hangup_just_as_a_prompt_starts" else None
    sim_kw: dict[str, Any] = {}
    if case == "caller_hangs_up_during_setup":
        sim_kw["media_stasis_delay"] = 0.3
    if case == "uuid_never_arrives":
        sim_kw["media_connector"] = silent_connector
    config: dict[str, Any] = {"max_calls": 1} if case == "over_the_limit" else {}
    ari = await start_ari(
        ledger, hooked_speech(before, fail=case == "speech_engines_fail"), sim_kw=sim_kw, **config
    )
    holder.append(ari)
    sim = ari.sim
    try:
        args = ["flow=nope"] if case == "unknown_flow" else ["flow=menu"]
        if case == "originate_never_answered":
            sim.script_originate("busy", endpoint="PJSIP/*")
            assert ari.app.ari is not None
            await ari.app.ari.originate("PJSIP/bob", app="ivr", channel_id="ivr-out-1")
            ids = ["ivr-out-1"]
        else:
            caller = await sim.place_call(args=args)
            ids = [caller.id]
        if case == "caller_hangs_up_during_setup":
            await sim.wait_for(lambda: any(c.kind == "media" for c in sim.channels.values()))
            await sim.hangup(ids[0])
        elif case == "over_the_limit":
            await sim.wait_for(lambda: bool(ari.server.sessions))
            second = await sim.place_call(args=args)
            ids.append(second.id)
            await ledger.wait(1)
            await sim.hangup(ids[0])
        elif case == "app_closes_mid_call":
            await sim.wait_for(lambda: bool(ari.server.sessions))
            await asyncio.sleep(0.2)
            await ari.app.close()
        elif case == "media_reset_mid_call":
            await sim.wait_for(lambda: bool(ari.server.sessions))
            await asyncio.sleep(0.2)
            for session in list(ari.server.sessions.values()):
                session._transport.abort()
        records = await ledger.wait(len(ids))
        ledger.check(caplog, ids)
        outcomes = {r.call_id: r.outcome for r in records}
        if case in ("uuid_never_arrives", "speech_engines_fail", "unknown_flow"):
            assert outcomes[ids[0]] == "error"
        if case == "over_the_limit":
            assert outcomes[ids[1]] == "busy"
        if case == "originate_never_answered":
            assert outcomes[ids[0]] == "busy"
        if case != "originate_never_answered":
            await sim.wait_for(lambda: ids[0] in sim.destroyed, 5)
        await sim.wait_for(
            lambda: not sim.bridges and not [c for c in sim.channels.values() if c.kind == "media"], 5
        )
    finally:
        await stop_ari(ari)


async def test_ari_call_aborted_before_it_began_still_has_its_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutdown between a caller's StasisStart arriving and its handler running: one record all the same."""
    caplog.set_level(logging.INFO)
    ledger = Ledger()
    ari = await start_ari(ledger, hooked_speech())
    try:
        start = parse_event(
            {
                "type": "StasisStart",
                "application": "ivr",
                "args": ["flow=menu"],
                "channel": {"id": "early-1", "name": "PJSIP/5551234-00000001", "state": "Ring"},
            }
        )
        ari.app.dispatcher.dispatch(start)  # the call exists; its handler has not run yet
        await ari.app.close()
        [report] = await ledger.wait(1)
        assert (report.call_id, report.outcome) == ("early-1", "aborted")
        ledger.check(caplog, ["early-1"])
    finally:
        await stop_ari(ari)


@pytest.mark.parametrize("gone", ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"])
async def test_a_caller_gone_before_the_call_task_ran_still_ends_in_one_record(
    gone: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller hangs up as it enters Stasis: its StasisStart and hang-up are handled in one step of
    its event route, so the call's task is stopped before it ever ran. It still ends in one record (the
    task was cancelled unstarted: no record, and shutdown waited for the call forever)."""
    caplog.set_level(logging.INFO)
    ledger = Ledger()
    ari = await start_ari(ledger, hooked_speech())
    channel = {"id": "early-2", "name": "PJSIP/5551234-00000002", "state": "Ring"}
    try:
        ari.app.dispatcher.dispatch(
            parse_event(
                {"type": "StasisStart", "application": "ivr", "args": ["flow=menu"], "channel": channel}
            )
        )
        ended: dict[str, object] = {"type": gone, "application": "ivr", "channel": channel}
        if gone == "ChannelDestroyed":
            ended |= {"cause": 16, "cause_txt": "Normal Clearing"}
        ari.app.dispatcher.dispatch(parse_event(ended))
        [report] = await ledger.wait(1)
        assert (report.call_id, report.outcome) == ("early-2", "caller_hangup")
        async with asyncio.timeout(5):
            await ari.app.close()
        assert not ari.app.calls
        ledger.check(caplog, ["early-2"])
    finally:
        async with asyncio.timeout(10):  # a call that never ends would hold the app's close forever
            await stop_ari(ari)


async def test_a_dialplan_call_whose_handler_had_not_run_at_shutdown_still_has_its_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The UUID arrives in the same step as the server's close: the call's handler task exists but has
    not run. Cancelled then, it would never run at all (no record, its session left open)."""
    caplog.set_level(logging.INFO)
    ledger = Ledger()
    dp = await start_dialplan(ledger, hooked_speech())
    _reader, writer = await asyncio.open_connection("127.0.0.1", dp.server.port)
    call_id = uuid.uuid4()
    try:
        async with asyncio.timeout(5):
            while not dp.server._connections:  # noqa: ASYNC110 - the server's own set
                await asyncio.sleep(0.01)
        [conn] = dp.server._connections
        conn._feed(encode_uuid(call_id))  # the session and its handler task, in this very step
        assert call_id in dp.server.sessions
        async with asyncio.timeout(10):
            await dp.server.close()
        [report] = await ledger.wait(1)
        assert report.call_id == str(call_id)
        ledger.check(caplog, [str(call_id)])
    finally:
        writer.close()
        await dp.server.close()


class HangupDuringBridgeCreation(SimAsterisk):
    """An Asterisk that creates the call's bridge, then (before its reply leaves) sees the caller hang up:
    the hang-up events reach the app while its ``POST /bridges`` is still waiting for the answer."""

    async def _h_create_bridge(self, request: web.Request) -> web.Response:
        response = await super()._h_create_bridge(request)
        await hang_up_before_replying(self)
        return response


async def test_a_caller_who_hangs_up_while_the_bridge_is_being_created_leaves_no_bridge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bridge exists in Asterisk as soon as it handled ``POST /bridges``, whether or not its reply
    reached the call: a call stopped while waiting for that reply (its caller hung up) destroys it too.
    It was left behind (a ``ivr-bridge-...`` with no channel in it, forever)."""
    caplog.set_level(logging.INFO)
    ledger = Ledger()
    ari = await start_ari(ledger, hooked_speech(), sim_type=HangupDuringBridgeCreation)
    sim = ari.sim
    try:
        caller = await sim.place_call(args=["flow=menu"])
        [report] = await ledger.wait(1)
        assert report.outcome == "caller_hangup"
        ledger.check(caplog, [caller.id])
        assert ("POST", "/ari/bridges") in sim.requests
        await sim.wait_for(lambda: not sim.bridges, 5)
    finally:
        await stop_ari(ari)
