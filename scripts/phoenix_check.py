#!/usr/bin/env python3
"""llmopsd's OTLP trace export, proved against a real receiver: Arize Phoenix.

Run through scripts/phoenix-check.sh, which provides the virtual environment (arize-phoenix, requests, grpcio,
opentelemetry-proto). What this does:

1. Starts Phoenix on free loopback ports (HTTP UI/API/OTLP-HTTP and OTLP-gRPC) with a temporary working dir
   (SQLite), no telemetry, no external resources, and waits until GET /readyz answers and the gRPC port accepts.
2. Self-test of the receiver: one hand-built OpenInference span per protocol (OTLP HTTP/protobuf POST to
   /v1/traces and OTLP gRPC TraceService/Export), read back through Phoenix's REST API. With --phoenix-only it
   stops there (no llmopsd needed).
3. Starts a fake OpenAI-compatible upstream (stdlib http.server, deterministic answers and usage; a prompt
   with "FAIL-ONCE" gets one 503 first, to make a second attempt), then for each protocol (http, grpc)
   starts target/release/llmopsd with [export.otlp] pointing at Phoenix, sends chat completions (plain,
   streamed with and without include_usage, tagged with user/session/metadata, one retried), and polls
   Phoenix (bounded) until the request spans and their attempt spans arrive, then checks their attributes.

Prints PASS/FAIL per check and exits 1 on any failure (2 on a setup error). Every process it started is
stopped and the temporary directory removed on exit (--keep keeps the directory, for the logs).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

PROJECT = "llmops-e2e"
ROUTE = "e2e-chat"  # the public model name clients ask for
UPSTREAM_MODEL = "fake-model"  # the model name at the fake engine
ENGINE = "fake"
SYSTEM_PROMPT = "You are a terse assistant."


class SetupError(Exception):
    """Something the checks need could not be set up (exit 2, not a check failure)."""


# --------------------------------------------------------------------------------------------------------------
# Report


class Report:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, ok, detail))
        line = f"{'PASS' if ok else 'FAIL'}  {name}"
        if detail and not ok:
            line += f"  -- {detail}"
        elif detail:
            line += f"  ({detail})"
        print(line, flush=True)
        return ok

    def failed(self) -> int:
        return sum(1 for _, ok, _ in self.results if not ok)


def log(msg: str) -> None:
    print(f"phoenix-check: {msg}", flush=True)


# --------------------------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


RUNNING: list["Proc"] = []  # every child started, so that an interrupted run still stops them all


class Proc:
    """A child in a process group of its own, so that stopping it stops whatever it forked too."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str], stdout_pipe: bool = False):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        RUNNING.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        if self in RUNNING:
            RUNNING.remove(self)
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until(what: str, predicate, timeout: float, interval: float = 0.2, alive=None):
    """Polls predicate until it returns something truthy; SetupError after timeout or when alive() is false."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and not alive():
            raise SetupError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise SetupError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------------------
# Phoenix


class Phoenix:
    def __init__(self, workdir: Path, start_timeout: float):
        self.http_port = free_port()
        self.grpc_port = free_port()
        while self.grpc_port == self.http_port:
            self.grpc_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        workdir.mkdir(parents=True)
        # Nothing from the caller's Phoenix settings (a remote database, auth, a collector) leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        env.update(
            PHOENIX_WORKING_DIR=str(workdir),
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.http_port),
            PHOENIX_GRPC_PORT=str(self.grpc_port),
            PHOENIX_TELEMETRY_ENABLED="false",
            PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        )
        started = time.monotonic()
        self.proc = Proc(
            "phoenix",
            [sys.executable, "-m", "phoenix.server.main", "serve"],
            workdir.parent / "phoenix.log",
            env,
        )
        try:
            wait_until("Phoenix /readyz", self._ready, start_timeout, alive=self.proc.alive)
            wait_until("Phoenix OTLP gRPC port", lambda: port_open(self.grpc_port), 30, alive=self.proc.alive)
        except SetupError as e:
            raise SetupError(f"{e}\n--- {self.proc.log_path} (tail) ---\n{self.proc.log_tail()}") from None
        self.start_secs = time.monotonic() - started
        self.version = requests.get(f"{self.base}/arize_phoenix_version", timeout=5).text.strip()

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def spans(self, project: str) -> list[dict]:
        """All spans of a project (newest first); [] while the project does not exist yet."""
        out: list[dict] = []
        cursor = None
        while True:
            params: dict = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            r = requests.get(f"{self.base}/v1/projects/{project}/spans", params=params, timeout=10)
            if r.status_code == 404:
                return []
            r.raise_for_status()
            body = r.json()
            out.extend(body.get("data") or [])
            cursor = body.get("next_cursor")
            if not cursor:
                return out

    def stop(self) -> None:
        self.proc.stop()


# --------------------------------------------------------------------------------------------------------------
# Hand-built spans (receiver self-test)


def hand_built_request(project: str, name: str, marker: str):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    def kv(key: str, value) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "phoenix-check"), kv("openinference.project.name", project)])
    scope = rs.scope_spans.add()
    scope.scope.name = "phoenix-check"
    now = time.time_ns()
    trace_id, root_id = os.urandom(16), os.urandom(8)
    root = scope.spans.add(
        trace_id=trace_id,
        span_id=root_id,
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=now - 20_000_000,
        end_time_unix_nano=now,
        status=Status(code=Status.STATUS_CODE_OK),
    )
    root.attributes.extend(
        [
            kv("openinference.span.kind", "LLM"),
            kv("llm.model_name", "hand-model"),
            kv("llm.token_count.prompt", 11),
            kv("llm.token_count.completion", 7),
            kv("input.value", f"What is 2+2? {marker}"),
            kv("output.value", "4"),
            kv("gen_ai.operation.name", "chat"),
        ]
    )
    child = scope.spans.add(
        trace_id=trace_id,
        span_id=os.urandom(8),
        parent_span_id=root_id,
        name="attempt",
        start_time_unix_nano=now - 15_000_000,
        end_time_unix_nano=now - 1_000_000,
    )
    child.attributes.extend([kv("openinference.span.kind", "LLM"), kv("llm.model_name", "hand-model")])
    return req, root_id.hex()


def self_test(phoenix: Phoenix, report: Report, timeout: float, grpc_wanted: bool) -> bool:
    """Sends one hand-built span per protocol and reads it back; returns whether gRPC ingestion works."""
    marker = uuid.uuid4().hex[:12]
    project = "phoenix-check-selftest"
    sent: dict[str, str] = {}
    req, root = hand_built_request(project, "chat hand-model", f"{marker}-http")
    r = requests.post(
        f"{phoenix.base}/v1/traces",
        data=req.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=10,
    )
    report.check("receiver: OTLP HTTP/protobuf POST /v1/traces accepted", r.status_code == 200, f"HTTP {r.status_code}")
    sent["http"] = root
    grpc_ok = False
    if grpc_wanted:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

        req, root = hand_built_request(project, "chat hand-model", f"{marker}-grpc")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{phoenix.grpc_port}") as channel:
                TraceServiceStub(channel).Export(req, timeout=10)
            grpc_ok = True
            sent["grpc"] = root
        except grpc.RpcError as e:
            report.check("receiver: OTLP gRPC Export accepted", False, f"{e.code()}: {e.details()}")
        else:
            report.check("receiver: OTLP gRPC Export accepted", True)

    def arrived():
        spans = phoenix.spans(project)
        ids = {s["context"]["span_id"] for s in spans}
        return spans if all(root in ids for root in sent.values()) else None

    try:
        spans = wait_until("hand-built spans in Phoenix", arrived, timeout, interval=0.5)
    except SetupError as e:
        report.check("receiver: hand-built spans readable through GET /v1/projects/{project}/spans", False, str(e))
        return False
    for proto, root in sent.items():
        span = next(s for s in spans if s["context"]["span_id"] == root)
        a = span["attributes"]
        children = [s for s in spans if s.get("parent_id") == root]
        ok = (
            span["span_kind"] == "LLM"
            and a.get("llm.model_name") == "hand-model"
            and a.get("llm.token_count.prompt") == 11
            and a.get("llm.token_count.completion") == 7
            and a.get("input.value") == f"What is 2+2? {marker}-{proto}"
            and a.get("output.value") == "4"
            and len(children) == 1
        )
        report.check(f"receiver: {proto} span read back with its attributes and child", ok, "" if ok else json.dumps(span))
    return grpc_ok


# --------------------------------------------------------------------------------------------------------------
# Fake OpenAI upstream


def words(text: str) -> int:
    return len(text.split())


class FakeUpstream:
    """Deterministic OpenAI-compatible chat server. Records what usage it reported for each prompt."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reported: dict[str, dict] = {}  # last user message -> {"answer", "prompt_tokens", "completion_tokens"}
        self.failed_once: set[str] = set()
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": UPSTREAM_MODEL, "object": "model", "owned_by": "fake"}]})
                else:
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._json(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
                    return
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                    return
                fake.chat(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-upstream", daemon=True)
        self.thread.start()

    def chat(self, handler, body: dict) -> None:
        messages = body.get("messages") or []
        texts = [m.get("content") if isinstance(m.get("content"), str) else "" for m in messages]
        last_user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "") or ""
        with self.lock:
            self.requests += 1
            if "FAIL-ONCE" in last_user and last_user not in self.failed_once:
                self.failed_once.add(last_user)
                handler._json(503, {"error": {"message": "fake upstream: failing once", "type": "server_error"}})
                return
        answer = f"The answer to ({last_user.split()[-1] if last_user.split() else '-'}) is forty two."
        usage = {
            "prompt_tokens": sum(words(t) for t in texts) + 3 * len(messages),
            "completion_tokens": words(answer) + 1,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with self.lock:
            self.reported[last_user] = {"answer": answer, **usage}
        model = body.get("model") or UPSTREAM_MODEL
        cid, created = f"chatcmpl-fake-{uuid.uuid4().hex[:8]}", int(time.time())
        if not body.get("stream"):
            handler._json(
                200,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": usage,
                },
            )
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict, finish=None, usage_=None) -> bytes:
            c = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [] if usage_ is not None else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage_ is not None:
                c["usage"] = usage_
            return b"data: " + json.dumps(c).encode() + b"\n\n"

        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("connection", "close")
        handler.end_headers()
        parts = [chunk({"role": "assistant", "content": ""})]
        pieces = answer.split(" ")
        parts += [chunk({"content": (" " if i else "") + p}) for i, p in enumerate(pieces)]
        parts.append(chunk({}, finish="stop"))
        if include_usage:
            parts.append(chunk({}, usage_=usage))
        parts.append(b"data: [DONE]\n\n")
        for p in parts:
            handler.wfile.write(p)
            handler.wfile.flush()
        handler.close_connection = True

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------------------------
# llmopsd


