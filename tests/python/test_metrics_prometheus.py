"""`GET /metrics` read by the reference Python parser (prometheus_client): request metrics under the OpenTelemetry
GenAI names after real requests to the embedded default model, GPU gauges from the stand-in NVML library (built
by the tests crate's build script), engine and trace-store gauges."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO_ROOT, poll_until, start_daemon, start_once

MODEL = "smollm2-135m-instruct"
NVML_VALUES = """driver_version 550.54.15
device_count 1
gpu0.name NVIDIA A100-SXM4-80GB
gpu0.uuid GPU-aaaaaaaa-0000-0000-0000-000000000000
gpu0.memory_total 85899345920
gpu0.memory_used 21474836480
gpu0.util_gpu 55
gpu0.util_memory 20
gpu0.power_mw 250000
gpu0.power_limit_mw 400000
gpu0.energy_mj 7200000
gpu0.temperature 58
gpu0.clock_sm 1410
gpu0.clock_mem 1593
gpu0.throttle 0x0
gpu0.processes
"""


def stand_in_nvml(tmp: Path) -> Path:
    """A private copy of the stand-in libnvidia-ml.so.1 (it reads fake_nvml.txt beside itself)."""
    built = sorted(
        (REPO_ROOT / "target").glob("*/build/llmops-e2e-*/out/libnvidia-ml.so.1"),
        key=lambda p: p.stat().st_mtime,
    )
    if not built:
        pytest.fail("the stand-in NVML library is not built: run `cargo build -p llmops-e2e --tests`", pytrace=False)
    library = tmp / "libnvidia-ml.so.1"
    library.write_bytes(built[-1].read_bytes())
    (tmp / "fake_nvml.txt").write_text(NVML_VALUES)
    return library


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    library = stand_in_nvml(tmp_path_factory.mktemp("nvml"))
    config = f'[telemetry]\ninterval_ms = 200\nnvml_library = "{library}"\n'
    daemon = start_once(request, "llmopsd with stand-in NVML", lambda: start_daemon(tmp_path_factory, config))
    try:
        yield daemon
    finally:
        daemon.process.stop()


def scrape(daemon) -> dict:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{daemon.http_base}/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    # The parser raises on anything malformed; families come back by name (counters without `_total`).
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family, name: str) -> list:
    return [s for s in family.samples if s.name == name]


def test_metrics_parse_with_genai_names_gpu_and_engine_gauges(daemon) -> None:
    sdk = openai.OpenAI(base_url=f"{daemon.http_base}/v1", api_key="unused", max_retries=0, timeout=60)

    def answered() -> bool:
        try:
            stream = sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0, stream=True
            )
            return sum(1 for _ in stream) > 0
        except openai.APIStatusError as error:
            if error.status_code == 503:  # still loading the model
                return False
            raise

    poll_until(answered, 60.0, lambda: f"the default model did not answer\n{daemon.process.log_tail()}")
    sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=4)

    def with_gpu_gauges() -> dict | None:
        families = scrape(daemon)
        power = families.get("llmops_gpu_power_watts")
        return families if power is not None and power.samples else None

    families = poll_until(with_gpu_gauges, 10.0, lambda: "no GPU gauges in /metrics")
    duration = families["gen_ai_client_operation_duration_seconds"]
    assert duration.type == "histogram"
    counts = samples(duration, "gen_ai_client_operation_duration_seconds_count")
    assert sum(s.value for s in counts) >= 2
    labels = counts[0].labels
    assert labels["gen_ai_request_model"] == MODEL and labels["gen_ai_operation_name"] == "chat"
    # Cumulative buckets end in +Inf, which equals the count.
    infinite = [s for s in samples(duration, "gen_ai_client_operation_duration_seconds_bucket") if s.labels["le"] == "+Inf"]
    assert sum(s.value for s in infinite) == sum(s.value for s in counts)

    usage = families["gen_ai_client_token_usage"]
    assert {s.labels["gen_ai_token_type"] for s in samples(usage, "gen_ai_client_token_usage_count")} == {"input", "output"}
    ttft = samples(families["gen_ai_server_time_to_first_token_seconds"], "gen_ai_server_time_to_first_token_seconds_count")
    assert sum(s.value for s in ttft) >= 1, "the streamed request has a TTFT"
    assert families["gen_ai_server_time_per_output_token_seconds"].type == "histogram"

    (power,) = families["llmops_gpu_power_watts"].samples
    assert power.value == 250.0 and power.labels["name"] == "NVIDIA A100-SXM4-80GB"
    (energy,) = families["llmops_gpu_energy_joules"].samples
    assert energy.value == 7200.0
    assert families["llmops_gpu_energy_joules"].type == "counter"
    assert [s.value for s in families["llmops_gpu_throttled"].samples] == [0.0]

    (up,) = families["llmops_engine_up"].samples
    assert up.labels["engine"] == MODEL and up.value == 1.0
    running = families["llmops_engine_requests_running"].samples
    assert [s.labels["engine"] for s in running] == [MODEL]
    assert samples(families["llmops_traces_dropped"], "llmops_traces_dropped_total")[0].value == 0.0
    assert families["llmops_requests"].type == "counter"
