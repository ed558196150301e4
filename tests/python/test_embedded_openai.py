"""The official OpenAI SDK against llmopsd started with no config at all: the default model served in-process
by the embedded engine (fetched beforehand by `llmopsd model pull`, which scripts/test.sh runs)."""

from __future__ import annotations

import openai
import pytest

from embedded_support import serve_embedded

MODEL = "smollm2-135m-instruct"
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QUESTION = {"role": "user", "content": "What is the capital of Germany?"}


@pytest.fixture(scope="module")
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    for _, sdk in serve_embedded(request, tmp_path_factory):
        yield sdk


def test_default_model_is_listed(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]


def test_chat_answers_with_the_fact_and_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=[SYSTEM, QUESTION], temperature=0, max_tokens=40)
    assert "Berlin" in (answer.choices[0].message.content or "")
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 40


def test_stream_concatenates_to_the_same_answer(client: openai.OpenAI) -> None:
    args = dict(model=MODEL, messages=[SYSTEM, QUESTION], temperature=0, max_tokens=24)
    whole = client.chat.completions.create(**args)
    pieces, usage = [], None
    for chunk in client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_context_overflow_is_a_400_the_sdk_raises(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[SYSTEM, QUESTION], max_tokens=100_000)
    assert raised.value.code == "context_length_exceeded"
