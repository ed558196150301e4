"""The official `openai` SDK against llmopsd (forwarding to the deterministic fake upstream), then the traces
those requests left, read back with `llmopsctl --json`.

The fake answers "echo: " + the last message, one word per streamed chunk; it counts tokens as
whitespace-separated words (prompt: all message contents; completion: the reply).
"""

from __future__ import annotations

import math

import openai
import pytest

MODEL = "fake-model"  # the model the conftest's [engines.fake] serves
ENGINE = "fake"


def echo(text: str) -> str:
    return "echo: " + text


def word_count(text: str) -> int:
    return len(text.split())


def word_chunks(text: str) -> list[str]:
    """How the fake streams `text`: the first word, then " word" for each following word."""
    words = text.split()
    return words[:1] + [" " + word for word in words[1:]]


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def request_id_of(raw) -> str:
    request_id = raw.headers.get("x-request-id")
    assert request_id, f"response has no x-request-id header; headers: {dict(raw.headers)}"
    return request_id


def assert_ok_trace(
    trace: dict,
    *,
    endpoint: str,
    stream: bool,
    input_tokens: int | None,
    output_tokens: int | None,
    finish_reason: str | None = "stop",
    tokens_estimated: bool = False,
) -> None:
    """Checks the fields a successful request's trace has, both in `llmopsctl traces` and `llmopsctl trace`.
    None skips a check."""
    assert trace["status"] == "ok", trace
    assert trace["http_status"] == 200, trace
    assert trace["endpoint"] == endpoint, trace
    assert trace["stream"] is stream, trace
    assert trace["route"] == MODEL, trace
    assert trace["model_requested"] == MODEL, trace
    assert trace["model_served"] == MODEL, trace
    assert trace["engine"] == ENGINE, trace
    if input_tokens is not None:
        assert trace["input_tokens"] == input_tokens, trace
    if output_tokens is not None:
        assert trace["output_tokens"] == output_tokens, trace
    if finish_reason is not None:
        assert trace["finish_reason"] == finish_reason, trace
    assert trace["tokens_estimated"] is tokens_estimated, trace
    assert is_number(trace["latency_ms"]) and trace["latency_ms"] > 0, trace


def assert_stream_timing(trace: dict, chunks: int) -> None:
    """A streamed trace: time to first token inside the latency, one arrival offset per output chunk."""
    ttft, latency = trace["ttft_ms"], trace["latency_ms"]
    assert is_number(ttft), f"ttft_ms should be a number for a stream: {trace}"
    assert 0 < ttft < latency, f"expected 0 < ttft_ms < latency_ms: {trace}"
    offsets = trace["chunk_offsets_ms"]
    assert offsets, f"chunk_offsets_ms is empty for a stream: {trace}"
    assert all(is_number(offset) for offset in offsets), offsets
    assert offsets == sorted(offsets), f"chunk_offsets_ms must be non-decreasing: {offsets}"
    assert offsets[0] >= 0, offsets
    # Offsets and latency are both measured from the trace start; allow 1 ms for rounding.
    assert offsets[-1] <= latency + 1.0, f"last chunk after the end of the request: {offsets} vs {latency}"
    assert len(offsets) == chunks, f"expected one offset per output chunk ({chunks}): {offsets}"


def assert_attempt_ok(trace: dict) -> None:
    attempts = trace["attempts"]
    assert len(attempts) == 1, f"one engine call expected: {attempts}"
    attempt = attempts[0]
    assert attempt["engine"] == ENGINE, attempt
    assert attempt["model"] == MODEL, attempt
    assert attempt["upstream_status"] == 200, attempt
    assert attempt["error"] == "", attempt


def test_chat(openai_client: openai.OpenAI, daemon) -> None:
    prompt = "hello there"
    raw = openai_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}]
    )
    request_id = request_id_of(raw)
    completion = raw.parse()

    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2
    assert completion.usage.completion_tokens == 3

    listed = daemon.wait_for_trace(request_id)
    assert_ok_trace(listed, endpoint="chat.completions", stream=False, input_tokens=2, output_tokens=3)

    trace = daemon.trace(request_id)
    assert_ok_trace(trace, endpoint="chat.completions", stream=False, input_tokens=2, output_tokens=3)
    assert trace["prompt_text"] == "user: hello there"
    assert trace["response_text"] == "echo: hello there"
    assert_attempt_ok(trace)