def daemon_config(tmp: Path, upstream: FakeUpstream, phoenix: Phoenix, protocol: str) -> str:
    port = phoenix.http_port if protocol == "http" else phoenix.grpc_port
    return f"""# written by scripts/phoenix-check.sh
[server]
data_dir = "{tmp / 'data'}"
http_listen = "127.0.0.1:0"
grpc_listen = "unix:{tmp / 'llmopsd.sock'}"
shutdown_grace_secs = 2

[resilience.retry]
max_attempts_per_target = 2
base_ms = 10
max_ms = 50

[engines.{ENGINE}]
kind = "openai"
base_url = "{upstream.base_url}"
models = ["{UPSTREAM_MODEL}"]
metrics_url = "off"
connect_timeout_ms = 2000
first_token_timeout_ms = 10000
request_timeout_ms = 20000

[routes.{ROUTE}]
targets = [{{ engine = "{ENGINE}", model = "{UPSTREAM_MODEL}" }}]

[export.otlp]
endpoint = "http://127.0.0.1:{port}"
protocol = "{protocol}"
profile = "phoenix"
project = "{PROJECT}"
content = true
batch_size = 64
flush_interval_ms = 200
"""


class Daemon:
    def __init__(self, binary: Path, tmp: Path, config: str, start_timeout: float):
        tmp.mkdir(parents=True)
        (tmp / "data").mkdir()
        self.config_path = tmp / "llmopsd.toml"
        self.config_path.write_text(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS", "OTEL_"))}
        env["LLMOPS_DATA_DIR"] = str(tmp / "data")
        env.setdefault("RUST_LOG", "info")
        self.proc = Proc(
            "llmopsd",
            [str(binary), "--config", str(self.config_path), "--data-dir", str(tmp / "data"), "--http-listen", "127.0.0.1:0"],
            tmp / "llmopsd.log",
            env,
            stdout_pipe=True,
        )
        self.http: str | None = None
        ready = threading.Event()

        def read_stdout() -> None:  # learn the address from the ready line, then keep draining
            with open(tmp / "llmopsd.stdout", "wb") as out:
                for raw in self.proc.popen.stdout:
                    out.write(raw)
                    out.flush()
                    line = raw.decode(errors="replace").strip()
                    m = re.match(r"llmopsd listening http=(\S+)", line)
                    if m and self.http is None:
                        self.http = f"http://{m.group(1)}"
                        ready.set()
            ready.set()

        threading.Thread(target=read_stdout, name="llmopsd-stdout", daemon=True).start()
        try:
            if not ready.wait(start_timeout) or self.http is None:
                try:
                    self.proc.popen.wait(2)  # stdout closed: it is exiting; say how
                except subprocess.TimeoutExpired:
                    pass
                code = self.proc.popen.poll()
                raise SetupError("llmopsd printed no 'llmopsd listening' line" + ("" if code is None else f" and exited with status {code}"))
            wait_until("llmopsd /readyz", self._ready, start_timeout, alive=self.proc.alive)
        except SetupError as e:
            self.proc.stop()
            raise SetupError(f"{e}\n--- {self.proc.log_path} (tail) ---\n{self.proc.log_tail()}") from None

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.http}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.proc.stop()


