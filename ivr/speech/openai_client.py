"""One lazily created ``AsyncOpenAI`` client per process (or per registry), key from the environment.

The client is built with ``max_retries=0`` (``ivr.speech.retry`` is the only retry layer)
and a short connect timeout; per-request timeouts come from the retry deadline. The key
is read from ``OPENAI_API_KEY`` (and the endpoint from ``OPENAI_BASE_URL``) when the
first request needs it, never from flow files; a missing key is a clear
:class:`ProviderConfigError` rather than the SDK's construction-time exception.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Mapping

import httpx2
import openai

from ivr.speech.errors import ProviderConfigError

CONNECT_TIMEOUT = 5.0


class OpenAIClientSource:
    """Creates the shared ``AsyncOpenAI`` client on first use; ``aclose()`` closes it."""

    def __init__(self, env: Mapping[str, str] | None = None, *, engine: str = "openai") -> None:
        self._env = os.environ if env is None else env
        self._engine = engine
        self._client: openai.AsyncOpenAI | None = None

    @property
    def configured(self) -> bool:
        """True when an API key is available (does not create the client)."""
        return bool(self._env.get("OPENAI_API_KEY", "").strip())

    def get(self) -> openai.AsyncOpenAI:
        """The client; raises ProviderConfigError when ``OPENAI_API_KEY`` is missing."""
        if self._client is None:
            key = self._env.get("OPENAI_API_KEY", "").strip()
            if not key:
                raise ProviderConfigError(
                    "OPENAI_API_KEY is not set: export it in the environment of the ivr process "
                    "(keys are never read from flow files), or choose the 'offline' speech engine",
                    engine=self._engine,
                )
            base_url = self._env.get("OPENAI_BASE_URL", "").strip() or None
            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=base_url,
                max_retries=0,
                timeout=httpx2.Timeout(60.0, connect=CONNECT_TIMEOUT),
            )
        return self._client

    def warm(self) -> None:
        """Build the client and import every SDK module a call could need, now (at startup).

        The SDK imports its resource modules on first attribute access (~100 ms) and the Realtime
        connection imports ``websockets``: in mid-call that would stall every live call's audio.
        """
        with contextlib.suppress(ImportError):  # the realtime extra: used by realtime.connect() and retry
            importlib.import_module("websockets.asyncio.client")
            importlib.import_module("websockets.exceptions")
        client = self.get()
        for resource in (client.audio.transcriptions, client.audio.speech, client.realtime, client.chat):
            assert resource is not None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIClientSource(configured={self.configured})"
