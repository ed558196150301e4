"""Tool calls on the embedded engine, through the official OpenAI SDK: a function named by `tool_choice` is
called once; `required` and a named choice give well-formed calls, with or without parallel_tool_calls; streamed,
a call comes in pieces as OpenAI streams it (id and name once, then the arguments); `none` answers text, `auto`
text or well-formed calls; a tool result sent back gets a text answer; hostile tools (too many, bad names,
unsupported or hostile parameters, a tool_choice naming no offered function) are refused quickly with a 400
naming the field; and the trace records the calls.

A well-formed call is shaped as OpenAI shapes it and its arguments validate against the called function's
parameters (jsonschema); see `assert_tool_calls`. The daemon and helpers: embedded_support.py.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional

import openai
import pytest

from conftest import Daemon
from embedded_support import (  # noqa: F401 (client, daemon: fixtures, used by name)
    HOSTILE_DEADLINE_S,
    HOSTILE_SCHEMAS,
    MODEL,
    NAMED_WEATHER,
    PARAMETERS_BY_NAME,
    SYSTEM,
    TIME_PARAMETERS,
    TOOLS,
    UNSUPPORTED_SCHEMAS,
    WEATHER_PARAMETERS,
    WEATHER_QUESTION,
    assert_still_answers,
    assert_tool_calls,
    client,
    daemon,
    describe_error,
    error_message,
    function_tool,
    names_keyword,
    parse_json,
    refusal,
    validate,
)


def weather_call(client: openai.OpenAI, **overrides: Any):
    args: dict[str, Any] = dict(
        model=MODEL,
        messages=[SYSTEM, WEATHER_QUESTION],
        tools=TOOLS,
        tool_choice=NAMED_WEATHER,
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=100,
    )
    args.update(overrides)
    return client.chat.completions.create(**args)


@pytest.fixture(scope="module")
def named_call(client: openai.OpenAI) -> tuple[Any, str]:
    """One call of get_weather, named by tool_choice, parallel_tool_calls=False: the answer and its trace id.
    Several tests read it (one request instead of one each: the tests have to stay quick on 2 cores)."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[SYSTEM, WEATHER_QUESTION],
        tools=TOOLS,
        tool_choice=NAMED_WEATHER,
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=100,
    )
    request_id = raw.headers.get("x-request-id")
    assert request_id, f"no x-request-id header: {dict(raw.headers)}"
    return raw.parse(), request_id


def test_named_tool_choice_calls_that_function_once(named_call: tuple[Any, str]) -> None:
    answer, _ = named_call
    assert_tool_calls(answer.choices[0].message, answer.choices[0].finish_reason, name="get_weather", count=1)


@pytest.mark.parametrize(
    "tool_choice, parallel",
    [("required", False), ("required", None), (NAMED_WEATHER, None)],
    ids=["required-one-call", "required-parallel-default", "named-parallel-default"],
)
def test_forced_tool_calls_are_well_formed(client: openai.OpenAI, tool_choice: Any, parallel: Optional[bool]) -> None:
    overrides: dict[str, Any] = dict(tool_choice=tool_choice, max_tokens=100 if parallel is False else 160)
    if parallel is None:
        overrides["parallel_tool_calls"] = openai.NOT_GIVEN
    answer = weather_call(client, **overrides)
    choice = answer.choices[0]
    assert_tool_calls(
        choice.message,
        choice.finish_reason,
        name="get_weather" if isinstance(tool_choice, dict) else None,
        count=1 if parallel is False else None,
    )


@pytest.mark.parametrize("tool_choice", ["required", NAMED_WEATHER], ids=["required", "named"])
def test_streamed_tool_calls_come_in_pieces(client: openai.OpenAI, tool_choice: Any) -> None:
    stream = weather_call(client, tool_choice=tool_choice, stream=True)
    by_index: dict[int, list] = {}
    finish_reasons, content = [], []
    for chunk in stream:
        for choice in chunk.choices:
            assert choice.index == 0, chunk
            if choice.delta.content:
                content.append(choice.delta.content)
            for item in choice.delta.tool_calls or []:
                assert item.index is not None, f"a streamed tool call item without index: {chunk}"
                by_index.setdefault(item.index, []).append(item)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    assert not "".join(content), f"a tool-call answer streamed content: {''.join(content)!r}"
    assert finish_reasons == ["tool_calls"], f"finish reasons streamed: {finish_reasons}"
    assert sorted(by_index) == [0], f"parallel_tool_calls=False: one call (index 0) expected, got {sorted(by_index)}"
    items = by_index[0]
    first, later = items[0], items[1:]
    described = [item.model_dump(exclude_none=True) for item in items]
    assert first.id and first.id.startswith("call_"), f"the first item should carry the id: {described}"
    assert first.type == "function", described
    assert first.function and first.function.name in PARAMETERS_BY_NAME, described
    if isinstance(tool_choice, dict):
        assert first.function.name == "get_weather", described
    for item in later:
        # Clients (the SDK's stream helper among them) concatenate what later items carry: a repeated id or
        # name would corrupt them.
        assert not item.id and not (item.function and item.function.name), f"a later item repeats id/name: {described}"
    pieces = [item.function.arguments for item in items if item.function and item.function.arguments]
    assert len(pieces) > 1, f"the arguments should arrive in more than one piece: {described}"
    arguments = parse_json("".join(pieces), "the concatenated arguments")
    validate(arguments, PARAMETERS_BY_NAME[first.function.name], "the concatenated arguments")