def chat(daemon: Daemon, body: dict, headers: dict | None = None) -> tuple[int, str]:
    """Sends one chat completion; returns (HTTP status, answer text)."""
    url = f"{daemon.http}/v1/chat/completions"
    if not body.get("stream"):
        r = requests.post(url, json=body, headers=headers or {}, timeout=30)
        if r.status_code != 200:
            return r.status_code, r.text
        return 200, r.json()["choices"][0]["message"]["content"]
    text = []
    with requests.post(url, json=body, headers=headers or {}, timeout=30, stream=True) as r:
        if r.status_code != 200:
            return r.status_code, r.text
        for line in r.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                break
            event = json.loads(data)
            for choice in event.get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
    return 200, "".join(text)


def run_protocol(protocol: str, binary: Path, tmp: Path, upstream: FakeUpstream, phoenix: Phoenix, report: Report, timeout: float) -> None:
    nonce = uuid.uuid4().hex[:10]
    p = f"[{protocol}]"
    try:
        daemon = Daemon(binary, tmp / f"llmopsd-{protocol}", daemon_config(tmp / f"llmopsd-{protocol}", upstream, phoenix, protocol), 60)
    except SetupError as e:
        report.check(f"{p} llmopsd starts with [export.otlp] protocol = \"{protocol}\"", False, str(e))
        return
    report.check(f"{p} llmopsd starts with [export.otlp] protocol = \"{protocol}\"", True, daemon.http or "")
    session, user = f"sess-{nonce}", f"user-{nonce}"
    # (label, request body, extra headers, expected attempts)
    cases = [
        ("plain", {"model": ROUTE, "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": f"What is the capital of France? {nonce}-plain"}]}, {}, 1),
        ("stream+usage", {"model": ROUTE, "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": f"Count to three please {nonce}-stream-usage"}]}, {}, 1),
        ("stream", {"model": ROUTE, "stream": True, "messages": [{"role": "user", "content": f"Name a colour {nonce}-stream"}]}, {}, 1),
        (
            "tagged",
            {"model": ROUTE, "user": user, "metadata": {"session_id": session, "team": "e2e-team"}, "messages": [{"role": "user", "content": f"Say hello {nonce}-tagged"}]},
            {"x-llmops-tag-env": "ci"},
            1,
        ),
        ("retried", {"model": ROUTE, "messages": [{"role": "user", "content": f"FAIL-ONCE then answer {nonce}-retried"}]}, {}, 2),
    ]
    try:
        sent = []
        for label, body, headers, attempts in cases:
            try:
                status, answer = chat(daemon, body, headers)
            except requests.RequestException as e:
                status, answer = 0, f"{type(e).__name__}: {e}"
            prompt = body["messages"][-1]["content"]
            ok = status == 200 and answer == upstream.reported.get(prompt, {}).get("answer")
            report.check(f"{p} {label}: chat completion through llmopsd", ok, f"HTTP {status}: {answer[:200]}" if not ok else "")
            if ok:
                sent.append((label, body, prompt, attempts))
        # Bounded poll: until every request span and all its attempt spans are in Phoenix.
        def arrived():
            spans = phoenix.spans(PROJECT)
            roots = find_roots(spans, sent)
            if any(r is None for r in roots):
                return None
            for (_, _, _, attempts), root in zip(sent, roots):
                if len(children_of(spans, root)) < attempts:
                    return None
            return spans

        started = time.monotonic()
        try:
            spans = wait_until(f"{len(sent)} request spans in Phoenix project {PROJECT}", arrived, timeout, interval=0.5)
            report.check(f"{p} all {len(sent)} request spans and their attempt spans reached Phoenix", True, f"{time.monotonic() - started:.1f} s")
        except SetupError as e:
            spans = phoenix.spans(PROJECT)
            report.check(f"{p} all {len(sent)} request spans and their attempt spans reached Phoenix", False, f"{e}; {len(spans)} spans in the project")
            log(f"llmopsd log tail ({daemon.proc.log_path}):\n{daemon.proc.log_tail()}")
        roots = find_roots(spans, sent)
        for (label, body, prompt, attempts), root in zip(sent, roots):
            if root is None:
                report.check(f"{p} {label}: request span present", False, f"no root span whose input.value holds {prompt!r}")
                continue
            check_request_span(p, label, prompt, attempts, root, spans, upstream.reported[prompt], report, session, user)
        if roots and roots[0] is not None:
            check_late_score(p, daemon, phoenix, roots[0], report, timeout)
    finally:
        daemon.stop()


