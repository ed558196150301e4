"""Nothing silently ignored on the embedded engine: every chat-completions parameter the installed OpenAI SDK
knows (read from the SDK's own type definitions, so a newer SDK's new parameter fails here until it has a sample
value) is, given a plausible non-default value, either honoured (what the answer must show for that is checked)
or refused with a 400 whose `param` names it; an unknown parameter is refused by name; and README.md's parameter
table has a row for every one of them.

The daemon and helpers: embedded_support.py.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, Optional

import openai
import pytest
from openai.types.chat import completion_create_params

from conftest import REPO_ROOT
from embedded_support import (  # noqa: F401 (client, daemon: fixtures; daemon overrides conftest's here)
    MODEL,
    QUESTION,
    SYSTEM,
    TOOLS,
    WEATHER_TOOL,
    client,
    daemon,
    describe_error,
    parse_json,
    refusal,
)


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
NOT_WALKED = {"model", "messages", "stream"}  # always sent (stream: both ways, throughout these tests)


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
