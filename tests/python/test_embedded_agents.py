"""Structured outputs, tool calls and strict parameter checking on the embedded engine, through the official
OpenAI SDK against llmopsd started with no config (the default model, SmolLM2, served in-process; fetched
beforehand by `llmopsd model pull`, which scripts/test.sh runs).

What is checked is the contract, not the small model's wisdom: JSON that parses and validates against the
schema asked for (jsonschema, the reference validator), tool calls shaped as OpenAI shapes them (streamed in
pieces, too), refusals that are 400s naming the offending field, and no chat-completions parameter the SDK
knows that is silently ignored.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any, Callable, Optional

import jsonschema
import openai
import pytest
from openai.types.chat import completion_create_params
from pydantic import BaseModel

from conftest import REPO_ROOT, Daemon, poll_until, start_daemon, start_once

MODEL = "smollm2-135m-instruct"
READY_TIMEOUT_S = 60.0
# A refusal of a hostile request is decided before any decoding: well under this, even on 2 busy cores.
HOSTILE_DEADLINE_S = 5.0

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QUESTION = {"role": "user", "content": "What is the capital of Germany?"}
WEATHER_QUESTION = {"role": "user", "content": "What is the weather like in Paris right now?"}

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME_PARAMETERS = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "description": "An IANA time zone, e.g. Europe/Paris"}},
    "required": ["timezone"],
    "additionalProperties": False,
}


def function_tool(name: str, parameters: dict, description: str = "") -> dict:
    return {
        "type": "function",
        "function": {"name": name, "description": description or f"The {name} function.", "parameters": parameters},
    }


WEATHER_TOOL = function_tool("get_weather", WEATHER_PARAMETERS, "Get the current weather in a city.")
TIME_TOOL = function_tool("get_time", TIME_PARAMETERS, "Get the current local time in a time zone.")
TOOLS = [WEATHER_TOOL, TIME_TOOL]
PARAMETERS_BY_NAME = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
NAMED_WEATHER = {"type": "function", "function": {"name": "get_weather"}}

# Keys deliberately not in alphabetical order: the answer must write them in this order.
COUNTRY_SCHEMA = {
    "type": "object",
    "properties": {
        "country": {"type": "string"},
        "capital": {"type": "string"},
        "population_millions": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "eu_member": {"type": "boolean"},
    },
    "required": ["country", "capital", "population_millions", "languages", "eu_member"],
    "additionalProperties": False,
}
COUNTRY_QUESTION = {
    "role": "user",
    "content": "Describe Germany as JSON: its capital, its population in millions, its official languages and "
    "whether it is a member of the European Union.",
}


def country_format() -> dict:
    return {"type": "json_schema", "json_schema": {"name": "country", "schema": COUNTRY_SCHEMA, "strict": True}}


class Person(BaseModel):
    name: str
    age: int


# ---------------------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def embedded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """llmopsd with no config (the embedded engine and the default model), once the model has loaded."""
    daemon = start_once(request, "llmopsd (no config)", lambda: start_daemon(tmp_path_factory, None))
    sdk = openai.OpenAI(
        base_url=f"{daemon.http_base}/v1",
        api_key="unused",
        max_retries=0,
        timeout=60,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )

    def loaded() -> bool:
        try:
            sdk.completions.create(model=MODEL, prompt="a", max_tokens=1)
            return True
        except openai.APIStatusError as error:
            if error.status_code == 503:  # still loading
                return False
            raise

    try:
        poll_until(loaded, READY_TIMEOUT_S, lambda: f"the default model did not load\n{daemon.process.log_tail()}")
        yield daemon, sdk
    finally:
        sdk.close()
        daemon.process.stop()


@pytest.fixture(scope="module")
def daemon(embedded) -> Daemon:
    return embedded[0]


@pytest.fixture(scope="module")
def client(embedded) -> openai.OpenAI:
    return embedded[1]


def describe_error(error: openai.APIStatusError) -> str:
    return f"HTTP {error.status_code}: {error.body!r}"


def refusal(call: Callable[[], Any], what: str) -> openai.BadRequestError:
    """Runs `call`, which must be refused with a 400; returns the SDK's exception. Any other outcome fails with
    what came back instead."""
    try:
        answer = call()
    except openai.BadRequestError as error:
        return error
    except openai.APIStatusError as error:
        pytest.fail(f"{what}: expected a 400, got {describe_error(error)}", pytrace=False)
    if isinstance(answer, openai.Stream):
        answer = [chunk.model_dump(exclude_none=True) for chunk in answer]
    elif isinstance(answer, BaseModel):
        answer = answer.model_dump(exclude_none=True)
    pytest.fail(f"{what}: expected a 400, got a 200: {answer!r}", pytrace=False)


def error_message(error: openai.APIStatusError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    return str(body.get("message", ""))


def names_keyword(message: str, keyword: str) -> bool:
    """The message names `keyword` as a quoted token (`not`, 'not' or "not"), not merely as an English word."""
    return re.search(rf"[`'\"]{re.escape(keyword)}[`'\"]", message) is not None


def assert_still_answers(client: openai.OpenAI, daemon: Daemon) -> None:
    try:
        answer = client.chat.completions.create(model=MODEL, messages=[QUESTION], temperature=0, max_tokens=2)
    except openai.APIError as error:
        pytest.fail(f"the daemon no longer answers after a hostile request: {error!r}\n{daemon.process.log_tail()}")
    assert answer.choices and answer.choices[0].finish_reason in ("stop", "length"), answer
    assert daemon.process.proc.poll() is None, f"llmopsd exited\n{daemon.process.log_tail()}"


def validate(instance: Any, schema: dict, what: str) -> None:
    try:
        jsonschema.Draft202012Validator(schema).validate(instance)
    except jsonschema.ValidationError as error:
        pytest.fail(
            f"{what} does not validate against its schema: {error.message}\ninstance: {instance!r}", pytrace=False
        )


def parse_json(text: Optional[str], what: str) -> Any:
    try:
        return json.loads(text or "")
    except json.JSONDecodeError as error:
        pytest.fail(f"{what} is not JSON ({error}): {text!r}", pytrace=False)


def assert_structured(content: Optional[str], finish_reason: Optional[str]) -> None:
    assert finish_reason == "stop", f"the JSON should end on its own within max_tokens: {finish_reason=} {content=!r}"
    value = parse_json(content, "content")
    validate(value, COUNTRY_SCHEMA, "content")
    assert list(value) == list(COUNTRY_SCHEMA["properties"]), (
        f"keys should be written in the schema's property order {list(COUNTRY_SCHEMA['properties'])}: {content!r}"
    )


def assert_tool_calls(
    message: Any, finish_reason: Optional[str], *, name: Optional[str] = None, count: Optional[int] = None
) -> list:
    """A message that is tool calls, shaped as OpenAI shapes them, whose arguments validate against the called
    function's parameters. Returns the calls."""
    dumped = message.model_dump(exclude_none=True)
    assert finish_reason == "tool_calls", f"finish_reason {finish_reason!r}; message: {dumped}"
    calls = message.tool_calls
    assert calls, f"no tool_calls in {dumped}"
    assert not message.content, f"a tool-call answer should have no content: {dumped}"
    if count is not None:
        assert len(calls) == count, f"expected {count} tool call(s), got {len(calls)}: {dumped}"
    ids = [call.id for call in calls]
    assert len(set(ids)) == len(ids), f"tool call ids repeat: {ids}"
    for call in calls:
        assert call.id and call.id.startswith("call_"), f"tool call id should start with call_: {call}"
        assert call.type == "function", call
        assert call.function.name in PARAMETERS_BY_NAME, f"a call to a function not offered: {call}"
        if name is not None:
            assert call.function.name == name, f"tool_choice named {name}, got a call to {call.function.name}"
        assert isinstance(call.function.arguments, str), call
        arguments = parse_json(call.function.arguments, f"the arguments of {call.function.name}")
        assert isinstance(arguments, dict), f"arguments should be a JSON object: {call.function.arguments!r}"
        validate(arguments, PARAMETERS_BY_NAME[call.function.name], f"the arguments of {call.function.name}")
    return calls


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
    Several tests read it (one request instead of one each: the file has to stay quick on 2 cores)."""
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


# ---------------------------------------------------------------------------------------------------------------
# Structured outputs


def test_json_object_answers_a_json_object(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[SYSTEM, {"role": "user", "content": 'As JSON with the key "capital": the capital of Germany?'}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=80,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "stop", f"the JSON should end within max_tokens: {choice}"
    value = parse_json(choice.message.content, "content")
    assert isinstance(value, dict), f"json_object should give an object, got {choice.message.content!r}"


def test_json_schema_validates_in_property_order(client: openai.OpenAI) -> None:
    jsonschema.Draft202012Validator.check_schema(COUNTRY_SCHEMA)
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[SYSTEM, COUNTRY_QUESTION],
        response_format=country_format(),
        temperature=0,
        max_tokens=100,
    )
    assert_structured(answer.choices[0].message.content, answer.choices[0].finish_reason)
    assert not answer.choices[0].message.tool_calls, answer


def test_json_schema_streamed_validates_in_property_order(client: openai.OpenAI) -> None:
    pieces, finish_reason = [], None
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=[SYSTEM, COUNTRY_QUESTION],
        response_format=country_format(),
        temperature=0,
        max_tokens=100,
        stream=True,
    ):
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish_reason = choice.finish_reason
    assert len(pieces) > 1, f"a streamed answer should come in pieces: {pieces!r}"
    assert_structured("".join(pieces), finish_reason)


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    answer = client.chat.completions.parse(
        model=MODEL,
        messages=[SYSTEM, {"role": "user", "content": "Alice is 30 years old. Extract the person's name and age."}],
        response_format=Person,
        temperature=0,
        max_tokens=60,
    )
    message = answer.choices[0].message
    assert isinstance(message.parsed, Person), f"parsed is {message.parsed!r}; content {message.content!r}"
    assert list(json.loads(message.content or "")) == ["name", "age"], message.content


UNSUPPORTED_SCHEMAS = {
    "not": (
        ["not"],
        {
            "type": "object",
            "properties": {"a": {"type": "string", "not": {"const": "x"}}},
            "required": ["a"],
            "additionalProperties": False,
        },
    ),
    "if-then": (
        ["if", "then"],
        {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "required": ["a"],
            "additionalProperties": False,
            "if": {"properties": {"a": {"const": "x"}}},
            "then": {"required": ["a"]},
        },
    ),
    "patternProperties": (
        ["patternProperties"],
        {"type": "object", "patternProperties": {"^x_": {"type": "string"}}, "additionalProperties": False},
    ),
    "uniqueItems": (
        ["uniqueItems"],
        {
            "type": "object",
            "properties": {"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}},
            "required": ["a"],
            "additionalProperties": False,
        },
    ),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED_SCHEMAS))
def test_unsupported_schema_keyword_is_refused_by_name(client: openai.OpenAI, case: str) -> None:
    keywords, schema = UNSUPPORTED_SCHEMAS[case]
    jsonschema.Draft202012Validator.check_schema(schema)  # valid JSON Schema; only unsupported here
    error = refusal(
        lambda: client.chat.completions.create(
            model=MODEL,
            messages=[QUESTION],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
            max_tokens=20,
        ),
        f"a schema with {keywords}",
    )
    assert error.param == "response_format", describe_error(error)
    assert any(names_keyword(error_message(error), keyword) for keyword in keywords), (
        f"the message should name {' or '.join(keywords)}: {describe_error(error)}"
    )


def nested_schema(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"], "additionalProperties": False}
    return schema


def huge_schema() -> dict:
    """About 1 MB: an enum of 50,000 distinct strings."""
    words = [f"word-{i:06d}-xxxxxxxxx" for i in range(50_000)]
    return {
        "type": "object",
        "properties": {"word": {"type": "string", "enum": words}},
        "required": ["word"],
        "additionalProperties": False,
    }


HOSTILE_SCHEMAS: dict[str, Callable[[], dict]] = {
    "minItems-1000000": lambda: {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "minItems": 1_000_000}},
        "required": ["xs"],
        "additionalProperties": False,
    },
    "nested-40-deep": lambda: nested_schema(40),  # past any sane schema, within the JSON parser's own limit
    "nested-100-deep": lambda: nested_schema(100),
    "1MB": huge_schema,
}


@pytest.mark.parametrize("case", list(HOSTILE_SCHEMAS))
def test_hostile_schema_is_refused_quickly(client: openai.OpenAI, daemon: Daemon, case: str) -> None:
    schema = HOSTILE_SCHEMAS[case]()
    if case == "1MB":
        assert 1_000_000 <= len(json.dumps(schema)) < 2_000_000
    started = time.monotonic()
    error = refusal(
        lambda: client.chat.completions.create(
            model=MODEL,
            messages=[QUESTION],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
            max_tokens=20,
        ),
        f"the hostile schema {case}",
    )
    elapsed = time.monotonic() - started
    if case == "nested-100-deep":
        # ~200 JSON levels: the gateway's JSON parser (limit 128) refuses the body itself, before any field.
        assert error.param is None and "recursion limit" in str(error.message), describe_error(error)
    else:
        assert error.param == "response_format", describe_error(error)
    assert elapsed < HOSTILE_DEADLINE_S, f"the refusal took {elapsed:.1f}s: {describe_error(error)}"
    assert_still_answers(client, daemon)


# ---------------------------------------------------------------------------------------------------------------
# Tool calls


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


# ---------------------------------------------------------------------------------------------------------------
# Nothing silently ignored: every parameter the SDK knows is honoured or refused by name.


def sdk_parameters() -> list[str]:
    """Every chat-completions request parameter the installed SDK knows (stream included)."""
    names = dict.fromkeys(completion_create_params.CompletionCreateParamsBase.__annotations__)
    names.update(dict.fromkeys(completion_create_params.CompletionCreateParamsStreaming.__annotations__))
    return list(names)


def _first_choice(answer: Any) -> Any:
    return answer.choices[0]


def _check_n(answer: Any) -> None:
    assert len(answer.choices) == 2, f"n=2 answered with {len(answer.choices)} choice(s)"


def _check_logprobs(answer: Any) -> None:
    logprobs = _first_choice(answer).logprobs
    assert logprobs is not None and logprobs.content, f"logprobs=true answered without logprobs: {answer}"


def _check_top_logprobs(answer: Any) -> None:
    _check_logprobs(answer)
    for token in _first_choice(answer).logprobs.content:
        assert len(token.top_logprobs) == 2, f"top_logprobs=2 answered {token}"


def _check_audio(answer: Any) -> None:
    assert _first_choice(answer).message.audio is not None, f"audio asked for, none answered: {answer}"


def _check_max_tokens(answer: Any) -> None:
    assert answer.usage is not None and answer.usage.completion_tokens <= 3, f"over 3 tokens: {answer.usage}"


def _check_stop(answer: Any) -> None:
    assert " " not in (_first_choice(answer).message.content or ""), f"the stop sequence was not honoured: {answer}"


def _check_parallel(answer: Any) -> None:
    calls = _first_choice(answer).message.tool_calls or []
    assert len(calls) <= 1, f"parallel_tool_calls=false answered {len(calls)} calls"


def _check_required(answer: Any) -> None:
    assert _first_choice(answer).message.tool_calls, f"tool_choice=required answered no tool call: {answer}"


def _check_json_object(answer: Any) -> None:
    if _first_choice(answer).finish_reason == "stop":
        assert isinstance(parse_json(_first_choice(answer).message.content, "content"), dict), answer


def _check_usage_chunk(chunks: list) -> None:
    assert any(chunk.usage is not None for chunk in chunks), "stream_options.include_usage: no usage chunk"


FUNCTION = WEATHER_TOOL["function"]  # the deprecated `functions` form of the same function
TOOL_TOKENS = 60  # room for one tool call or a small JSON object to finish


class Sample:
    """A plausible non-default value for one parameter. `companions`: other parameters that request needs (a 400
    may name one of them, but only if that one is refused on its own too). `check`: what a 200 must show for the
    parameter to count as honoured rather than ignored."""

    def __init__(
        self,
        value: Any,
        *,
        companions: Optional[dict] = None,
        check: Optional[Callable[[Any], None]] = None,
        max_tokens: Optional[int] = 3,
        stream: bool = False,
    ):
        self.value = value
        self.companions = companions or {}
        self.check = check
        self.max_tokens = max_tokens
        self.stream = stream


SAMPLES: dict[str, Sample] = {
    "audio": Sample({"voice": "alloy", "format": "wav"}, check=_check_audio),
    "frequency_penalty": Sample(0.5),
    "function_call": Sample("auto", companions={"functions": [FUNCTION]}, max_tokens=TOOL_TOKENS),
    "functions": Sample([FUNCTION], max_tokens=TOOL_TOKENS),
    "logit_bias": Sample({"0": -100}),
    "logprobs": Sample(True, check=_check_logprobs),
    "max_completion_tokens": Sample(3, check=_check_max_tokens, max_tokens=None),
    "max_tokens": Sample(3, check=_check_max_tokens, max_tokens=None),
    "metadata": Sample({"purpose": "parameter-walk"}),
    "modalities": Sample(["text", "audio"], check=_check_audio),
    "n": Sample(2, check=_check_n),
    "parallel_tool_calls": Sample(False, companions={"tools": TOOLS}, check=_check_parallel, max_tokens=TOOL_TOKENS),
    "prediction": Sample({"type": "content", "content": "x"}),
    "presence_penalty": Sample(0.5),
    "prompt_cache_key": Sample("k"),
    "reasoning_effort": Sample("low"),
    "response_format": Sample({"type": "json_object"}, check=_check_json_object, max_tokens=TOOL_TOKENS),
    "safety_identifier": Sample("user-1"),
    "seed": Sample(7),
    "service_tier": Sample("flex"),
    "stop": Sample([" "], check=_check_stop, max_tokens=8),
    "store": Sample(False),
    "stream_options": Sample({"include_usage": True}, check=_check_usage_chunk, stream=True),
    "temperature": Sample(0.3),
    "tool_choice": Sample(
        "required",
        companions={"tools": TOOLS, "parallel_tool_calls": False},
        check=_check_required,
        max_tokens=TOOL_TOKENS,
    ),
    "tools": Sample(TOOLS, max_tokens=TOOL_TOKENS),
    "top_logprobs": Sample(2, companions={"logprobs": True}, check=_check_top_logprobs),
    "top_p": Sample(0.5),
    "user": Sample("user-1"),
    "verbosity": Sample("low"),
    "web_search_options": Sample({}),
}
NOT_WALKED = {"model", "messages", "stream"}  # always sent (stream: both ways, throughout this file)


def probe(client: openai.OpenAI, params: dict, *, stream: bool, max_tokens: Optional[int]) -> Any:
    args: dict[str, Any] = dict(model=MODEL, messages=[SYSTEM, QUESTION])
    if "temperature" not in params:
        args["temperature"] = 0
    if max_tokens is not None:
        args["max_tokens"] = max_tokens
    args.update(copy.deepcopy(params))
    if stream:
        return list(client.chat.completions.create(**args, stream=True))
    return client.chat.completions.create(**args)


@pytest.mark.parametrize("param", [name for name in sdk_parameters() if name not in NOT_WALKED])
def test_every_sdk_parameter_is_honoured_or_refused_by_name(client: openai.OpenAI, param: str) -> None:
    if param not in SAMPLES:
        pytest.fail(
            f"the SDK (openai {openai.__version__}) has a chat-completions parameter {param!r} with no sample "
            f"value in SAMPLES: add one, and make sure the daemon honours or refuses it",
            pytrace=False,
        )
    sample = SAMPLES[param]
    request = {**sample.companions, param: sample.value}
    try:
        answer = probe(client, request, stream=sample.stream, max_tokens=sample.max_tokens)
    except openai.BadRequestError as error:
        if error.param == param:
            return
        if error.param in sample.companions:
            # Refused for the companion: then the companion must be refused on its own, too.
            companion = error.param
            try:
                probe(client, {companion: sample.companions[companion]}, stream=False, max_tokens=TOOL_TOKENS)
            except openai.BadRequestError as alone:
                assert alone.param == companion, f"{companion} alone: {describe_error(alone)}"
                return
            pytest.fail(
                f"{request!r} was refused naming {companion!r}, which is accepted on its own: {describe_error(error)}",
                pytrace=False,
            )
        pytest.fail(
            f"{param}={sample.value!r}: a 400 naming {error.param!r}, not {param!r}: {describe_error(error)}",
            pytrace=False,
        )
    except openai.APIStatusError as error:
        pytest.fail(f"{param}={sample.value!r}: expected 200 or 400, got {describe_error(error)}", pytrace=False)
    if sample.check is not None:
        sample.check(answer)


def test_unknown_parameter_is_refused_by_name(client: openai.OpenAI) -> None:
    error = refusal(
        lambda: client.chat.completions.create(
            model=MODEL, messages=[QUESTION], max_tokens=3, extra_body={"definitely_not_a_param": 1}
        ),
        "an unknown parameter",
    )
    assert error.param == "definitely_not_a_param", describe_error(error)


def readme_table_names() -> set[str]:
    """Every `name` in backticks in the first column of a Markdown table in README.md."""
    names: set[str] = set()
    for line in (REPO_ROOT / "README.md").read_text().splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        first = line.strip("|").split("|")[0]
        names.update(re.findall(r"`([^`]+)`", first))
    return names


def test_readme_has_a_row_for_every_sdk_parameter() -> None:
    documented = readme_table_names()
    missing = [name for name in sdk_parameters() if name not in documented]
    assert not missing, (
        f"README.md's parameter table (name in backticks in the first column) has no row for {missing} "
        f"(the SDK, openai {openai.__version__}, lists {sdk_parameters()})"
    )
