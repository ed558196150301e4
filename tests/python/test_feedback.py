"""Feedback as an application sends it: the official `openai` SDK's raw response gives the `x-request-id`, which
is POSTed to llmopsd's `/v1/feedback` (here with the SDK's own HTTP client, httpx); the scores then show on the
trace in `llmopsctl trace --json`. Bad bodies get an OpenAI-shaped 4xx naming the field.
"""

from __future__ import annotations

import httpx
import openai
import pytest

MODEL = "fake-model"  # the model the conftest's [engines.fake] serves


@pytest.fixture(scope="module")
def http(daemon):
    with httpx.Client(base_url=daemon.http_base, timeout=30.0, trust_env=False) as client:
        yield client


def chat_request_id(openai_client: openai.OpenAI, content: str) -> str:
    raw = openai_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": content}]
    )
    assert raw.parse().choices[0].message.content == "echo: " + content
    request_id = raw.headers.get("x-request-id")
    assert request_id, f"no x-request-id header; headers: {dict(raw.headers)}"
    return request_id


def test_feedback_on_an_sdk_request_lands_on_its_trace(openai_client: openai.OpenAI, daemon, http) -> None:
    request_id = chat_request_id(openai_client, "what is the capital of France?")

    thumbs = http.post("/v1/feedback", json={"trace_id": request_id, "name": "thumbs", "bool": True, "comment": "spot on"})
    assert thumbs.status_code == 201, thumbs.text
    score = thumbs.json()
    assert score["object"] == "score"
    assert score["trace_id"] == request_id
    assert (score["name"], score["kind"], score["value"], score["source"]) == ("thumbs", "boolean", True, "human")
    assert score["id"]

    judged = http.post(
        "/v1/feedback", json={"trace_id": request_id, "name": "helpfulness", "value": 0.75, "source": "llm"}
    )
    assert judged.status_code == 201, judged.text
    labelled = http.post("/v1/feedback", json={"trace_id": request_id, "name": "topic", "label": "geography"})
    assert labelled.status_code == 201, labelled.text

    daemon.wait_for_trace(request_id)
    trace = daemon.trace(request_id)
    scores = [(s["name"], s["kind"], s["value"], s["source"]) for s in trace["scores"]]
    assert scores == [
        ("thumbs", "boolean", True, "human"),
        ("helpfulness", "number", 0.75, "llm"),
        ("topic", "label", "geography", "human"),
    ]
    assert trace["scores"][0]["comment"] == "spot on"
    assert trace["scores"][0]["id"] == score["id"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"trace_id": "0190b5a8-0000-7000-8000-000000000000", "name": "thumbs", "bool": True}, 404, None),
        ({"name": "thumbs", "bool": True}, 400, "trace_id"),
        ({"trace_id": "TRACE", "name": "x" * 65, "bool": True}, 400, "name"),
        ({"trace_id": "TRACE", "name": "thumbs", "bool": "yes"}, 400, "bool"),
        ({"trace_id": "TRACE", "name": "quality", "value": "0.8"}, 400, "value"),
        ({"trace_id": "TRACE", "name": "thumbs", "bool": True, "label": "up"}, 400, "label"),
        ({"trace_id": "TRACE", "name": "thumbs", "bool": True, "comment": "c" * 4097}, 400, "comment"),
        ({"trace_id": "TRACE", "name": "thumbs", "bool": True, "source": "robot"}, 400, "source"),
    ],
)
def test_bad_feedback_gets_an_openai_error_naming_the_field(
    openai_client: openai.OpenAI, http, body: dict, status: int, param
) -> None:
    if body.get("trace_id") == "TRACE":
        body = {**body, "trace_id": chat_request_id(openai_client, "score me")}
    response = http.post("/v1/feedback", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"], error
    assert error["type"], error
    assert error.get("param") == param, error


def test_a_huge_body_is_refused_and_the_daemon_keeps_answering(openai_client: openai.OpenAI, http) -> None:
    huge = b'{"trace_id":"x","name":"n","bool":true,"comment":"' + b"c" * (256 * 1024) + b'"}'
    response = http.post("/v1/feedback", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    request_id = chat_request_id(openai_client, "still here")
    assert http.post("/v1/feedback", json={"trace_id": request_id, "name": "thumbs", "passed": False}).status_code == 201
