"""Per-call ARI mode: each of Asterisk's per-call sockets becomes one :class:`~ivr.call.ari_call.AriCall`.

:class:`~ivr.ari.percall_server.PerCallServer` accepts the socket and finds out which call it carries;
:func:`serve_connection` (its call handler) gives the call its own link (REST over the socket, resources
named after the socket's dynamic app) and feeds it the socket's events in order: one socket, one
dispatcher. The call's teardown runs within the ~3.5 s Asterisk keeps the socket open after the caller's
``StasisEnd``, because afterwards nothing the call created could be reached any more.

A socket Asterisk reopened mid-call (``resumed``: the instance that had the call died, or the balancer
between them restarted) carries no ``StasisStart``; the call starts at once, from its checkpoint, and
first removes what the previous owner left (``conn.application``). If that previous owner is this very
process, its old call lets go. When a call's socket drops with the caller still in Stasis, the call
stops here and is resumed wherever Asterisk reconnects (:meth:`AriCall.connection_lost`).
"""

from __future__ import annotations

from ivr.ari.models import StasisStart
from ivr.ari.percall import PerCallConnection
from ivr.call.ari_app import AriApp
from ivr.call.ari_call import AriCall
from ivr.call.ari_link import ConnectionLink


async def serve_connection(app: AriApp, conn: PerCallConnection) -> None:
    """The call on one per-call socket, until the socket closes (``PerCallServer``'s call handler)."""
    channel = conn.channel
    assert channel is not None, "PerCallServer hands over identified calls only"
    if conn.start is not None:
        start = conn.start
    else:  # a reopened socket: no StasisStart, the caller is in the application already
        start = StasisStart(
            type="StasisStart",
            application=conn.app,
            timestamp="",
            asterisk_id="",
            raw={},
            channel=channel,
            args=(),
        )
    earlier = app.calls.get(channel.id)
    if earlier is not None and conn.resumed:
        earlier.connection_lost(superseded=True)
    call = AriCall(app, start, ConnectionLink(conn), leftovers=conn.application if conn.resumed else None)
    app.calls[channel.id] = call
    if conn.resumed:
        call.begin()
    async for event in conn.events():  # the caller's StasisStart first (a new call): it begins the call
        await call.handle(event)
    if not conn.left_stasis:
        call.connection_lost()  # Asterisk reconnects the caller (maybe elsewhere), which resumes the call