def test_chat_with_system_message_counts_every_message(openai_client: openai.OpenAI, daemon) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "why is the sky blue"},
        ],
    )
    request_id = request_id_of(raw)
    completion = raw.parse()

    assert completion.choices[0].message.content == echo("why is the sky blue")
    assert completion.usage.prompt_tokens == 2 + 5
    assert completion.usage.completion_tokens == 6

    trace = daemon.trace(daemon.wait_for_trace(request_id)["id"])
    assert_ok_trace(trace, endpoint="chat.completions", stream=False, input_tokens=7, output_tokens=6)
    assert trace["prompt_text"] == "system: be brief\nuser: why is the sky blue"
    assert trace["response_text"] == echo("why is the sky blue")


def test_chat_max_tokens_cuts_the_reply(openai_client: openai.OpenAI, daemon) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three four"}], max_tokens=2
    )
    request_id = request_id_of(raw)
    completion = raw.parse()

    assert completion.choices[0].message.content == "echo: one"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2

    trace = daemon.wait_for_trace(request_id)
    assert_ok_trace(
        trace, endpoint="chat.completions", stream=False, input_tokens=4, output_tokens=2, finish_reason="length"
    )


def test_chat_stream_with_usage(openai_client: openai.OpenAI, daemon) -> None:
    prompt = "stream me please"
    reply = echo(prompt)
    raw = openai_client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = request_id_of(raw)
    chunks = list(raw.parse())

    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == reply
    assert deltas == word_chunks(reply), "the daemon should forward the upstream's chunks one by one"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]

    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1, f"exactly one usage chunk expected, got {usage_chunks}"
    usage_chunk = usage_chunks[0]
    assert usage_chunk is chunks[-1], "the usage chunk comes last"
    assert usage_chunk.choices == []
    assert usage_chunk.usage.prompt_tokens == 3
    assert usage_chunk.usage.completion_tokens == 4

    listed = daemon.wait_for_trace(request_id)
    assert_ok_trace(listed, endpoint="chat.completions", stream=True, input_tokens=3, output_tokens=4)

    trace = daemon.trace(request_id)
    assert_ok_trace(trace, endpoint="chat.completions", stream=True, input_tokens=3, output_tokens=4)
    assert trace["response_text"] == reply
    assert_stream_timing(trace, chunks=len(deltas))
    assert_attempt_ok(trace)


def test_chat_stream_without_usage_sends_no_usage_chunk(openai_client: openai.OpenAI, daemon) -> None:
    prompt = "no usage for me"
    reply = echo(prompt)
    raw = openai_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True
    )
    request_id = request_id_of(raw)
    chunks = list(raw.parse())

    assert chunks, "the stream carried no chunks"
    for chunk in chunks:
        assert len(chunk.choices) >= 1, f"a chunk without choices reached a client that did not ask for usage: {chunk}"
        assert chunk.usage is None, f"usage reached a client that did not ask for it: {chunk}"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(deltas) == reply

    # The daemon asked the upstream for usage itself, so the counts are exact, not estimated.
    trace = daemon.trace(daemon.wait_for_trace(request_id)["id"])
    assert_ok_trace(trace, endpoint="chat.completions", stream=True, input_tokens=4, output_tokens=5)
    assert trace["response_text"] == reply
    assert_stream_timing(trace, chunks=len(deltas))


def test_stream_from_upstream_without_usage_is_estimated(openai_client: openai.OpenAI, daemon, fake_upstream) -> None:
    prompt = "count these words yourself"
    reply = echo(prompt)
    fake_upstream.control(omit_usage=True)
    try:
        raw = openai_client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True
        )
        request_id = request_id_of(raw)
        chunks = list(raw.parse())
    finally:
        fake_upstream.control()

    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == reply
    assert len(deltas) == word_count(reply)

    trace = daemon.trace(daemon.wait_for_trace(request_id)["id"])
    assert_ok_trace(
        trace,
        endpoint="chat.completions",
        stream=True,
        input_tokens=None,  # the daemon's own count of the prompt: checked below
        output_tokens=len(deltas),
        tokens_estimated=True,
    )
    assert trace["input_tokens"] > 0, trace
    assert trace["response_text"] == reply
    assert_stream_timing(trace, chunks=len(deltas))


