"""The daemon's gRPC API as a generic client sees it: Python grpcio over the Unix socket, with every message
class built at run time from server reflection (no generated code, no .proto files), the way grpcurl works."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

MODEL = "fake-model"  # the model the conftest's [engines.fake] serves
ENGINE = "fake"
TRACE_TIMEOUT_S = 10.0


def message_class(pool: descriptor_pool.DescriptorPool, full_name: str):
    descriptor = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def enum_number(pool: descriptor_pool.DescriptorPool, enum_name: str, value_name: str) -> int:
    return pool.FindEnumTypeByName(enum_name).values_by_name[value_name].number


class Reflected:
    """Calls unary methods by their full service name, with request/response classes from reflection."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.database = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def services(self) -> list[str]:
        return list(self.database.get_services())

    def call(self, service: str, method: str, /, timeout: float = 10.0, **fields):
        descriptor = self.pool.FindServiceByName(service).methods_by_name[method]
        assert not descriptor.client_streaming and not descriptor.server_streaming, f"{service}/{method} is not unary"
        request_class = message_class(self.pool, descriptor.input_type.full_name)
        response_class = message_class(self.pool, descriptor.output_type.full_name)
        stub = self.channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return stub(request_class(**fields), timeout=timeout)


@pytest.fixture(scope="module")
def reflected(daemon):
    # grpc-core sends the socket path as :authority over Unix sockets, which is not a valid HTTP/2 authority
    # for the daemon's HTTP/2 stack (h2 resets the stream); name one explicitly, as grpcurl and Go clients do.
    options = [("grpc.default_authority", "localhost")]
    with grpc.insecure_channel(daemon.grpc_target, options=options) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            pytest.fail(f"cannot connect to {daemon.grpc_target}\nllmopsd log tail:\n{daemon.process.log_tail()}")
        yield Reflected(channel)


def test_reflection_lists_the_services(reflected: Reflected) -> None:
    services = set(reflected.services())
    for expected in ("llmops.v1.TraceService", "llmops.v1.StatusService", "grpc.health.v1.Health"):
        assert expected in services, f"{expected} missing from reflection: {sorted(services)}"
    reflection = {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
    assert services & reflection, f"the reflection service does not list itself: {sorted(services)}"


def test_reflection_describes_the_trace_service(reflected: Reflected) -> None:
    service = reflected.pool.FindServiceByName("llmops.v1.TraceService")
    methods = {method.name: method for method in service.methods}
    assert set(methods) == {"ListTraces", "GetTrace", "WatchTraces", "Replay"}, sorted(methods)
    assert methods["ListTraces"].input_type.full_name == "llmops.v1.ListTracesRequest"
    assert methods["ListTraces"].output_type.full_name == "llmops.v1.ListTracesResponse"
    assert methods["GetTrace"].output_type.full_name == "llmops.v1.Trace"
    assert methods["WatchTraces"].server_streaming and not methods["WatchTraces"].client_streaming
    assert methods["Replay"].server_streaming and methods["Replay"].output_type.full_name == "llmops.v1.ReplayEvent"
    trace_fields = reflected.pool.FindMessageTypeByName("llmops.v1.Trace").fields_by_name
    for field in ("id", "status", "input_tokens", "output_tokens", "ttft_ms", "chunk_offsets_ms", "chunk_chars",
                  "replay_of", "attempts"):
        assert field in trace_fields, f"llmops.v1.Trace has no field {field}"


def test_list_traces_over_reflection(reflected: Reflected, openai_client) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hello grpc"}]
    )
    request_id = raw.headers.get("x-request-id")
    assert request_id, f"response has no x-request-id header: {dict(raw.headers)}"
    assert raw.parse().choices[0].message.content == "echo: hello grpc"

    # Traces are written asynchronously: poll until this one is listed.
    deadline = time.monotonic() + TRACE_TIMEOUT_S
    while True:
        response = reflected.call("llmops.v1.TraceService", "ListTraces", limit=10)
        assert len(response.traces) <= 10, "limit not honoured"
        found = [trace for trace in response.traces if trace.id == request_id]
        if found:
            break
        assert time.monotonic() < deadline, (
            f"trace {request_id} not in ListTraces after {TRACE_TIMEOUT_S:.0f}s: {[t.id for t in response.traces]}"
        )
        time.sleep(0.05)

    trace = found[0]
    assert trace.status == enum_number(reflected.pool, "llmops.v1.TraceStatus", "TRACE_STATUS_OK"), trace
    assert trace.endpoint == "chat.completions"
    assert trace.http_status == 200
    assert trace.model_served == MODEL
    assert trace.engine == ENGINE
    assert (trace.input_tokens, trace.output_tokens) == (2, 3)
    assert not trace.tokens_estimated
    assert not trace.stream

    full = reflected.call("llmops.v1.TraceService", "GetTrace", id=request_id)
    assert full.id == request_id
    assert full.response_text == "echo: hello grpc"
    assert [attempt.engine for attempt in full.attempts] == [ENGINE]


def test_get_trace_of_unknown_id_is_not_found(reflected: Reflected) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        reflected.call("llmops.v1.TraceService", "GetTrace", id="no-such-trace")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value


def test_status_over_reflection(reflected: Reflected, fake_upstream) -> None:
    status = reflected.call("llmops.v1.StatusService", "GetStatus")
    assert status.version, status
    assert status.uptime_seconds > 0, status
    assert [engine.name for engine in status.engines] == [ENGINE], status
    engine = status.engines[0]
    assert engine.kind == "openai"
    assert engine.base_url.rstrip("/") == fake_upstream.base_url.rstrip("/")
    assert list(engine.models) == [MODEL]
    # What the embedded engine was built for, and what this host has (`llmopsd --version` says the same).
    build = status.engine_build
    assert build.target_cpu, status
    assert build.built_with and not build.missing_on_host, status


def test_plain_unix_channel_is_refused_by_the_http2_stack(daemon) -> None:
    """The README's note, checked: grpc-core sends the percent-encoded socket path (``tmp%2F...sock``) as
    :authority; Rust's ``http`` crate, under h2 and tonic, refuses ``%`` in a host name, so h2 resets the stream
    (PROTOCOL_ERROR) before the daemon sees the call. If an upgrade lifts that, this fails: drop the workaround."""
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        health = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.RpcError) as refused:
            health(b"", timeout=10)
    assert refused.value.code() == grpc.StatusCode.INTERNAL, refused.value
    assert "RST_STREAM" in (refused.value.details() or ""), refused.value


def test_health_check_is_serving(reflected: Reflected) -> None:
    response = reflected.call("grpc.health.v1.Health", "Check", service="")
    status_field = response.DESCRIPTOR.fields_by_name["status"]
    assert status_field.enum_type.values_by_number[response.status].name == "SERVING", response