def check_late_score(p: str, daemon: Daemon, phoenix: Phoenix, root: dict, report: Report, timeout: float) -> None:
    """A score given after its trace was exported reaches Phoenix as an EVALUATOR span under the request span."""
    trace_id = root["attributes"].get("llmops.trace_id")
    body = {"trace_id": trace_id, "name": "helpful", "value": 0.75, "source": "llm"}
    r = requests.post(f"{daemon.http}/v1/feedback", json=body, timeout=30)
    if not report.check(f"{p} score: POST /v1/feedback on an exported trace", r.status_code in (200, 201), f"HTTP {r.status_code}: {r.text[:200]}"):
        return

    def scored():
        return next((s for s in phoenix.spans(PROJECT) if s["name"] == "evaluation helpful" and s.get("parent_id") == root["context"]["span_id"]), None)

    try:
        span = wait_until("the score's span in Phoenix", scored, timeout, interval=0.5)
    except SetupError as e:
        report.check(f"{p} score: evaluation span under the request span", False, str(e))
        return
    a = span["attributes"]
    ok = span.get("span_kind") == "EVALUATOR" and a.get("gen_ai.evaluation.score.value") == 0.75 and a.get("gen_ai.evaluation.name") == "helpful"
    report.check(f"{p} score: evaluation span under the request span (EVALUATOR, value 0.75)", ok, json.dumps(span)[:400] if not ok else span["name"])


