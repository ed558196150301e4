"""`llmopsctl eval run --junit` read by junitparser, the way a CI system reads test results: a run that fails
on quality exits 100 and its JUnit file fails the same items and thresholds the printed verdict names; a run
that passes exits 0 with a file without failures. The candidates are the conftest's fake upstream, which echoes
the question, so which items pass is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

from junitparser import Error, Failure, JUnitXml

MODEL = "fake-model"  # the model the conftest's [engines.fake] serves


def write_dataset(daemon, tmp_path: Path, name: str) -> None:
    items = [
        {"messages": [{"role": "user", "content": "Name a colour: blue"}], "reference": "blue"},
        {"messages": [{"role": "user", "content": "Name a fruit: <pear> & 'plum'"}], "reference": "plum"},
        # The echo does not contain the reference: this item fails `contains`.
        {"messages": [{"role": "user", "content": "Name a metal"}], "reference": "iron"},
    ]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    daemon.llmopsctl("dataset", "import", name, "--file", str(path))
    evaluators = tmp_path / "evaluators.json"
    evaluators.write_text(json.dumps([{"type": "contains"}, {"type": "regex", "pattern": "^echo: "}]))
    daemon.llmopsctl("dataset", "create", name, "--route", MODEL, "--evaluators", str(evaluators), "--update")


def test_a_failed_run_exits_100_and_its_junit_fails_the_same_items(daemon, tmp_path: Path) -> None:
    write_dataset(daemon, tmp_path, "junit-qa")
    junit = tmp_path / "junit.xml"
    done = daemon.run_llmopsctl("eval", "run", "junit-qa", "--junit", str(junit))
    assert done.returncode == 100, f"{done.stdout}\n{done.stderr}"
    printed = json.loads(done.stdout)
    assert printed["run"]["status"] == "FAILED"
    assert printed["run"]["verdict"].startswith("FAIL: contains 2/3 passed")

    xml = JUnitXml.fromfile(str(junit))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert suite.name == f"junit-qa {printed['run']['id']}"
    # Three items, one case per evaluator's threshold.
    assert (suite.tests, suite.failures, suite.errors) == (5, 2, 0)
    cases = {case.name: case for case in suite}
    assert set(cases) == {"item 1", "item 2", "item 3", "threshold contains", "threshold regex"}
    failed = {name for name, case in cases.items() if any(isinstance(r, Failure) for r in case.result)}
    assert failed == {"item 3", "threshold contains"}
    item_failure = next(r for r in cases["item 3"].result if isinstance(r, Failure))
    assert "contains" in item_failure.message and "iron" in item_failure.message
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["route"] == MODEL
    assert properties["verdict"] == printed["run"]["verdict"]


def test_a_passing_run_exits_0_with_a_clean_junit_and_a_dead_dataset_exits_1(daemon, tmp_path: Path) -> None:
    write_dataset(daemon, tmp_path, "junit-ok")
    junit = tmp_path / "junit.xml"
    done = daemon.run_llmopsctl("eval", "run", "junit-ok", "--limit", "2", "--junit", str(junit))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    suite = next(iter(JUnitXml.fromfile(str(junit))))
    assert (suite.tests, suite.failures, suite.errors) == (4, 0, 0)
    assert all(not any(isinstance(r, (Failure, Error)) for r in case.result) for case in suite)
    missing = daemon.run_llmopsctl("eval", "run", "no-such-dataset", "--junit", str(tmp_path / "none.xml"))
    assert missing.returncode == 1
    assert "no dataset named `no-such-dataset`" in missing.stderr
    assert not (tmp_path / "none.xml").exists(), "nothing ran, so no results file"
