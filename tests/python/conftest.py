"""Fixtures that start the real binaries: the fake OpenAI-compatible upstream and llmopsd, plus llmopsctl.

Binaries come from $LLMOPS_BIN_DIR, else <repo>/target/release (build them with `cargo build --release --workspace --bins`).
Nothing is skipped: a missing binary fails the test with the command that builds it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("LLMOPS_BIN_DIR") or REPO_ROOT / "target" / "release")

MODEL = "fake-model"
ENGINE = "fake"

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_GRACE_S = 15.0
TRACE_TIMEOUT_S = 10.0
LLMOPSCTL_TIMEOUT_S = 30.0

FAKE_READY = re.compile(r"fake-upstream listening on (http://127\.0\.0\.1:\d+/v1)")
DAEMON_READY = re.compile(r"llmopsd listening http=(\S+) grpc=(unix:\S+)")

# Everything here talks to 127.0.0.1; never let a proxy from the environment get in the way.
_NO_PROXY = "127.0.0.1,localhost"
_URLLIB = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"binary {path} not found: build it with `cargo build --workspace --bins` "
            f"(or point LLMOPS_BIN_DIR at the directory holding {name})",
            pytrace=False,
        )
    return path


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = env["no_proxy"] = _NO_PROXY
    env.setdefault("RUST_BACKTRACE", "1")
    return env


class StartupError(Exception):
    """A child process exited or stayed silent instead of announcing that it is ready."""


_STARTUP_FAILURES = pytest.StashKey[dict]()


def start_once(request: pytest.FixtureRequest, name: str, start: Callable[[], Any]) -> Any:
    """Runs `start()` for a module-scoped fixture. pytest sets a failed fixture up again for every test; a start
    that failed once in this module fails each later test at once rather than waiting out the timeout again."""
    failures = request.node.stash.setdefault(_STARTUP_FAILURES, {})
    if name in failures:
        pytest.fail(f"{name} failed to start earlier in this module:\n{failures[name]}", pytrace=False)
    try:
        return start()
    except StartupError as error:
        failures[name] = str(error)
    pytest.fail(failures[name], pytrace=False)


def poll_until(check: Callable[[], Any], timeout: float, describe: Callable[[], str]) -> Any:
    """Calls `check` until it returns something truthy, at most `timeout` seconds; fails with `describe()`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s: {describe()}", pytrace=False)
        time.sleep(0.05)


class ManagedProcess:
    """A child process whose stdout is drained by a thread (so it never blocks on a full pipe) and whose
    stderr goes to a log file, shown in failure messages."""

    def __init__(self, name: str, argv: list[str], log_path: Path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.stdout_lines: list[str] = []
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=child_env(),
            text=True,
            bufsize=1,
        )
        self._drainer = threading.Thread(target=self._drain, name=f"{name}-stdout", daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\r\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)  # end of stdout

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(cannot read {self.log_path}: {error})"
        tail = "\n".join(text.splitlines()[-lines:])
        return tail or "(empty)"

    def _failure(self, what: str) -> str:
        return (
            f"{self.name} {what}\n"
            f"command: {' '.join(self.argv)}\n"
            f"stdout so far: {self.stdout_lines!r}\n"
            f"stderr tail ({self.log_path}):\n{self.log_tail()}"
        )

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise StartupError(self._failure(f"did not print a line matching {pattern.pattern!r} within {timeout:.0f}s"))
            try:
                line = self._lines.get(timeout=min(remaining, 0.25))
            except queue.Empty:
                continue
            if line is None:
                try:
                    code = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = "still running"
                self.stop()
                raise StartupError(self._failure(f"closed stdout (exit status: {code}) before printing a line matching {pattern.pattern!r}"))
            match = pattern.fullmatch(line)
            if match:
                return match

    def stop(self, grace: float = SHUTDOWN_GRACE_S) -> Optional[int]:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drainer.join(timeout=5)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def _http(method: str, url: str, body: Optional[dict] = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with _URLLIB.open(request, timeout=10) as response:
        payload = response.read()
        assert 200 <= response.status < 300, f"{method} {url} answered {response.status}: {payload!r}"
    return json.loads(payload) if payload.strip() else None


class FakeUpstream:
    def __init__(self, process: ManagedProcess, base_url: str):
        self.process = process
        self.base_url = base_url  # ends in /v1
        self.root = base_url[: -len("/v1")]

    def control(self, **settings: Any) -> None:
        """Changes the fake's behaviour, e.g. control(omit_usage=True); control() restores the defaults."""
        _http("PUT", f"{self.root}/control", settings)

    def stats(self) -> Any:
        return _http("GET", f"{self.root}/stats")


class Daemon:
    def __init__(self, process: ManagedProcess, http_addr: str, grpc_target: str, data_dir: Path):
        self.process = process
        self.http_base = f"http://{http_addr}"
        self.grpc_target = grpc_target  # "unix:/path/llmopsd.sock"
        self.socket_path = grpc_target[len("unix:"):]
        self.data_dir = data_dir

    def run_llmopsctl(self, *args: str) -> subprocess.CompletedProcess:
        argv = [str(binary("llmopsctl")), "--connect", self.grpc_target, "--json", *args]
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=child_env(), timeout=LLMOPSCTL_TIMEOUT_S
        )

    def llmopsctl(self, *args: str) -> Any:
        """Runs `llmopsctl --connect unix:<sock> --json ARGS`; asserts exit 0 and returns the parsed JSON."""
        done = self.run_llmopsctl(*args)
        assert done.returncode == 0, (
            f"llmopsctl {' '.join(args)} exited {done.returncode}\nstderr:\n{done.stderr}\nstdout:\n{done.stdout}"
        )
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as error:
            pytest.fail(f"llmopsctl {' '.join(args)} printed invalid JSON ({error}):\n{done.stdout}", pytrace=False)

    def wait_for_trace(self, trace_id: str, timeout: float = TRACE_TIMEOUT_S) -> dict:
        """Polls `llmopsctl traces --limit 50` until the finished trace `trace_id` is listed; returns its entry.
        Traces are written asynchronously, after the response."""
        assert trace_id, "no trace id (the x-request-id response header was empty or missing)"
        listed: list = []

        def find() -> Optional[dict]:
            nonlocal listed
            listed = self.llmopsctl("traces", "--limit", "50")
            assert isinstance(listed, list), f"`llmopsctl traces` should print a JSON array, got {listed!r}"
            for trace in listed:
                if trace.get("id") == trace_id and trace.get("status") != "in_flight":
                    return trace
            return None

        return poll_until(
            find,
            timeout,
            lambda: f"trace {trace_id} not listed by `llmopsctl traces`; ids listed: "
            f"{[t.get('id') for t in listed]}\nllmopsd log tail:\n{self.process.log_tail()}",
        )

    def trace(self, trace_id: str) -> dict:
        """The full trace (bodies, attempts, chunk offsets) from `llmopsctl trace <id>`."""
        trace = self.llmopsctl("trace", trace_id)
        assert isinstance(trace, dict), f"`llmopsctl trace` should print a JSON object, got {trace!r}"
        assert trace.get("id") == trace_id, f"`llmopsctl trace {trace_id}` returned another trace: {trace!r}"
        return trace


