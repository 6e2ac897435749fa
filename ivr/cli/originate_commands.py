"""``ivr originate``: place an outbound call into the running app, through ARI REST only.

It must not open an events WebSocket for the app: Asterisk allows one per application name and the
newest wins, so that would take the app away from the running ``ivr run``. The running app answers
the call (StasisStart with ``flow=...``), runs the flow, and reports and records the outcome, including
busy / no answer with the hangup cause. This command prints the channel id and, with ``--wait``, whether
the call was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from ivr.ari.client import AriClient
from ivr.ari.errors import AriConnectionError, AriError, NotFound, Unauthorized
from ivr.call.ari_app import ORIGINATE_PREFIX
from ivr.config import ConfigError, load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("originate", help="place an outbound call into the running app (ARI REST only)")
    p.add_argument("--endpoint", required=True, help="e.g. Local/5551234@outbound or PJSIP/6001")
    p.add_argument("--flow", required=True, help="flow the answered call runs (file stem)")
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="flow variable (repeatable)")
    p.add_argument("--caller-id", help='caller id shown to the callee, e.g. "Clinic <5550000>"')
    p.add_argument("--timeout", type=int, default=30, help="seconds to ring")
    p.add_argument("--wait", action="store_true", help="wait until answered or gone, and say which")
    p.set_defaults(func=cmd_originate)


def cmd_originate(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"ivr originate: {exc}", file=sys.stderr)
        return 2
    pairs = []
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep or not key or "," in item:
            print(f"ivr originate: --var {item!r}: expected KEY=VALUE without commas", file=sys.stderr)
            return 2
        pairs.append(f"{key}={value}")
    client = AriClient(settings.ari_url, settings.ari_user, settings.ari_password.get_secret_value())
    try:
        return asyncio.run(_originate(client, settings.ari_app, args, pairs))
    except Unauthorized:
        print("ivr originate: ARI refused the credentials (IVR_ARI_USER / IVR_ARI_PASSWORD)", file=sys.stderr)
    except AriConnectionError as exc:
        print(f"ivr originate: cannot reach ARI at {settings.ari_url}: {exc}", file=sys.stderr)
    except AriError as exc:
        print(f"ivr originate: {exc}", file=sys.stderr)
    return 2


async def _originate(client: AriClient, app: str, args: argparse.Namespace, pairs: list[str]) -> int:
    async with client:
        channel_id = f"{ORIGINATE_PREFIX}{uuid.uuid4()}"
        await client.originate(
            args.endpoint,
            app=app,
            app_args=[f"flow={args.flow}", *pairs],
            caller_id=args.caller_id,
            timeout=args.timeout,
            channel_id=channel_id,
        )
        print(f"originated {channel_id} to {args.endpoint} (flow {args.flow})")
        if not args.wait:
            return 0
        async with asyncio.timeout(args.timeout + 10):
            while True:
                try:
                    channel = await client.get_channel(channel_id)
                except NotFound:
                    print("not answered (the running app logs and records the cause)")
                    return 1
                if channel.state == "Up":
                    print("answered: the running app is running the flow")
                    return 0
                await asyncio.sleep(0.5)
