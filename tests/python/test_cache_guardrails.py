"""The official `openai` SDK through llmopsd's response cache and guardrails (in front of the fake upstream):
a streamed cache hit gives the SDK the same chunks as the stream that filled it, and a secret that the engine
streams in 3-character pieces ends the SDK's stream with an APIError naming the rule, before any of it arrives.
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import openai_client_for, start_daemon

SECRET = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123"


@pytest.fixture(scope="module")
def guarded(fake_upstream, tmp_path_factory):
    config = f"""
[engines.fake]
kind = "openai"
base_url = {json.dumps(fake_upstream.base_url)}
models = ["fake-model"]

[routes.cached]
targets = [{{ engine = "fake", model = "fake-model" }}]
cache = {{ ttl_s = 300, max_entries = 100 }}

[routes.guarded]
targets = [{{ engine = "fake", model = "fake-model" }}]

[[guardrails]]
name = "no-keys-out"
kind = "pii"
detectors = ["api_key"]
apply_to = "output"
routes = ["guarded"]
"""
    daemon = start_daemon(tmp_path_factory, config)
    client = openai_client_for(daemon)
    try:
        yield daemon, client
    finally:
        client.close()
        daemon.process.stop()


def streamed(client, model: str, text: str):
    """(x-llmops-cache header, the chunks as dicts) of one streamed chat completion at temperature 0."""
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk.model_dump(exclude_unset=True) for chunk in raw.parse()]
    return raw.headers.get("x-llmops-cache"), chunks


def test_a_streamed_cache_hit_gives_the_sdk_the_same_chunks(guarded, fake_upstream):
    _, client = guarded
    fake_upstream.control(chunk_chars=None)
    before = fake_upstream.stats()["requests"]
    first_header, first = streamed(client, "cached", "the sdk asks twice")
    assert first_header == "miss"
    # The entry is stored when the first stream ends, before its last bytes leave: the next request hits.
    second_header, second = streamed(client, "cached", "the sdk asks twice")
    assert second_header == "hit"
    assert second == first
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in first if c.get("choices"))
    assert text == "echo: the sdk asks twice"
    assert first[-1]["usage"]["completion_tokens"] == 5
    assert fake_upstream.stats()["requests"] - before == 1


def test_a_blocked_stream_raises_an_api_error_naming_the_rule(guarded, fake_upstream):
    _, client = guarded
    fake_upstream.control(chunk_chars=3)
    try:
        received = []
        with pytest.raises(openai.APIError) as raised:
            for chunk in client.chat.completions.create(
                model="guarded",
                messages=[{"role": "user", "content": f"my key is {SECRET} thanks"}],
                stream=True,
            ):
                if chunk.choices:
                    received.append(chunk.choices[0].delta.content or "")
        assert "no-keys-out" in str(raised.value)
        assert "sk-" not in "".join(received)
        assert SECRET not in str(raised.value)
    finally:
        fake_upstream.control(chunk_chars=None)
