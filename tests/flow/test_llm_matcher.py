"""The LLM matcher through the real AsyncOpenAI client against a fake chat-completions server."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from ivr.flow.actions import Classify, ClassifyOption
from ivr.flow.events import ClassificationResult
from ivr.flow.llm_matcher import LlmMatcher

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

REQUEST = Classify(
    step="menu",
    text="somebody took my wallet with the card",
    options=(
        ClassifyOption("lost_card", "Card lost or stolen", ("lost card", "stolen card")),
        ClassifyOption("balance", None, ("balance",)),
    ),
    model="gpt-test",
)


def _completion(content: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
        ],
    }


@dataclass
class FakeOpenAI:
    server: TestServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=lambda: _completion('{"choice": "lost_card"}'))
    status: int = 200


@pytest.fixture
async def fake_openai(aiohttp_server: ServerFactory) -> FakeOpenAI:
    state: list[FakeOpenAI] = []

    async def chat(request: web.Request) -> web.Response:
        fake = state[0]
        fake.requests.append(await request.json())
        if fake.status != 200:
            return web.json_response(
                {"error": {"message": "down", "type": "server_error"}}, status=fake.status
            )
        return web.json_response(fake.reply)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    state.append(FakeOpenAI(await aiohttp_server(app)))
    return state[0]


def _matcher(fake: FakeOpenAI) -> LlmMatcher:
    client = AsyncOpenAI(base_url=str(fake.server.make_url("/v1")), api_key="test-key", max_retries=0)
    return LlmMatcher(client, timeout_s=2)


async def test_llm_picks_a_choice_with_a_schema_limited_to_the_options(fake_openai: FakeOpenAI) -> None:
    result = await _matcher(fake_openai).classify(REQUEST)
    assert result == ClassificationResult("lost_card", 1.0, "llm")
    [sent] = fake_openai.requests
    assert sent["model"] == "gpt-test"
    schema = sent["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["properties"]["choice"]["anyOf"][0]["enum"] == ["lost_card", "balance"]
    user = json.loads(sent["messages"][1]["content"])
    assert user["utterance"] == REQUEST.text  # the caller's words are data, not instructions
    assert REQUEST.text not in sent["messages"][0]["content"]


async def test_llm_null_choice_is_no_match(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = _completion('{"choice": null}')
    assert await _matcher(fake_openai).classify(REQUEST) == ClassificationResult(None, 0.0, "llm")


@pytest.mark.parametrize(
    "reply", [_completion('{"choice": "hack_the_bank"}'), _completion("not json"), _completion(None)]
)
async def test_bad_answers_fall_back_to_keywords(fake_openai: FakeOpenAI, reply: dict[str, Any]) -> None:
    fake_openai.reply = reply
    request = Classify("menu", "I think my card is a stolen card", REQUEST.options)
    assert await _matcher(fake_openai).classify(request) == ClassificationResult("lost_card", 1.0, "keyword")


async def test_provider_failure_falls_back_to_keywords(fake_openai: FakeOpenAI) -> None:
    fake_openai.status = 500
    result = await _matcher(fake_openai).classify(REQUEST)
    assert result == ClassificationResult(None, 0.0, "keyword")  # keywords find nothing in this utterance
    request = Classify("menu", "what's my balance", REQUEST.options)
    assert await _matcher(fake_openai).classify(request) == ClassificationResult("balance", 1.0, "keyword")


async def test_unreachable_provider_falls_back() -> None:
    client = AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    request = Classify("menu", "balance please", REQUEST.options)
    assert await LlmMatcher(client, timeout_s=1).classify(request) == ClassificationResult(
        "balance", 1.0, "keyword"
    )