@pytest.fixture(scope="module")
def fake_upstream(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    def start() -> FakeUpstream:
        workdir = tmp_path_factory.mktemp("fake-upstream")
        process = ManagedProcess(
            "fake-upstream",
            [str(binary("fake-upstream")), "--listen", "127.0.0.1:0"],
            workdir / "fake-upstream.log",
        )
        base_url = process.wait_for_line(FAKE_READY, STARTUP_TIMEOUT_S).group(1)
        return FakeUpstream(process, base_url)

    upstream = start_once(request, "fake-upstream", start)
    try:
        yield upstream
    finally:
        upstream.process.stop()


def _short_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp data dir whose socket path fits the ~108-byte limit on Unix socket paths."""
    path = tmp_path_factory.mktemp("llmopsd")
    if len(str(path / "llmopsd.sock")) < 100:
        return path
    return Path(tempfile.mkdtemp(prefix="llmopsd-", dir="/tmp"))


def start_daemon(tmp_path_factory: pytest.TempPathFactory, config_text: Optional[str]) -> Daemon:
    """llmopsd on a free port with `config_text` as its config, or with no config file at all (None)."""
    data_dir = _short_dir(tmp_path_factory)
    config_args: list[str] = []
    if config_text is not None:
        config = data_dir / "llmopsd.toml"
        config.write_text(config_text)
        config_args = ["--config", str(config)]
    socket_path = data_dir / "llmopsd.sock"
    process = ManagedProcess(
        "llmopsd",
        [
            str(binary("llmopsd")),
            *config_args,
            "--data-dir", str(data_dir),
            "--http-listen", "127.0.0.1:0",
            "--grpc-listen", f"unix:{socket_path}",
            "--log-format", "json",
        ],
        data_dir / "llmopsd.log",
    )
    ready = process.wait_for_line(DAEMON_READY, STARTUP_TIMEOUT_S)
    http_addr, grpc_target = ready.group(1), ready.group(2)
    if grpc_target != f"unix:{socket_path}":
        process.stop()
        raise StartupError(f"llmopsd reports gRPC at {grpc_target}, but was asked for unix:{socket_path}")
    return Daemon(process, http_addr, grpc_target, data_dir)


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest, fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory):
    config = (
        f"[engines.{ENGINE}]\n"
        f'kind = "openai"\n'
        f"base_url = {json.dumps(fake_upstream.base_url)}\n"
        f"models = [{json.dumps(MODEL)}]\n"
    )
    started = start_once(request, "llmopsd", lambda: start_daemon(tmp_path_factory, config))
    try:
        yield started
    finally:
        started.process.stop()


@pytest.fixture(scope="module")
def llmopsctl(daemon: Daemon) -> Callable[..., Any]:
    """`llmopsctl("traces", "--limit", "5")` → the parsed JSON output (asserts exit status 0)."""
    return daemon.llmopsctl


def openai_client_for(daemon: Daemon):
    """The official OpenAI SDK pointed at the daemon. No retries: every call is exactly one request (and trace)."""
    import openai

    return openai.OpenAI(
        base_url=daemon.http_base + "/v1",
        api_key="unused",
        max_retries=0,
        timeout=30.0,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )


@pytest.fixture(scope="module")
def openai_client(daemon: Daemon):
    """The official OpenAI SDK pointed at the daemon (see `openai_client_for`)."""
    client = openai_client_for(daemon)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def embedded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(Daemon, OpenAI SDK client): llmopsd with no config, serving the default model in-process, once it has
    loaded. One daemon for the session, shared by test_embedded_{structured,tools,params}.py through
    embedded_support.py's `daemon` and `client` fixtures. It is defined here, once, because a fixture imported
    into several modules is a separate fixture in each, and would start a daemon per module."""
    from embedded_support import serve_embedded

    yield from serve_embedded(request, tmp_path_factory)
