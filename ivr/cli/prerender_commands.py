"""``ivr prerender FLOW``: synthesise every fixed text of a flow into the prompt cache.

Texts without template variables sound the same on every call: ``say`` and ``ask`` texts, reprompt
prompts and prefixes, ``invalid`` reprompts, the default prefixes (``settings.no_input_prompt`` ...),
read-back questions, fillers and the shutdown goodbye, in every language of the flow with that
language's voice. A prompt is played as parts (prefix, question, options), each looked up on its own,
so a reprompt's fixed prefix and question come from the cache even when another part is rendered per
call. Keys are (engine, model, voice, instructions, text, rate), exactly as calls look them up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ivr.call.speech import speech_settings
from ivr.config import ConfigError, load_settings
from ivr.flow.errors import FlowError
from ivr.flow.loader import load_library
from ivr.flow.model import Flow, FlowSettings
from ivr.flow.prompts import FixedText, fixed_texts
from ivr.speech.cache import CachingSynthesizer
from ivr.speech.errors import ProviderError
from ivr.speech.registry import SpeechRegistry


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("prerender", help="fill the prompt cache with a flow's fixed prompts")
    p.add_argument("flow", type=Path, help="flow file (its subflows are included)")
    p.add_argument("--rates", default="8000,16000", help="call rates to render for (default: 8000,16000)")
    p.add_argument("--tts", help="engine when the flow names none (default: IVR_TTS)")
    p.add_argument("--cache", type=Path, help="cache directory (default: IVR_PROMPT_CACHE)")
    p.set_defaults(func=cmd_prerender)


def fixed_prompts(flow: Flow, goodbye: str | None = None) -> list[str]:
    """The texts a call can speak that contain no template: cacheable, in flow order, once each."""
    return list(dict.fromkeys(t.text for t in fixed_texts(flow, [goodbye] if goodbye else None)))


def voice_of(settings: FlowSettings, language: str) -> FlowSettings:
    """The flow's settings as a call in ``language`` uses them (that language's engines and voice)."""
    return settings.for_language(language)


def _goodbye(text: str | None) -> list[str] | None:
    return [text] if text else None


def cmd_prerender(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        library = load_library(args.flow)
        rates = [int(r) for r in args.rates.split(",")]
    except (ConfigError, FlowError, ValueError, OSError) as exc:
        print(f"ivr prerender: {exc}", file=sys.stderr)
        return 2
    cache = args.cache or settings.prompt_cache
    if cache is None:
        print("ivr prerender: the prompt cache is disabled (IVR_PROMPT_CACHE is empty)", file=sys.stderr)
        return 2
    registry = SpeechRegistry(cache_dir=cache)
    default_tts = args.tts or settings.tts
    texts: list[FixedText] = [
        t for flow in library.flows.values() for t in fixed_texts(flow, _goodbye(settings.shutdown_goodbye))
    ]
    jobs = [(voice_of(t.settings, t.language), t.text, rate) for t in texts for rate in rates]

    async def run() -> int:
        made = 0
        try:
            for done, (flow_settings, text, rate) in enumerate(jobs, 1):
                speech = registry.open_call(
                    speech_settings(flow_settings, default_stt=settings.stt, default_tts=default_tts),
                    rate=rate,
                )
                synth = speech.synthesizer
                assert isinstance(synth, CachingSynthesizer)
                new = await synth.prerender(
                    text, rate=rate, voice=flow_settings.voice, instructions=flow_settings.tts_instructions
                )
                made += new
                await speech.aclose()
                bar = "#" * (30 * done // len(jobs))
                print(
                    f"\r[{bar:<30}] {done}/{len(jobs)} {'new ' if new else 'have'} {rate} Hz",
                    end="",
                    file=sys.stderr,
                )
        except ProviderError as exc:
            print(f"\nivr prerender: {exc}", file=sys.stderr)
            return 1
        finally:
            await registry.aclose()
        print(f"\n{made} prompts rendered, {len(jobs) - made} already cached, in {cache}", file=sys.stderr)
        return 0

    return asyncio.run(run())
