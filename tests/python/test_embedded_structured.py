"""Structured outputs on the embedded engine, through the official OpenAI SDK: `json_object` answers a JSON
object; `json_schema` answers JSON that validates against the schema asked for (jsonschema, the reference
validator), its keys in the schema's property order, whole or streamed in pieces; the SDK's `parse()` fills a
pydantic model. A schema keyword the engine does not support is refused with a 400 that names it, and a hostile
schema (huge, deeply nested, asking for a million items) is refused quickly, leaving the daemon answering.

What is checked is the contract, not the small model's wisdom. The daemon and helpers: embedded_support.py.
"""

from __future__ import annotations

import json
import time
from typing import Optional

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from conftest import Daemon
from embedded_support import (  # noqa: F401 (client, daemon: fixtures, used by name)
    HOSTILE_DEADLINE_S,
    HOSTILE_SCHEMAS,
    MODEL,
    QUESTION,
    SYSTEM,
    UNSUPPORTED_SCHEMAS,
    assert_still_answers,
    client,
    daemon,
    describe_error,
    error_message,
    names_keyword,
    parse_json,
    refusal,
    validate,
)

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


def assert_structured(content: Optional[str], finish_reason: Optional[str]) -> None:
    assert finish_reason == "stop", f"the JSON should end on its own within max_tokens: {finish_reason=} {content=!r}"
    value = parse_json(content, "content")
    validate(value, COUNTRY_SCHEMA, "content")
    assert list(value) == list(COUNTRY_SCHEMA["properties"]), (
        f"keys should be written in the schema's property order {list(COUNTRY_SCHEMA['properties'])}: {content!r}"
    )



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
