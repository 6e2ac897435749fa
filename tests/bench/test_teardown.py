"""The bench reads the "after" RSS once the server itself has ended every call (``ivr_active_calls`` 0),
not merely once the callers have hung up: an ARI call still tearing down still holds its memory."""

from __future__ import annotations

from aiohttp import web

from ivr.bench.procfs import free_port
from ivr.bench.servers import wait_calls_ended


async def _metrics(values: list[str]) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        text = values.pop(0) if len(values) > 1 else values[0]
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_waits_until_no_call_is_active() -> None:
    served = ["ivr_active_calls 3.0\n", "ivr_active_calls 1.0\n", "ivr_active_calls 0.0\n"]
    runner, port = await _metrics(served)
    try:
        assert await wait_calls_ended(port, timeout=10.0)
        assert served == ["ivr_active_calls 0.0\n"], "it asked until the gauge said 0"
    finally:
        await runner.cleanup()


async def test_gives_up_after_its_timeout_and_a_server_without_the_gauge_is_done() -> None:
    runner, port = await _metrics(["ivr_active_calls 2.0\n"])
    try:
        assert not await wait_calls_ended(port, timeout=0.3)
    finally:
        await runner.cleanup()
    runner, port = await _metrics(["# the C reference has no metrics at all\n"])
    try:
        assert await wait_calls_ended(port, timeout=0.3)
    finally:
        await runner.cleanup()
    assert await wait_calls_ended(None, timeout=0.3)