def test_usage_asked_for_comes_even_when_the_upstream_sends_none(openai_client: openai.OpenAI, fake_upstream) -> None:
    prompt = "count these words for me"
    fake_upstream.control(omit_usage=True)
    try:
        stream = openai_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    finally:
        fake_upstream.control()
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    # The last chunk carries the daemon's own count, as OpenAI's would: no choices, usage set.
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None, last
    assert last.usage.completion_tokens == len(deltas), last.usage
    assert last.usage.prompt_tokens > 0, last.usage
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_completions(openai_client: openai.OpenAI, daemon) -> None:
    prompt = "say hi"
    raw = openai_client.completions.with_raw_response.create(model=MODEL, prompt=prompt)
    request_id = request_id_of(raw)
    completion = raw.parse()

    assert completion.choices[0].text == "echo: say hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 2
    assert completion.usage.completion_tokens == 3

    daemon.wait_for_trace(request_id)
    trace = daemon.trace(request_id)
    assert_ok_trace(trace, endpoint="completions", stream=False, input_tokens=2, output_tokens=3)
    assert prompt in trace["prompt_text"], trace
    assert trace["response_text"] == "echo: say hi"


@pytest.mark.parametrize("encoding_format", ["float", None], ids=["float", "sdk-default-base64"])
def test_embeddings(openai_client: openai.OpenAI, daemon, encoding_format) -> None:
    inputs = ["alpha beta", "gamma"]
    kwargs = {"encoding_format": encoding_format} if encoding_format else {}
    raw = openai_client.embeddings.with_raw_response.create(model=MODEL, input=inputs, **kwargs)
    request_id = request_id_of(raw)
    response = raw.parse()

    assert [item.index for item in response.data] == [0, 1]
    for item in response.data:
        assert len(item.embedding) == 8, item
        assert all(is_number(value) for value in item.embedding), item
    assert response.usage.prompt_tokens == 3

    trace = daemon.wait_for_trace(request_id)
    assert_ok_trace(trace, endpoint="embeddings", stream=False, input_tokens=3, output_tokens=None, finish_reason=None)


def test_traces_are_listed_newest_first(openai_client: openai.OpenAI, daemon) -> None:
    ids = []
    for text in ("first of two", "second of two"):
        raw = openai_client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": text}]
        )
        ids.append(request_id_of(raw))
    assert ids[0] != ids[1], "every request gets its own id"

    daemon.wait_for_trace(ids[0])
    daemon.wait_for_trace(ids[1])
    listed = [trace["id"] for trace in daemon.llmopsctl("traces", "--limit", "50")]
    assert listed.index(ids[1]) < listed.index(ids[0]), f"newest first expected: {ids} in {listed}"
    assert len(listed) == len(set(listed)), f"a trace is listed twice: {listed}"


def test_unknown_model_is_rejected(openai_client: openai.OpenAI, daemon) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    error = caught.value

    assert error.status_code == 404
    assert isinstance(error.body, dict), f"expected an OpenAI-shaped error body: {error.body!r}"
    assert "fake-model" in error.body["message"], f"the error should list the models on offer: {error.body}"
    assert error.code == "model_not_found", error.body
    request_id = error.response.headers.get("x-request-id")
    assert request_id, f"error responses carry x-request-id too; headers: {dict(error.response.headers)}"

    trace = daemon.wait_for_trace(request_id)
    assert trace["status"] == "rejected", trace
    assert trace["http_status"] == 404, trace
    assert trace["endpoint"] == "chat.completions", trace
    assert trace["model_requested"] == "no-such-model", trace

    full = daemon.trace(request_id)
    assert full["status"] == "rejected", full
    assert full["http_status"] == 404, full
    assert full["attempts"] == [], f"no engine runs for a rejected request: {full}"
