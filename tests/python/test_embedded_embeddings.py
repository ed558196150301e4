"""/v1/embeddings on the embedded engine through the official OpenAI SDK: the default model configured as an
embedding model (`pooling = "mean"`). The SDK asks for base64 by default and decodes it; vectors come back one
per input, unit length, and similar texts are closer than unrelated ones."""
from __future__ import annotations

import math

import openai
import pytest

from embedded_support import serve_embedded

MODEL = "smol-embed"
CONFIG = """
[engines.emb]
kind = "embedded"
model = "smollm2-135m-instruct"
served_name = "smol-embed"
pooling = "mean"
threads = 1
"""


@pytest.fixture(scope="module")
def sdk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    embed_one = lambda sdk: sdk.embeddings.create(model=MODEL, input="a")  # noqa: E731
    for _, client in serve_embedded(request, tmp_path_factory, CONFIG, probe=embed_one):
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_the_sdk_gets_one_unit_vector_per_input(sdk: openai.OpenAI) -> None:
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly revenue rose by 4%."]
    answer = sdk.embeddings.create(model=MODEL, input=texts)
    assert [item.index for item in answer.data] == [0, 1, 2]
    vectors = [item.embedding for item in answer.data]
    for vector in vectors:
        assert len(vector) == 576
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-3)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert answer.usage.prompt_tokens > 10
    as_floats = sdk.embeddings.create(model=MODEL, input=texts[2], encoding_format="float")
    assert cosine(as_floats.data[0].embedding, vectors[2]) > 0.999


def test_dimensions_the_model_cannot_give_are_refused(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model=MODEL, input="x", dimensions=128)
    assert refused.value.param == "dimensions"
