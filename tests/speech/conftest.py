from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ivr.speech.openai_client import OpenAIClientSource
from tests.fakes.openai_server import API_KEY, FakeOpenAI


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
async def env(fake: FakeOpenAI, aiohttp_server: Any) -> dict[str, str]:
    server = await aiohttp_server(fake.app())
    return {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": str(server.make_url("/v1"))}


@pytest.fixture
async def source(env: dict[str, str]) -> AsyncIterator[OpenAIClientSource]:
    src = OpenAIClientSource(env)
    yield src
    await src.aclose()