def test_tool_choice_none_answers_text(client: openai.OpenAI) -> None:
    answer = weather_call(client, tool_choice="none", parallel_tool_calls=openai.NOT_GIVEN, max_tokens=30)
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length"), choice
    assert not choice.message.tool_calls, choice
    assert choice.message.content, choice


def test_tool_choice_auto_answers_text_or_well_formed_calls(client: openai.OpenAI) -> None:
    answer = weather_call(client, tool_choice="auto", max_tokens=60)
    choice = answer.choices[0]
    if choice.message.tool_calls or choice.finish_reason == "tool_calls":
        assert_tool_calls(choice.message, choice.finish_reason)
    else:
        assert choice.finish_reason in ("stop", "length"), choice
        assert choice.message.content, choice


@pytest.mark.parametrize("with_tools", [True, False], ids=["tool_choice-none", "no-tools"])
def test_tool_result_round_trip_answers_text(
    client: openai.OpenAI, named_call: tuple[Any, str], with_tools: bool
) -> None:
    first, _ = named_call
    calls = assert_tool_calls(first.choices[0].message, first.choices[0].finish_reason, name="get_weather", count=1)
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in calls
        ],
    }
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18, "unit": "celsius", "sky": "sunny"}'}
        for call in calls
    ]
    extra: dict[str, Any] = dict(tools=TOOLS, tool_choice="none") if with_tools else {}
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[SYSTEM, WEATHER_QUESTION, assistant, *results],
        temperature=0,
        max_tokens=30,
        **extra,
    )
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length"), choice
    assert not choice.message.tool_calls, choice
    assert choice.message.content, choice


def invalid_name_tool(name: str) -> dict:
    return function_tool(name, WEATHER_PARAMETERS)


HOSTILE_TOOLS: dict[str, tuple[str, Callable[[], dict]]] = {
    "129-tools": ("tools", lambda: dict(tools=[function_tool(f"tool_{i}", TIME_PARAMETERS) for i in range(129)])),
    "name-with-space": ("tools", lambda: dict(tools=[invalid_name_tool("get weather")])),
    "name-with-dot": ("tools", lambda: dict(tools=[invalid_name_tool("get.weather")])),
    "name-65-chars": ("tools", lambda: dict(tools=[invalid_name_tool("a" * 65)])),
    "name-empty": ("tools", lambda: dict(tools=[invalid_name_tool("")])),
    "name-non-ascii": ("tools", lambda: dict(tools=[invalid_name_tool("wetter_ü")])),
    "tool_choice-unknown-function": (
        "tool_choice",
        lambda: dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "send_email"}}),
    ),
    "parameters-with-not": (
        "tools",
        lambda: dict(tools=[function_tool("get_weather", UNSUPPORTED_SCHEMAS["not"][1])]),
    ),
    "parameters-with-uniqueItems": (
        "tools",
        lambda: dict(tools=[function_tool("get_weather", UNSUPPORTED_SCHEMAS["uniqueItems"][1])]),
    ),
    "parameters-minItems-1000000": (
        "tools",
        lambda: dict(tools=[function_tool("get_weather", HOSTILE_SCHEMAS["minItems-1000000"]())]),
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_TOOLS))
def test_hostile_tools_are_refused_by_field(client: openai.OpenAI, daemon: Daemon, case: str) -> None:
    param, make = HOSTILE_TOOLS[case]
    started = time.monotonic()
    error = refusal(
        lambda: client.chat.completions.create(model=MODEL, messages=[WEATHER_QUESTION], max_tokens=20, **make()),
        case,
    )
    elapsed = time.monotonic() - started
    assert error.param == param, f"param should be {param!r}: {describe_error(error)}"
    assert elapsed < HOSTILE_DEADLINE_S, f"the refusal took {elapsed:.1f}s: {describe_error(error)}"
    if case.startswith("parameters-with-"):
        keyword = case[len("parameters-with-"):]
        assert names_keyword(error_message(error), keyword), (
            f"the message should name {keyword}: {describe_error(error)}"
        )
    assert_still_answers(client, daemon)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_trace_records_the_tool_calls(
    client: openai.OpenAI, daemon: Daemon, named_call: tuple[Any, str], stream: bool
) -> None:
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[SYSTEM, WEATHER_QUESTION],
            tools=TOOLS,
            tool_choice=NAMED_WEATHER,
            parallel_tool_calls=False,
            temperature=0,
            max_tokens=100,
            stream=True,
        )
        request_id = raw.headers.get("x-request-id")
        assert request_id, f"no x-request-id header: {dict(raw.headers)}"
        arguments = "".join(
            item.function.arguments or ""
            for chunk in raw.parse()
            for choice in chunk.choices
            for item in choice.delta.tool_calls or []
            if item.function
        )
    else:
        answer, request_id = named_call
        choice = answer.choices[0]
        calls = assert_tool_calls(choice.message, choice.finish_reason, name="get_weather", count=1)
        arguments = calls[0].function.arguments
    parse_json(arguments, "the arguments")
    daemon.wait_for_trace(request_id)
    trace = daemon.trace(request_id)
    text = trace.get("response_text", "")
    assert "get_weather" in text, f"the trace's response_text does not name the function: {text!r}"
    # Verbatim, or as it reads inside a JSON string (escaped quotes).
    assert arguments in text or json.dumps(arguments)[1:-1] in text, (
        f"the trace's response_text lacks the arguments {arguments!r}: {text!r}"
    )
    assert trace.get("finish_reason") == "tool_calls", trace
