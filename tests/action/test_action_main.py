"""``python -m action`` end to end: runner files in tmp, a real git repository, a fake session, the real compare."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from action.__main__ import main
from action.summary import MARKER

from .conftest import REPO_ROOT, FakeGitHub, Runner, action_commands, artifact, bench, commit, load

MakeRepo = Callable[[list[dict[str, str]]], tuple[Path, list[str]]]


def pr_event(base_sha: str, *, fork: bool = False) -> dict[str, object]:
    event = load("event-pull-request-fork.json" if fork else "event-pull-request.json")
    event["pull_request"]["base"]["sha"] = base_sha
    return event


@pytest.fixture
def ab_repo(make_repo: MakeRepo, runner: Runner) -> Callable[..., Path]:
    """A repository whose head commit runs the benchmark with ``head`` settings, set up as a PR job."""

    def make(*, fork: bool = False, **head: object) -> Path:
        repo, (base_sha, _) = make_repo([{"bench.json": bench(), "README": "v1"},
                                         {"bench.json": bench(**head), "README": "v2"}])
        runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
        runner.set_event(pr_event(base_sha, fork=fork))
        runner.inputs(repeat="3", comment="false", artifact_name="pytest-mlperf-cpu")
        return repo

    return make


def test_ab_regression_fails_with_verdict_outputs_summary_and_annotations(
    ab_repo: Callable[..., Path], runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    repo = ab_repo(latency_ms=1.5, qps=1300.0)
    assert main(["run", *action_commands()]) == 1
    out = runner.outputs()
    assert out["verdict"] == "regression"
    assert (out["regressions"], out["improvements"]) == ("3", "0")
    results_dir = repo / "mlperf-results"
    assert out["results-dir"] == str(results_dir)
    assert out["results"] == str(results_dir / "results.json")
    comparison = json.loads(Path(out["comparison"]).read_text())
    assert sorted((c["id"].rsplit("::")[-1], c["metric"], c["verdict"]) for c in comparison["cases"]) == [
        ("test_fake[Offline]", "p90_latency", "regression"),
        ("test_fake[Offline]", "qps", "regression"),
        ("test_fake[SingleStream]", "p90_latency", "regression"),
    ]
    summary = runner.summary_text()
    assert summary == Path(out["summary"]).read_text()
    assert summary.startswith("## pytest-mlperf on `pytest-mlperf-cpu`: 🔴 Regression\n")
    assert "3 rounds" in summary and "```mermaid" in summary
    meta = json.loads((results_dir / "report-meta.json").read_text())
    assert meta["pull_request"] == {"number": 17, "head_sha": "2" * 40}
    assert meta["label"] == "pytest-mlperf-cpu"
    logged = capfd.readouterr().out
    assert "::error title=Regression%3A test_fake[SingleStream] p90_latency::p90 latency +" in logged
    assert logged.count("::group::pytest-mlperf ab: round") == 6


def test_ab_auto_stops_at_three_rounds_on_a_clear_regression(
    ab_repo: Callable[..., Path], runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    repo = ab_repo(latency_ms=2.0, qps=1000.0)
    runner.inputs(repeat="auto", comment="false")
    assert main(["run", *action_commands()]) == 1
    out = runner.outputs()
    assert out["verdict"] == "regression"
    comparison = json.loads(Path(out["comparison"]).read_text())
    assert comparison["sequential"] == {"round": 3, "min_rounds": 3, "max_rounds": 10,
                                        "level": pytest.approx(0.00416, abs=1e-5), "decided": True}
    assert "3 rounds" in runner.summary_text()
    assert json.loads((repo / "mlperf-results" / "report-meta.json").read_text())["rounds"] == 3
    logged = capfd.readouterr().out
    assert logged.count("::group::pytest-mlperf ab: round") == 6
    assert logged.count("--round 3") == 2  # the look that stopped the rounds, and the final comparison


def test_ab_pins_the_load_when_the_plugin_can_and_warns_when_it_cannot(
    ab_repo: Callable[..., Path], runner: Runner, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "sessions.jsonl"
    runner.monkeypatch.setenv("FAKE_SESSION_LOG", str(log))
    repo = ab_repo()
    runner.inputs(repeat="1")
    assert main(["run", *action_commands()]) == 0
    argvs = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    loads = repo / "mlperf-results" / "ab" / "loads.json"
    assert [a[0] for a in argvs] == ["suites", f"--mlperf-reuse-load={loads}"]
    assert "::warning" not in capfd.readouterr().out

    # A plugin without the option: no flag, and a warning while Server may run (no `scenarios` means all four).
    runner.monkeypatch.setenv("FAKE_SESSION_NO_REUSE_LOAD", "1")
    log.unlink()
    assert main(["run", *action_commands()]) == 0
    assert not any("--mlperf-reuse-load" in a for line in log.read_text().splitlines()
                   for a in json.loads(line)["argv"])
    assert ("::warning title=pytest-mlperf load::The installed pytest-mlperf has no --mlperf-reuse-load, so each "
            "session calibrates its own Server load") in capfd.readouterr().out
    runner.inputs(scenarios="SingleStream,Offline")
    assert main(["run", *action_commands()]) == 0
    assert "::warning" not in capfd.readouterr().out


def test_ab_identical_code_passes(ab_repo: Callable[..., Path], runner: Runner) -> None:
    ab_repo()
    assert main(["run", *action_commands()]) == 0
    out = runner.outputs()
    assert (out["verdict"], out["regressions"]) == ("no-change", "0")
    assert "✅ No significant change" in runner.summary_text()


def test_regression_reported_but_green_when_fail_on_regression_is_false(
    ab_repo: Callable[..., Path], runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    ab_repo(latency_ms=2.0, qps=1000.0)
    runner.inputs(fail_on_regression="false", repeat="2")
    assert main(["run", *action_commands()]) == 0
    assert runner.outputs()["verdict"] == "regression"
    assert "`fail-on-regression` is false, so the check stays green" in capfd.readouterr().out


def test_head_missing_its_thresholds_fails_even_without_regression(
    ab_repo: Callable[..., Path], runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    ab_repo(fail=True, exit=1)
    runner.inputs(repeat="2")
    assert main(["run", *action_commands()]) == 1
    assert runner.outputs()["verdict"] == "no-change"
    assert "❌ 4 runs missed their thresholds" in runner.summary_text()
    assert "pytest exited with 1 on the head" in capfd.readouterr().out


def test_compare_none_then_baseline_file(make_repo: MakeRepo, runner: Runner, tmp_path: Path) -> None:
    repo, _ = make_repo([{"bench.json": bench()}])
    runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
    log = tmp_path / "sessions.jsonl"
    runner.monkeypatch.setenv("FAKE_SESSION_LOG", str(log))
    runner.inputs(compare="none", repeat="2")
    assert main(["run", *action_commands()]) == 0
    out = runner.outputs()
    assert (out["verdict"], out["comparison"]) == ("not-compared", "")
    assert "ℹ️ Not compared" in runner.summary_text()  # noqa: RUF001
    shutil.copyfile(out["results"], repo / "baseline.json")

    commit(repo, {"bench.json": bench(qps=1000.0, latency_ms=2.0)}, "slower")
    runner.output.unlink()
    runner.inputs(compare="baseline-file", baseline_file="baseline.json", repeat="3")
    assert main(["run", *action_commands()]) == 1
    assert runner.outputs()["verdict"] == "regression"
    head = json.loads((repo / "mlperf-results" / "results.json").read_text())
    # baseline-file mode repeats inside one session (--mlperf-repeat), the fake session honours it.
    assert sorted({r["repeat"] for r in head["runs"]}) == [0, 1, 2]
    # Only the session with a baseline runs under the baseline's loads.
    first_args = [json.loads(line)["argv"][0] for line in log.read_text().splitlines()]
    assert first_args == ["suites", f"--mlperf-reuse-load={repo / 'baseline.json'}"]


def test_missing_baseline_file_warns_and_compares_nothing(
    make_repo: MakeRepo, runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    repo, _ = make_repo([{"bench.json": bench()}])
    runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
    runner.inputs(compare="baseline-file", baseline_file="nowhere.json")
    assert main(["run", *action_commands()]) == 0
    assert runner.outputs()["verdict"] == "not-compared"
    assert "::warning::input `baseline-file`: " in capfd.readouterr().out


def test_bad_input_exits_2_with_an_annotation(runner: Runner, capfd: pytest.CaptureFixture[str]) -> None:
    runner.inputs(mode="fast")
    assert main([*action_commands()]) == 2
    assert ("::error title=pytest-mlperf%3A bad input::input `mode`: 'fast' is not one of performance, accuracy, "
            "both") in capfd.readouterr().out


def test_ab_without_a_pull_request_needs_base_ref(make_repo: MakeRepo, runner: Runner) -> None:
    repo, _ = make_repo([{"bench.json": bench()}])
    runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
    assert main(["run", *action_commands()]) == 2


def test_no_results_is_an_error_with_the_hint(
    make_repo: MakeRepo, runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    repo, _ = make_repo([{"bench.json": bench(write=False, exit=5)}])
    runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
    runner.inputs(compare="none")
    assert main(["run", *action_commands()]) == 1
    assert runner.outputs()["verdict"] == "error"
    assert "no test was collected; check the `suites` path and the `keyword` expression" in capfd.readouterr().out
    assert runner.summary_text().startswith("## ❌ pytest-mlperf could not finish")


def test_read_only_token_in_a_fork_pr_keeps_the_check_green(
    ab_repo: Callable[..., Path], runner: Runner, fake_github: FakeGitHub, capfd: pytest.CaptureFixture[str]
) -> None:
    ab_repo(fork=True)
    fake_github.read_only = True
    runner.monkeypatch.setenv("GITHUB_API_URL", fake_github.url)
    runner.inputs(comment="true", github_token="test-token", repeat="2")
    assert main(["run", *action_commands()]) == 0
    assert fake_github.comments == []
    logged = capfd.readouterr().out
    assert "::notice title=pytest-mlperf comment::No PR comment from this job: its token is read-only " in logged
    assert "(a pull request from a fork). The comment will come from the workflow_run reporter job" in logged


def test_run_mode_comments_when_the_token_may(
    ab_repo: Callable[..., Path], runner: Runner, fake_github: FakeGitHub
) -> None:
    ab_repo()
    runner.monkeypatch.setenv("GITHUB_API_URL", fake_github.url)
    runner.inputs(comment="true", github_token="test-token", repeat="2")
    assert main(["run", *action_commands()]) == 0
    assert len(fake_github.comments) == 1
    assert fake_github.comments[0]["body"].startswith(MARKER + "\n## pytest-mlperf on `pytest-mlperf-cpu`: ✅")


def test_reporter_upserts_one_comment_with_a_section_per_runner(
    reporter: Path, runner: Runner, fake_github: FakeGitHub
) -> None:
    artifact(reporter, "pytest-mlperf-cpu-epyc", comparison="comparison-no-change.json")
    artifact(reporter, "pytest-mlperf-gpu-h100")
    assert main(["report"]) == 0
    assert main(["report"]) == 0
    assert len(fake_github.comments) == 1
    body = fake_github.comments[0]["body"]
    assert body.startswith(MARKER + "\n## 🔴 Regression — pytest-mlperf on 2 runners")
    assert "### pytest-mlperf on `pytest-mlperf-cpu-epyc`: ✅ No significant change" in body
    # The link comes from the event, never from the artifact.
    assert "https://github.com/acme/vision/actions/runs/987654321" in body
    assert runner.summary_text().count(MARKER) == 2


def test_reporter_skips_a_pr_that_moved_on(
    reporter: Path, fake_github: FakeGitHub, capfd: pytest.CaptureFixture[str]
) -> None:
    artifact(reporter, "pytest-mlperf")
    fake_github.pulls[17] = "9" * 40
    assert main(["report"]) == 0
    assert fake_github.comments == []
    assert "PR #17 is now at 9999999999, not at 2222222222 which the benchmark measured" in capfd.readouterr().out


def test_reporter_refuses_an_artifact_naming_another_pr(
    reporter: Path, runner: Runner, fake_github: FakeGitHub, capfd: pytest.CaptureFixture[str]
) -> None:
    event = load("event-workflow-run.json")
    event["workflow_run"]["pull_requests"] = [{"number": 18}]
    runner.set_event(event, name="workflow_run")
    artifact(reporter, "pytest-mlperf")
    assert main(["report"]) == 1
    assert fake_github.comments == []
    assert "The artifact names PR #17, but the benchmark run belongs to PR #18" in capfd.readouterr().out


def test_reporter_without_artifacts_is_a_notice(reporter: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 0
    assert "::notice title=pytest-mlperf report::No pytest-mlperf artifact under" in capfd.readouterr().out


def test_reporter_with_a_read_only_token_fails_and_says_which_permission(
    reporter: Path, fake_github: FakeGitHub, capfd: pytest.CaptureFixture[str]
) -> None:
    artifact(reporter, "pytest-mlperf")
    fake_github.read_only = True
    assert main(["report"]) == 1
    assert "Give the reporter job `permissions: pull-requests: write`." in capfd.readouterr().out


def test_module_entry_point_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "action", "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0
    assert "{setup,run,report}" in proc.stdout


def test_run_mode_refuses_pull_request_target(
    ab_repo: Callable[..., Path], runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    repo = ab_repo()
    runner.set_event(json.loads(runner.event.read_text()), name="pull_request_target")
    assert main(["run", *action_commands()]) == 2
    assert "refusing to benchmark under `pull_request_target`" in capfd.readouterr().out
    assert not (repo / "mlperf-results").exists()
