"""Shared by the embedded-engine agent tests (test_embedded_structured.py, test_embedded_tools.py,
test_embedded_params.py): the daemon they run against, its per-module fixtures, the requests they send (the
questions, the tool definitions, the unsupported and hostile schemas) and the helpers that check answers and
refusals.

The daemon is llmopsd started with no config (the default model, SmolLM2, served in-process; fetched beforehand
by `llmopsd model pull`, which scripts/test.sh runs), driven through the official OpenAI SDK. One daemon serves
the whole session: conftest.py's session-scoped `embedded` fixture runs `serve_embedded` below. (A fixture
defined here and imported into several modules would be a separate fixture in each, and start a daemon per
module.) The `daemon` and `client` fixtures below are imported by name into each test module: `daemon` there
overrides conftest's (which starts llmopsd in front of the fake upstream) for that module only.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterator, Optional

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from conftest import Daemon, poll_until, start_daemon, start_once

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


# ---------------------------------------------------------------------------------------------------------------
# The daemon and fixtures


def serve_embedded(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    config_text: Optional[str] = None,
    probe: Optional[Callable[[openai.OpenAI], Any]] = None,
) -> Iterator[tuple[Daemon, openai.OpenAI]]:
    """llmopsd with `config_text` (None: no config, the embedded engine and the default model), once the model
    has loaded (`probe` stops getting 503s; by default a one-token completion), and the SDK pointed at it."""
    what = "llmopsd (no config)" if config_text is None else "llmopsd (embedded engine)"
    daemon = start_once(request, what, lambda: start_daemon(tmp_path_factory, config_text))
    sdk = openai.OpenAI(
        base_url=f"{daemon.http_base}/v1",
        api_key="unused",
        max_retries=0,
        timeout=60,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )
    probe = probe or (lambda sdk: sdk.completions.create(model=MODEL, prompt="a", max_tokens=1))

    def loaded() -> bool:
        try:
            probe(sdk)
            return True
        except openai.APIStatusError as error:
            if error.status_code == 503:  # still loading
                return False
            raise

    try:
        poll_until(loaded, READY_TIMEOUT_S, lambda: f"the model did not load\n{daemon.process.log_tail()}")
        yield daemon, sdk
    finally:
        sdk.close()
        daemon.process.stop()


@pytest.fixture(scope="module")
def daemon(embedded) -> Daemon:
    """The embedded daemon, in place of conftest's (llmopsd in front of the fake upstream) where imported."""
    return embedded[0]


@pytest.fixture(scope="module")
def client(embedded) -> openai.OpenAI:
    """The SDK pointed at the embedded daemon: no retries, no proxy from the environment."""
    return embedded[1]


# ---------------------------------------------------------------------------------------------------------------
# Checking answers and refusals


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


# ---------------------------------------------------------------------------------------------------------------
# Schemas refused by name (unsupported keywords) and quickly (hostile ones), as response_format or as a tool's
# parameters


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
