"""``python -m action`` in ``ab`` mode with the real plugin, real LoadGen and the real ``pytest-mlperf compare``.

The project under test is a git repository made here: a tiny ONNX classifier built with onnx.helper (the same bytes
on both commits, so the fingerprints match) and a dataset whose postprocessing sleeps a fixed time per sample. A
sleep never ends early, so a busy machine can only add scheduling delay to a latency: +1.6 ms at the p90 of a 1 ms
sleep with busy loops on the two cores, up to +7 ms under `-n 2` as well (so no relative floor below 100 % tells
identical 1 ms code apart from a slowdown on such a machine). The slower head sleeps 100 ms instead of 10 ms, with
the floor at 50 %: with 2 runs a side, a 1 ms base spread by a third from run to run at load 10 and hid a 20 ms
head. Identical code sleeps 10 ms on both sides and is compared with the largest floor there is (99 %): it regresses
only if the head's p90 grows by 10 ms, and never improves (no sleep ends early).
Each pytest session calibrates and warms the backend before LoadGen measures (the plugin's smoke profile), and the
test warms the interpreter's caches with one unmeasured session first, so that the first base run does not pay a
cold start that the head never sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from action.__main__ import main

from .conftest import REPO_ROOT, Runner

MakeRepo = Callable[[list[dict[str, str]]], tuple[Path, list[str]]]

TINY_CONFTEST = REPO_ROOT / "tests" / "tiny_conftest.py"

SLOW_DATASET = """

#: Seconds slept per sample after inference; the head commit of a slower change raises it.
DELAY_S = {delay}


@pytest.fixture
def sleepy_dataset():
    return make_delayed_dataset(DELAY_S)
"""

BENCHMARK = """
def test_tiny(mlperf, mlperf_scenario, mlperf_mode, tiny_model, sleepy_dataset):
    mlperf.run(tiny_model, sleepy_dataset)
"""

#: Short LoadGen runs; no .pytest_cache written into the checkouts.
PYTEST_ARGS = "--mlperf-min-duration-ms=300 -p no:cacheprovider"


def project(delay: str) -> dict[str, str]:
    return {
        "pytest.ini": "[pytest]\n",
        "conftest.py": TINY_CONFTEST.read_text(encoding="utf-8") + SLOW_DATASET.format(delay=delay),
        "test_bench.py": BENCHMARK,
    }


@pytest.fixture
def real_ab(make_repo: MakeRepo, runner: Runner, tmp_path: Path) -> Callable[[str, str], Path]:
    """A two-commit repository (base ``DELAY_S``, head ``DELAY_S``) set up as a PR job in ``ab`` mode at ``floor``."""

    def make(base_delay: str, head_delay: str, floor: str = "0.5") -> Path:
        repo, (base_sha, _) = make_repo([project(base_delay), {**project(head_delay), "README": "head"}])
        event = json.loads((Path(__file__).with_name("data") / "event-pull-request.json").read_text())
        event["pull_request"]["base"]["sha"] = base_sha
        runner.set_event(event)
        runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
        runner.inputs(
            suites="test_bench.py", scenarios="SingleStream,Offline", mode="performance", compare="ab",
            base_ref=base_sha, repeat="2", floor=floor, comment="false", artifact_name="pytest-mlperf-tiny",
            cache_dir=str(tmp_path / "cache"), pytest_args=PYTEST_ARGS,
        )
        # Warm-up: one unmeasured session loads the shared libraries and compiles the bytecode the A/B runs use.
        warm = subprocess.run(
            [sys.executable, "-m", "pytest", "test_bench.py", "-q", "--mlperf-mode=performance",
             "--mlperf-scenarios=SingleStream", "--mlperf-min-duration-ms=50", "-p", "no:cacheprovider",
             f"--mlperf-results={tmp_path / 'warmup.json'}", f"--mlperf-log-dir={tmp_path / 'warmup-logs'}",
             f"--mlperf-cache-dir={tmp_path / 'cache'}"],
            cwd=repo, capture_output=True, text=True, check=False,
        )
        assert warm.returncode == 0, warm.stdout + warm.stderr
        return repo

    return make


def cases(comparison_path: str) -> dict[tuple[str, str], str]:
    comparison = json.loads(Path(comparison_path).read_text(encoding="utf-8"))
    return {(c["id"].rsplit("::", 1)[-1], c["metric"]): c["verdict"] for c in comparison["cases"]}


def test_slower_head_commit_fails_the_step_with_a_regression(
    real_ab: Callable[[str, str], Path], runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    repo = real_ab("0.010", "0.100")
    code = main(["run"])
    logged = capfd.readouterr().out
    assert code == 1, logged[-4000:]
    out = runner.outputs()
    assert out["verdict"] == "regression"
    verdicts = cases(out["comparison"])
    assert verdicts[("test_tiny[SingleStream-performance]", "p90_latency")] == "regression"
    assert int(out["regressions"]) >= 1 and out["improvements"] == "0"

    summary = runner.summary_text()
    assert summary == Path(out["summary"]).read_text(encoding="utf-8")
    assert summary.startswith("## pytest-mlperf on `pytest-mlperf-tiny`: 🔴 Regression\n")
    row = next(line for line in summary.splitlines() if "SingleStream" in line and "🔴 regression" in line)
    assert row.startswith("|") and "p90" in row and "+" in row
    assert "2 rounds" in summary
    # Real runs on both sides: each merged side holds one run per round and scenario.
    head = json.loads(Path(out["results"]).read_text(encoding="utf-8"))
    assert sorted((r["scenario"], r["repeat"]) for r in head["runs"]) == [
        ("Offline", 0), ("Offline", 1), ("SingleStream", 0), ("SingleStream", 1)]
    assert (repo / "mlperf-results" / "base.json").is_file()
    assert "::error title=Regression%3A test_tiny[SingleStream-performance] p90_latency::p90 latency +" in logged
    assert logged.count("::group::pytest-mlperf ab: round") == 4


def test_identical_commits_pass(real_ab: Callable[[str, str], Path], runner: Runner,
                                capfd: pytest.CaptureFixture[str]) -> None:
    real_ab("0.010", "0.010", floor="0.99")
    code = main(["run"])
    logged = capfd.readouterr().out
    assert code == 0, logged[-4000:]
    out = runner.outputs()
    assert (out["verdict"], out["regressions"]) == ("no-change", "0"), cases(out["comparison"])
    assert "✅ No significant change" in runner.summary_text()
    assert "::error" not in logged
