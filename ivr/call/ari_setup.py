"""Setting up an ARI call's media (steps 1-5 of :mod:`ivr.call.ari_call`), each step under a timeout.

Answer the caller unless the dialplan did; pick the media format (:func:`media_format_for`) and transport,
asked of Asterisk together; create the mixing bridge and route the media channel's id to the call before
it exists; attach the media through the transport's strategy (:mod:`ivr.call.media_attach`); wait for the
media channel's ``StasisStart``; bridge caller and media. A timeout or an ARI error becomes a
:class:`~ivr.call.media_attach.SetupError` naming the step.

A mixin of :class:`~ivr.call.ari_call.AriCall`: the attributes below are the call's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from ivr.ari.errors import AriError, NotFound
from ivr.call.ari_config import AriAppConfig
from ivr.call.media_attach import (
    MEDIA_ARG,
    MEDIA_VARIABLE,
    AttachRequest,
    MediaAttach,
    MediaAttachments,
    SetupError,
)
from ivr.call.runtime import stasis_args

if TYPE_CHECKING:
    from ivr.ari.models import StasisStart
    from ivr.call.ari_link import CallLink
    from ivr.call.lifecycle import CallLife
    from ivr.transport import MediaTransport

NARROWBAND_FORMATS = frozenset(
    {
        "ulaw",
        "alaw",
        "gsm",
        "g729",
        "g723",
        "g726",
        "g726aal2",
        "adpcm",
        "ilbc",
        "lpc10",
        "speex",
        "slin",
        "codec2",
    }
)
"""Asterisk formats that carry 8 kHz audio: their callers get ``slin`` media."""


def media_format_for(native: str) -> str:
    """The externalMedia format for a caller whose ``CHANNEL(audionativeformat)`` is ``native``.

    ``(ulaw)``, ``(alaw)``, ``(gsm)``, ``(slin)`` ... (8 kHz) give ``slin``; anything wider (``(g722)``,
    ``(slin16)``, ``(opus)``, a Local channel's ``(slin192)``) gives ``slin16``. The first format listed is
    the caller's preferred one. Rates above 16 kHz are not passed through: the speech engines work at
    16 kHz (STT) and 22-24 kHz (TTS), so a wider socket would only multiply every frame's cost while
    Asterisk resamples to the caller's rate anyway.
    """
    names = [name.strip().lower() for name in native.strip().strip("()").split("|") if name.strip()]
    return "slin" if names and names[0] in NARROWBAND_FORMATS else "slin16"


class SetupHost(Protocol):
    """What setting up a call needs of the app serving it."""

    @property
    def config(self) -> AriAppConfig: ...

    @property
    def media(self) -> MediaAttachments:
        """How calls get their media (one strategy per transport)."""


class CallSetup:
    """Sets up an ARI call's media, from answer to bridged (a mixin of :class:`~ivr.call.ari_call.AriCall`)."""

    app: SetupHost
    link: CallLink
    start_event: StasisStart
    caller_id: str
    bridge_id: str
    media_id: str
    life: CallLife
    media_in_stasis: asyncio.Event
    session: MediaTransport | None
    attach: MediaAttach | None
    _bridge_created: bool
    """The bridge may exist in Asterisk: asked for (or adopted); teardown destroys it."""
    _bridge_creation: asyncio.Future[Any] | None
    """The bridge's ``POST /bridges``, which outlives a stopped call until it settled."""
    _media_created: bool
    """The media channel may exist in Asterisk: its ``externalMedia`` was sent; teardown deletes it."""
    _media_creation: asyncio.Future[Any] | None
    """That ``externalMedia`` request, which outlives a stopped call until it settled."""

    async def _step(self, name: str, work: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self.app.config.step_timeout):
                return await work
        except TimeoutError:
            raise SetupError(name, f"no answer within {self.app.config.step_timeout:g} s") from None
        except AriError as exc:
            raise SetupError(name, str(exc)) from None

    async def _setup(self) -> None:
        app, ari, caller = self.app, self.link.ari, self.start_event.channel
        if caller.state != "Up":
            await self._step("answer", ari.answer(self.caller_id))
        fmt, attach = await self._step("format", self._pick_media())
        # -- ARI: the bridge, and the media channel's id routed to this call before it exists ------------
        # The bridge exists in Asterisk once it handled the request, whether or not its reply reaches us:
        # a call stopped while waiting for it (its caller hung up) must still destroy it at teardown, after
        # the request settled (a DELETE sent first would find nothing, and the bridge would stay forever).
        self._bridge_created = True
        self._bridge_creation = asyncio.ensure_future(
            ari.create_bridge(type="mixing", bridge_id=self.bridge_id)
        )
        await self._step("bridge", asyncio.shield(self._bridge_creation))
        self.link.bind_bridge(self.bridge_id)
        self.link.bind(self.media_id)
        # -- media attach (the transport's strategy) -----------------------------------------------------
        self.attach = attach
        self.session = await attach.attach(
            AttachRequest(ari, self.link.app, self.media_id, fmt, app.config.step_timeout, self._created),
            self._step,
        )
        self.life.media = self.session
        await self._step("media StasisStart", self.media_in_stasis.wait())
        # -- ARI: caller and media in the bridge ----------------------------------------------------------
        await self._step("addChannel", ari.add_channel(self.bridge_id, [self.caller_id, self.media_id]))

    async def _settled(self, creation: asyncio.Future[Any] | None) -> None:
        """Until a creation request (the bridge's, the media channel's) has its answer (bounded by the step
        timeout), so that a teardown's DELETE cannot overtake it."""
        if creation is None:
            return
        if not creation.done():
            # wait() neither raises the request's own failure (it answered: moot now) nor cancels it
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({creation}, timeout=self.app.config.step_timeout)
            if not creation.done():
                creation.cancel()
        if not creation.cancelled():
            creation.exception()  # retrieved: its failure was the call's (or is moot now)

    def _created(self, creation: asyncio.Future[Any]) -> None:
        self._media_created = True
        self._media_creation = creation

    async def _pick_media(self) -> tuple[str, MediaAttach]:
        """The media format and transport, asked of Asterisk together (one round trip at most)."""
        app = self.app
        pairs, _positional = stasis_args(list(self.start_event.args))
        asked = pairs.get(MEDIA_ARG) or self.start_event.channel.channelvars.get(MEDIA_VARIABLE)
        lookup = asked is None and app.media.choosable
        configured = app.config.format
        fmt_task = None if configured else asyncio.ensure_future(self._pick_format())
        try:
            if lookup:
                with contextlib.suppress(NotFound, AriError):
                    asked = await self.link.ari.get_variable(self.caller_id, MEDIA_VARIABLE) or None
            fmt = await fmt_task if fmt_task is not None else (configured or "slin16")
        finally:
            if fmt_task is not None and not fmt_task.done():
                fmt_task.cancel()
        return fmt, app.media.choose(self.caller_id, asked)

    async def _pick_format(self) -> str:
        try:
            native = await self.link.ari.get_variable(self.caller_id, "CHANNEL(audionativeformat)")
        except NotFound:
            return "slin16"
        return media_format_for(native)
