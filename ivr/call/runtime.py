"""One call: the pure flow engine, driven by real media, speech and telephony.

The engine decides; the runtime performs. It owns every task it starts (prompt watchers, STT, webhooks,
transfers, the media reader) and cancels them all when the call ends, whichever way it ends. Flow events
reach the engine through one inbox, handled by one loop, so the engine never sees two events at once.

Its parts, one owner each: :mod:`ivr.call.listening` hears the caller (VAD, end of turn, barge-in and
backchannels, the no-input and digit timers); :mod:`ivr.call.waiting` keeps a waiting caller out of dead
air (fillers, hold tones); :mod:`ivr.call.transcribing` turns each answer into text (streamed where the
engine takes live audio). The runtime's own work is in three mixins: :mod:`ivr.call.prompting` plays
prompts (a prompt's text-to-speech is read ahead to its first audio, under a deadline, while the hold line
fills the wait), :mod:`ivr.call.answering` takes each answer to the engine, and
:mod:`ivr.call.action_tasks` performs the actions that run as tasks (record, classify, webhook,
transfer). This module holds the call's loop and its tasks, the action dispatch and the caller's frames
and keys (the per-frame path stays here, on the class).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from ivr.call.action_tasks import ActionTasks
from ivr.call.answering import Answering
from ivr.call.frame_batch import FrameIntake
from ivr.call.listening import Listening
from ivr.call.ports import CallControl, CallSpeech, Classifier, WebhookHandler
from ivr.call.prompting import Prompting, _Pending
from ivr.call.recording import Recorder
from ivr.call.recording import finish as finish_recording
from ivr.call.report import MASKED_DIGIT, CallReport, TraceEvent, Tracer
from ivr.call.services import CallServices
from ivr.call.transcribing import LiveTranscription, PauseWords
from ivr.call.waiting import HoldLine
from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.flow.engine import FlowEngine
from ivr.flow.questions import backchannel_ms
from ivr.speech.errors import ProviderError, error_kind
from ivr.transport import AudioIn, DigitIn, MediaClosed, MediaTransport, PeerHangup, Playout, discard_audio

log = logging.getLogger(__name__)


class CallRuntime(Prompting, Answering, ActionTasks):
    """Runs one call to its end. Create one per call; ``run()`` returns the call's report."""

    def __init__(
        self,
        *,
        engine: FlowEngine,
        media: MediaTransport,
        control: CallControl,
        speech: CallSpeech,
        call_id: str,
        dtmf_from_media: bool,
        services: CallServices,
        report: CallReport | None = None,
    ) -> None:
        self.engine = engine
        self.clock: Callable[[], float] = services.clock or time.time
        """The wall clock the flow sees as ``now`` (a simulation pins it)."""
        self.recordings_dir: Path | None = services.recordings_dir
        self.engine_executor = services.engine_executor
        self._recorder: Recorder | None = None
        self._record_task: asyncio.Task[Any] | None = None
        self.webhook: WebhookHandler | None = services.webhook
        self.tracer: Tracer | None = services.tracer
        self._path_seen = 0
        self.media = media
        self.control = control
        self.speech = speech
        self.call_id = call_id
        self.dtmf_from_media = dtmf_from_media
        self.http: aiohttp.ClientSession | None = services.http
        self.classifier: Classifier | None = services.classifier
        self.audio_dir: Path | None = services.audio_dir
        self.max_call_seconds = services.max_call_seconds
        self.report = report if report is not None else CallReport(call_id=call_id, flow="")
        """Filled in as the call goes (the call's owner may pass its own, so nothing is lost on failure)."""
        self.report.flow = engine.library.root
        self.report.flow_version = engine.version
        self._inbox: asyncio.Queue[ev.Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.metrics = services.metrics
        speech_audio = getattr(speech.transcriber, "engine", "") != "sim-text"  # a text carrier, not speech
        words = PauseWords(
            speech, rate=media.rate, engine=engine, executor=services.engine_executor, spawn=self._spawn
        )
        self.listening = Listening(
            media.rate, self, models=services.turns, speech_audio=speech_audio, words=words
        )
        self._intake = FrameIntake(self.listening.frame_bytes, self._on_frame)
        settings = engine.settings
        self.hold = HoldLine(
            rate=media.rate,
            play=self._start_prompt,
            render=lambda text: self._prompt_source(self.engine.fixed_prompt("filler", text)),
            gap_ms=settings.filler_after_ms,
            tone=settings.hold_tone,
            spawn=self._spawn,
        )
        self._live: LiveTranscription | None = None
        self._playback: Playout | _Pending | None = None
        self._play_action: act.Play | None = None
        self._prompt_task: asyncio.Task[Any] | None = None
        self._play_gen = 0
        self._barge_traced = -1
        self._carried: ev.SpeechRecognized | None = None
        self._reply_since: float | None = None
        """Loop time the caller's last utterance ended, until the first frame of a reply is written."""
        self._reply_playbacks: list[Playout] = []
        self._hung_up = False
        self._abort_reason: str | None = None
        self._goodbye: str | None = None
        self.finished = False
        self._route_frames()  # the intake hands frames straight to the listening from the start
        self.first_audio_at: float | None = None
        """Loop time of the first prompt frame written (greeting latency)."""
        self.on_step: Callable[[], None] | None = None
        """The checkpoint hook: told after each engine event that entered a step or counted a retry."""
        self._progress: tuple[int, int, int, str] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def caller_hung_up(self) -> None:
        """The caller's channel is gone (ARI): end the flow without hanging anything up."""
        self._hung_up = True
        self._post(ev.Hangup())

    def abort(self, reason: str, goodbye: str | None = None) -> None:
        """End the call from our side (shutdown, limits): say ``goodbye`` if given, hang up, tear down."""
        self._abort_reason = reason
        self._goodbye = goodbye
        self._post(ev.Hangup())

    async def run(self, started: ev.CallStarted | ev.CallResumed) -> CallReport:
        self.listening.clock = asyncio.get_running_loop().time  # caller frames are stamped with it
        self._spawn(self._read_media(), "media")
        try:
            async with asyncio.timeout(self.max_call_seconds):
                await self._apply(await self._handle(started))
                while not self.engine.finished:
                    event = await self._inbox.get()
                    await self._apply(await self._handle(event))
                if self._abort_reason is not None:
                    self.report.outcome, self.report.reason = "aborted", self._abort_reason
                    if self._goodbye and not self._hung_up and not self.media.closed:
                        await self._say_and_wait(self._goodbye)
                    await self._hangup(self._abort_reason)
        except TimeoutError:
            self._record_error(f"maximum call duration ({self.max_call_seconds:g} s) reached")
            self.report.outcome, self.report.reason = "error", "max call duration"
            await self._hangup("max call duration")
        finally:
            self.finished = True
            self._route_frames()
            await self._teardown()
        return self.report

    async def _handle(self, event: ev.Event) -> list[act.Action]:
        """The engine's decision on ``event``: on the process's engine thread when there is one, so
        template rendering (bounded, but up to a few ms) never runs on the loop that paces audio. The
        checkpoint hook hears of every step change (the store coalesces saves: no I/O here)."""
        executor = self.engine_executor
        if executor is None:
            actions = self.engine.handle(event, now=self.clock())
        else:
            work = functools.partial(self.engine.handle, event, now=self.clock())
            actions = await asyncio.get_running_loop().run_in_executor(executor, work)
        if self.on_step is not None and not self.engine.finished and self.engine.progress != self._progress:
            self._progress = self.engine.progress
            self.on_step()
        return actions

    async def _teardown(self) -> None:
        await finish_recording(self._recorder, self._record_task)  # a message left so far is kept
        self.listening.close()
        self.hold.close()
        self.media.on_played(None)
        self._settle_reply_latency()  # a reply cut short by the hangup still counts
        self._stop_playback()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.speech.aclose()
        except Exception as exc:
            log.warning("call %s: closing speech engines: %s", self.call_id, exc)
        engine = self.engine
        self.report.path = [
            f"{p.flow}:{p.step}" if p.flow != self.report.flow else p.step for p in engine.path
        ]
        self.report.transcript = [(t.speaker, t.text) for t in engine.transcript]
        self.report.variables = engine.safe_variables()
        self.report.ended_at = time.time()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"call-{self.call_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("call %s: task %s failed: %r", self.call_id, task.get_name(), exc)
            self._post(ev.ProviderError("media", f"internal error: {exc!r}"))

    def _post(self, event: ev.Event) -> None:
        if isinstance(event, ev.ProviderError):
            self.report.provider_errors.append(event.provider)
        self._inbox.put_nowait(event)

    def _record_error(self, message: str) -> None:
        self.report.errors.append(message)
        log.warning("call %s: %s", self.call_id, message)

    def _provider_failed(self, provider: str, what: str, exc: ProviderError) -> None:
        """One log line and one metric per provider failure (a wrong answer, a hang, a refusal...)."""
        self._record_error(f"{what}: {exc}")
        if self.metrics is not None:
            self.metrics.provider_error(exc.engine, error_kind(exc))

    # -- actions ---------------------------------------------------------------------------------

    def _trace(self, kind: str, text: str = "", step: str | None = None) -> None:
        if self.tracer is not None:
            now = asyncio.get_running_loop().time()
            self.tracer(TraceEvent(kind, step if step is not None else self.engine.current_step, text, now))

    async def _apply(self, actions: list[act.Action]) -> None:
        if self.tracer is not None:
            path = self.engine.path
            for record in path[self._path_seen :]:
                self._trace("step", record.via, record.step)
            self._path_seen = len(path)
        for action in actions:
            if isinstance(action, act.Play):
                await self._play(action)
            elif isinstance(action, act.Listen):
                self._start_listen(action)
            elif isinstance(action, act.Classify):
                self._stop_listening()
                self._spawn(self._waited(self._classify(action)), "classify")
            elif isinstance(action, act.HttpRequest):
                self._stop_listening()
                self._spawn(self._waited(self._webhook(action), action.filler or ""), "webhook")
            elif isinstance(action, act.Record):
                self._stop_listening()
                self._stop_playback()
                self._record_task = self._spawn(self._record(action), "record")
            elif isinstance(action, act.Transfer):
                self._stop_listening()
                self._stop_playback()
                self._spawn(self._transfer(action), "transfer")
            elif isinstance(action, act.HangupCall):
                self._stop_listening()
                await self._hangup(action.reason)
            elif isinstance(action, act.Log):
                level = logging.getLevelName(action.level.upper())
                log.log(level, "call %s [%s]: %s", self.call_id, action.step or "-", action.message)
            elif isinstance(action, act.End):
                self.report.outcome, self.report.reason = action.outcome, action.reason
                self._trace("end", action.outcome)
                self._stop_listening()
        if not any(isinstance(a, act.Listen) for a in actions):
            self._carried = None  # only the question right after a statement takes what was said over it
        if self._playback is not None and self.listening.listen is None and self._play_action_barge():
            # A barge-in-able statement (say/play): listen for speech onset only, to interrupt it.
            assert self._play_action is not None
            step = self._step_model(self._play_action.step)
            self.listening.start_onset_only(backchannel_ms(step, self.engine.settings))

    async def _hangup(self, reason: str) -> None:
        if self._hung_up:
            return
        self._hung_up = True
        self._stop_playback()
        try:
            await self.control.hangup(reason)
        except Exception as exc:
            self._record_error(f"hangup failed: {exc}")
        if not self.media.closed:
            self.media.hangup(reason)

    def _step_model(self, name: str) -> object:
        return self.engine.flow.steps.get(name)

    # -- listening -------------------------------------------------------------------------------

    def _use_language(self, language: str) -> None:
        """Per-language engines (:class:`ivr.call.languages.SpeechByLanguage`) follow the flow's language."""
        use = getattr(self.speech, "use", None)
        if use is not None:
            use(language)

    def _stop_listening(self) -> None:
        self.listening.stop()

    # -- media -----------------------------------------------------------------------------------

    async def _read_media(self) -> None:
        # Audio reaches the endpointer straight from the socket callback (no task wake-up per frame);
        # only digits and the end of the media come through the events. What we play is told to the
        # echo gate the same way.
        self.media.on_played(self.listening.played)
        self.media.on_audio(self._intake.audio)
        self.media.on_measured_audio(self._intake.measured)
        try:
            async for event in self.media.events():
                if type(event) is AudioIn:  # queued before the sink was set
                    self._intake.audio(event.payload)
                elif type(event) is DigitIn:
                    if self.dtmf_from_media:
                        self.on_dtmf(event.digit)
                elif type(event) is PeerHangup or type(event) is MediaClosed:
                    break
        finally:
            self.media.on_measured_audio(None)
            self.media.on_audio(discard_audio)  # the call is over: what still arrives is nobody's
        if not self._hung_up:
            self._post(ev.Hangup())

    def _route_frames(self) -> None:
        """Point the intake's direct frames at the listening itself while :meth:`_on_frame` would hand
        it every frame anyway (no recording, call not over): one call less per frame. Called wherever
        what ``_on_frame`` decides can change (a recorder is made or done, the call finishes)."""
        recording = self._recorder is not None and self._recorder.active
        self._intake.direct = self._on_frame if self.finished or recording else self.listening.feed

    def _on_frame(self, frame: bytes, level: float | None = None) -> None:
        if self.finished:
            return  # a frame measured after the call ended
        if self._recorder is not None and self._recorder.active:
            self._recorder.feed(frame)
            return
        self.listening.feed(frame, level)

    def on_dtmf(self, digit: str) -> None:
        """A key from the one DTMF source of this call (ARI events, or AudioSocket in dialplan mode)."""
        listen = self.listening.listen
        shown = digit if listen is not None and not listen.sensitive else MASKED_DIGIT
        self.report.dtmf.append(shown)
        self._trace("dtmf", shown)
        if self._recorder is not None and self._recorder.active:
            self._recorder.key(digit)
            return
        if self._playback is not None and ((listen is not None and listen.dtmf) or self._play_action_barge()):
            self._barge_in()
        self._post(ev.DtmfReceived(digit))
        self.listening.key(digit)

    def _play_action_barge(self) -> bool:
        return self._play_action is not None and self._play_action.barge_in


def stasis_args(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split Stasis arguments into ``key=value`` pairs and positional ones."""
    pairs: dict[str, str] = {}
    positional: list[str] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key:
            pairs[key.strip()] = value
        else:
            positional.append(arg)
    return pairs, positional
