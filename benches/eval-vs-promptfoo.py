#!/usr/bin/env python3
"""An evaluation run on llmopsd against the same evaluation in promptfoo, on the embedded model.

One llmopsd (the release build, the default SmolLM2 model) serves every request. The same 200 items (sums
to compute, each with its answer as the reference) are evaluated with the same deterministic assertions
(the answer contains the reference; latency under 30 s), the same request parameters (temperature 0,
max_tokens 16) and the same concurrency (4), by:

  * `llmopsctl eval run` (the daemon's runner, in process with the gateway), and
  * `promptfoo eval` (npm `promptfoo`, pointed at llmopsd's OpenAI endpoint as an `openai:chat` provider).

Rounds alternate the order (llmops, promptfoo, promptfoo, llmops, ...) so warm-up and machine drift fall on
both. Then one more llmopsd run with an LLM judge added (the embedded model judging every answer) gives the
judge's tokens and cost in time. Prints wall times, items/s, the ratio, and the pass counts (the two tools
must agree on which items pass, since both see the same answers at temperature 0).

    scripts/setup.sh && cargo build --release --workspace --bins
    .venv/bin/python benches/eval-vs-promptfoo.py [--items 200] [--rounds 2] [--no-judge]

promptfoo is installed on first use with npm into target/promptfoo (needs Node 20 or later).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("LLMOPS_BIN_DIR", ROOT / "target" / "release"))
PROMPTFOO_DIR = ROOT / "target" / "promptfoo"
ROUTE = "smollm2-135m-instruct"
CONCURRENCY = 4
MAX_TOKENS = 16
LATENCY_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def promptfoo() -> Path:
    exe = PROMPTFOO_DIR / "node_modules" / ".bin" / "promptfoo"
    if not exe.exists():
        print("installing promptfoo with npm into target/promptfoo ...", file=sys.stderr)
        PROMPTFOO_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PROMPTFOO_DIR), "promptfoo"],
            check=True,
            timeout=1800,
        )
    return exe


def items(count: int) -> list[dict]:
    rng = random.Random(7)
    out = []
    for _ in range(count):
        a, b = rng.randint(2, 49), rng.randint(2, 49)
        question = f"What is {a} + {b}? Reply with the number only."
        out.append({"question": question, "reference": str(a + b)})
    return out


class Daemon:
    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.socket = data_dir / "llmopsd.sock"
        self.log = open(data_dir / "llmopsd.log", "w")
        self.process = subprocess.Popen(
            [str(BIN / "llmopsd"), "--data-dir", str(data_dir), "--http-listen", f"127.0.0.1:{self.port}",
             "--grpc-listen", f"unix:{self.socket}"],
            stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                sys.exit(f"llmopsd exited; see {data_dir / 'llmopsd.log'}")
            time.sleep(0.2)
        sys.exit("llmopsd did not become ready in 180 s")

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "llmopsctl"), "--connect", f"unix:{self.socket}", *args],
                              capture_output=True, text=True, timeout=3600)
        if check and done.returncode not in (0, 100):
            sys.exit(f"llmopsctl {' '.join(args)} exited {done.returncode}:\n{done.stderr}\n{done.stdout}")
        return done

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def run_llmops(daemon: Daemon, evaluators: Path) -> dict:
    started = time.monotonic()
    done = daemon.ctl("--json", "eval", "run", "bench", "--route", ROUTE, "--evaluators", str(evaluators),
                      "--concurrency", str(CONCURRENCY), "--set", "temperature=0", "--set", f"max_tokens={MAX_TOKENS}")
    wall = time.monotonic() - started
    result = json.loads(done.stdout)
    passed = {i["item_id"] for i in result["items"] if i["passed"]}
    return {"wall_s": wall, "run": result["run"], "passed": passed}


def run_promptfoo(exe: Path, config: Path, out: Path) -> dict:
    env = dict(os.environ, PROMPTFOO_DISABLE_TELEMETRY="1", PROMPTFOO_DISABLE_UPDATE="1",
               PROMPTFOO_DISABLE_SHARING="1", PROMPTFOO_CACHE_ENABLED="false", OPENAI_API_KEY="unused",
               PROMPTFOO_CONFIG_DIR=str(out.parent / "promptfoo-home"))
    started = time.monotonic()
    done = subprocess.run([str(exe), "eval", "-c", str(config), "--no-cache", "--no-progress-bar",
                           "--max-concurrency", str(CONCURRENCY), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=3600)
    wall = time.monotonic() - started
    if not out.exists():
        sys.exit(f"promptfoo wrote no results (exit {done.returncode}):\n{done.stderr[-3000:]}\n{done.stdout[-2000:]}")
    results = json.loads(out.read_text())["results"]["results"]
    passed = {str(r["testIdx"] + 1) for r in results if r.get("success")}
    errors = [r for r in results if r.get("error") and not r.get("success")]
    return {"wall_s": wall, "passed": passed, "count": len(results), "errors": len(errors), "exit": done.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="each round runs both tools once")
    parser.add_argument("--no-judge", action="store_true", help="skip the run with the LLM judge")
    args = parser.parse_args()
    exe = promptfoo()
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="llmops-eval-bench."))
    dataset = items(args.items)
    jsonl = work / "items.jsonl"
    jsonl.write_text("".join(json.dumps({"messages": [{"role": "user", "content": i["question"]}],
                                         "reference": i["reference"]}) + "\n" for i in dataset))
    evaluators = work / "evaluators.json"
    evaluators.write_text(json.dumps([{"type": "contains"}, {"type": "max_latency_ms", "value": LATENCY_MS}]))
    judged = work / "judged.json"
    judged.write_text(json.dumps([{"type": "contains"}, {"type": "max_latency_ms", "value": LATENCY_MS},
                                  {"type": "judge", "rubric": "Is the answer the correct sum?", "threshold": 0}]))

    daemon = Daemon(work)
    try:
        config = work / "promptfooconfig.json"
        config.write_text(json.dumps({
            "description": "llmops eval bench",
            "prompts": ["{{question}}"],
            "providers": [{"id": f"openai:chat:{ROUTE}", "config": {
                "apiBaseUrl": f"http://127.0.0.1:{daemon.port}/v1", "apiKey": "unused",
                "temperature": 0, "max_tokens": MAX_TOKENS}}],
            "tests": [{"vars": {"question": i["question"]},
                       "assert": [{"type": "contains", "value": i["reference"]},
                                  {"type": "latency", "threshold": LATENCY_MS}]} for i in dataset],
        }))
        daemon.ctl("dataset", "import", "bench", "--file", str(jsonl))
        llmops, pf = [], []
        for round_ in range(args.rounds):
            order = ["llmops", "promptfoo"] if round_ % 2 == 0 else ["promptfoo", "llmops"]
            for tool in order:
                if tool == "llmops":
                    llmops.append(run_llmops(daemon, evaluators))
                    print(f"round {round_ + 1} llmopsd:  {llmops[-1]['wall_s']:.1f} s", file=sys.stderr)
                else:
                    pf.append(run_promptfoo(exe, config, work / f"promptfoo-{round_}.json"))
                    print(f"round {round_ + 1} promptfoo: {pf[-1]['wall_s']:.1f} s", file=sys.stderr)
        judge = None if args.no_judge else run_llmops(daemon, judged)
    finally:
        daemon.stop()

    n = args.items
    l_wall = statistics.median(r["wall_s"] for r in llmops)
    p_wall = statistics.median(r["wall_s"] for r in pf)
    print(f"dataset: {n} items (sums), route {ROUTE} (embedded SmolLM2-135M, CPU), temperature 0, "
          f"max_tokens {MAX_TOKENS}, concurrency {CONCURRENCY}, {args.rounds} rounds (alternating order)")
    print(f"promptfoo {version}; llmopsd {BIN / 'llmopsd'}")
    print(f"{'tool':<26}{'wall s (median)':>16}{'items/s':>10}{'passed':>8}")
    print(f"{'llmopsctl eval run':<26}{l_wall:>16.1f}{n / l_wall:>10.2f}{len(llmops[0]['passed']):>8}")
    print(f"{'promptfoo eval':<26}{p_wall:>16.1f}{n / p_wall:>10.2f}{len(pf[0]['passed']):>8}")
    print(f"wall time ratio promptfoo / llmopsd: {p_wall / l_wall:.2f}")
    same = all(r["passed"] == llmops[0]["passed"] for r in llmops + pf)
    print(f"both tools pass the same items in every round: {same}")
    if judge:
        run = judge["run"]
        print(f"with the LLM judge (embedded model judging every answer): {judge['wall_s']:.1f} s, "
              f"{n / judge['wall_s']:.2f} items/s, judge tokens {run['judge_input_tokens']} in / "
              f"{run['judge_output_tokens']} out ({(run['judge_input_tokens'] + run['judge_output_tokens']) / n:.0f} per item)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