def find_roots(spans: list[dict], sent) -> list[dict | None]:
    roots = [s for s in spans if not s.get("parent_id")]
    out = []
    for _, _, prompt, _ in sent:
        out.append(next((s for s in roots if prompt in str(s["attributes"].get("input.value", ""))), None))
    return out


def children_of(spans: list[dict], root: dict) -> list[dict]:
    sid, tid = root["context"]["span_id"], root["context"]["trace_id"]
    return [s for s in spans if s.get("parent_id") == sid and s["context"]["trace_id"] == tid]


def check_request_span(p, label, prompt, attempts, root, spans, reported, report: Report, session: str, user: str) -> None:
    a = root["attributes"]
    model = a.get("llm.model_name")
    problems = []

    def expect(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    # The request span is named after the model the client asked for (the route); llm.model_name is the model
    # that answered (the engine's).
    expect(root["name"] == f"chat {ROUTE}", f"span name {root['name']!r}, want 'chat {ROUTE}'")
    expect(model == UPSTREAM_MODEL, f"llm.model_name = {model!r}, want {UPSTREAM_MODEL!r} (the model served)")
    kind = root.get("span_kind") or a.get("openinference.span.kind")
    expect(kind == "LLM", f"openinference.span.kind = {kind!r}, want 'LLM'")
    expect(a.get("llm.token_count.prompt") == reported["prompt_tokens"], f"llm.token_count.prompt = {a.get('llm.token_count.prompt')!r}, upstream reported {reported['prompt_tokens']}")
    expect(a.get("llm.token_count.completion") == reported["completion_tokens"], f"llm.token_count.completion = {a.get('llm.token_count.completion')!r}, upstream reported {reported['completion_tokens']}")
    expect(prompt in str(a.get("input.value", "")), f"input.value {str(a.get('input.value'))[:120]!r} lacks the prompt")
    expect(reported["answer"] in str(a.get("output.value", "")), f"output.value {str(a.get('output.value'))[:120]!r} lacks the answer {reported['answer']!r}")
    expect(a.get("gen_ai.operation.name") == "chat", f"gen_ai.operation.name = {a.get('gen_ai.operation.name')!r}")
    expect(a.get("llmops.route") == ROUTE, f"llmops.route = {a.get('llmops.route')!r}, want {ROUTE!r}")
    expect(root.get("status_code") != "ERROR", f"status {root.get('status_code')} {root.get('status_message')}")
    # Span ids derive from the daemon's trace id (a UUID), so that a batch sent twice deduplicates.
    trace_uuid = str(a.get("llmops.trace_id", "")).replace("-", "")
    expect(trace_uuid == root["context"]["trace_id"], f"trace id {root['context']['trace_id']} is not llmops.trace_id {a.get('llmops.trace_id')!r}")
    report.check(f"{p} {label}: request span attributes", not problems, "; ".join(problems) if problems else f"{root['name']}, tokens {reported['prompt_tokens']}/{reported['completion_tokens']}")

    children = children_of(spans, root)
    detail = f"{len(children)} attempt span(s) under {root['context']['span_id']}"
    ok = len(children) == attempts
    if ok and attempts > 1:
        statuses = sorted(c.get("status_code") for c in children)
        ok = statuses.count("ERROR") == attempts - 1
        detail += f", statuses {statuses}"
    report.check(f"{p} {label}: {attempts} attempt span(s) with the request span as parent", ok, detail)
    # Attempts are CHAIN steps without token counts: Phoenix sums llm.token_count.* over a span's descendants,
    # and as LLM spans each request would count twice in its LLM views.
    problems = []
    for c in children:
        ca = c["attributes"]
        expect(c["name"] == f"chat {UPSTREAM_MODEL}", f"attempt span name {c['name']!r}, want 'chat {UPSTREAM_MODEL}'")
        expect(c.get("span_kind") == "CHAIN", f"attempt span kind {c.get('span_kind')!r}, want 'CHAIN'")
        expect(not any(k.startswith("llm.token_count.") for k in ca), f"attempt span has token counts {sorted(k for k in ca if k.startswith('llm.token_count.'))}")
    if children:
        report.check(f"{p} {label}: attempt spans are CHAIN, named 'chat {UPSTREAM_MODEL}', without token counts", not problems, "; ".join(problems))

    if label == "tagged":
        problems = []
        expect(a.get("session.id") == session, f"session.id = {a.get('session.id')!r}, want {session!r}")
        expect(a.get("user.id") == user, f"user.id = {a.get('user.id')!r}, want {user!r}")

        def holds(value: str) -> list[str]:
            # Phoenix flattens the `metadata` JSON (metadata.NAME); `tag.tags` holds "NAME:VALUE" strings.
            return [k for k, v in a.items() if v == value or (isinstance(v, list) and any(str(x).endswith(f":{value}") for x in v))]

        team, env = holds("e2e-team"), holds("ci")
        expect(bool(team), "tag team=e2e-team (metadata) in no attribute")
        expect(bool(env), "tag env=ci (x-llmops-tag-env header) in no attribute")
        report.check(f"{p} tagged: session.id, user.id and tags exported", not problems, "; ".join(problems) if problems else f"tags in {sorted(set(team + env))}")


# --------------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, help="llmopsd binary (default: target/release/llmopsd)")
    ap.add_argument("--protocol", choices=["http", "grpc", "both"], default="both")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for spans to reach Phoenix (default 60)")
    ap.add_argument("--phoenix-timeout", type=float, default=180.0, help="seconds to wait for Phoenix to start (default 180)")
    ap.add_argument("--phoenix-only", action="store_true", help="only start Phoenix and check it with hand-built spans")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs, Phoenix DB)")
    args = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    binary = (args.bin or root / "target" / "release" / "llmopsd").resolve()
    if not args.phoenix_only and not os.access(binary, os.X_OK):
        print(f"phoenix-check: {binary} not found; build it with scripts/run.sh or `cargo build --release --workspace --bins`", file=sys.stderr)
        return 2

    # SIGTERM/SIGHUP end the run like Ctrl-C does: through the finally below, which stops everything.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = Path(tempfile.mkdtemp(prefix="llmops-phoenix-"))
    report = Report()
    phoenix = upstream = None
    try:
        log(f"starting Phoenix (working dir {tmp / 'phoenix'})")
        phoenix = Phoenix(tmp / "phoenix", args.phoenix_timeout)
        log(f"Phoenix {phoenix.version} ready in {phoenix.start_secs:.1f} s: http {phoenix.base}, OTLP gRPC 127.0.0.1:{phoenix.grpc_port}")
        grpc_ok = self_test(phoenix, report, args.timeout, grpc_wanted=args.protocol in ("grpc", "both"))
        if not args.phoenix_only:
            upstream = FakeUpstream()
            log(f"fake upstream at {upstream.base_url}; llmopsd {binary}")
            protocols = ["http", "grpc"] if args.protocol == "both" else [args.protocol]
            for protocol in protocols:
                if protocol == "grpc" and not grpc_ok:
                    report.check("[grpc] skipped: Phoenix did not accept OTLP gRPC", False)
                    continue
                run_protocol(protocol, binary, tmp, upstream, phoenix, report, args.timeout)
    except SetupError as e:
        print(f"phoenix-check: setup failed: {e}", file=sys.stderr)
        return 2
    except requests.RequestException as e:  # Phoenix stopped answering
        print(f"phoenix-check: Phoenix API call failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phoenix-check: interrupted", file=sys.stderr)
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut the cleanup short
            signal.signal(signum, signal.SIG_IGN)
        if upstream:
            upstream.stop()
        for proc in list(reversed(RUNNING)):  # llmopsd, then Phoenix, even when their start was interrupted
            proc.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    failed = report.failed()
    print(f"phoenix-check: {len(report.results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
