"""The workflow_run reporter against crafted artifacts and comments, through the fake GitHub API on 127.0.0.1.

An artifact is made by PR code, so every field in it is hostile; a marker comment can be posted by anyone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from action.__main__ import main
from action.summary import COMMENT_LIMIT, MARKER, Report, render_comment
from tests.markdown_check import live_constructs

from .conftest import REPO_ROOT, FakeGitHub, Runner, artifact, load

RUN_URL = "https://github.com/acme/vision/actions/runs/987654321"
EVIL = "<img src=https://evil.example/p.png>@octocat https://evil.example/x www.evil.example #1 [l](https://e.x)"


def hostile_artifact(root: Path, name: str, *, id_length: int = 0) -> Path:
    """An artifact whose label, case ids, messages, notes, reasons and fingerprint all carry HTML, links, mentions."""
    folder = artifact(root, name)
    meta = json.loads((folder / "report-meta.json").read_text())
    meta.update(label=f"{EVIL} {name}", notes=[EVIL, f"see https://user:s3cret@mirror.example/m {EVIL}"],
                base_sha=EVIL, head_sha=EVIL)
    (folder / "report-meta.json").write_text(json.dumps(meta))
    comparison = load("comparison-regression.json")
    for case in comparison["cases"]:
        case["id"] = f"t.py::test_x[{EVIL}{'y' * id_length}]"
        case["message"] = f"{EVIL} {case['message']}"
    comparison["fingerprint"]["differences"] = [EVIL]
    comparison["fingerprint"]["head"]["cpu"] = EVIL
    (folder / "comparison.json").write_text(json.dumps(comparison))
    head = load("results-head.json")
    for run in head["runs"]:
        run["id"] = f"t.py::test_x[{EVIL}]"
        run["reasons"] = [EVIL] * 3
        run["overrides"] = {EVIL: EVIL}
    head["status"] = EVIL
    (folder / "results.json").write_text(json.dumps(head))
    return folder


def posted(fake: FakeGitHub) -> list[str]:
    return [c["body"] for c in fake.comments if c["user"]["login"] == "github-actions[bot]"]


def test_every_artifact_field_stays_inert_in_the_comment_and_summary(
    reporter: Path, runner: Runner, fake_github: FakeGitHub
) -> None:
    hostile_artifact(reporter, "pytest-mlperf-a")
    hostile_artifact(reporter, "pytest-mlperf-b")
    assert main(["report"]) == 0
    (body,) = posted(fake_github)
    assert body.startswith(MARKER)
    assert live_constructs(body, own_links=[RUN_URL]) == []
    assert live_constructs(runner.summary_text(), own_links=[RUN_URL]) == []
    assert "s3cret" not in body and "s3cret" not in runner.summary_text()


def test_a_comment_over_githubs_limit_is_shortened_by_sections_never_cut_inside_one(
    reporter: Path, fake_github: FakeGitHub
) -> None:
    for i in range(300):
        hostile_artifact(reporter, f"pytest-mlperf-{i:03d}", id_length=150)
    assert main(["report"]) == 0
    (body,) = posted(fake_github)
    assert len(body) <= COMMENT_LIMIT
    assert live_constructs(body, own_links=[RUN_URL]) == []


def _label_report(label: str) -> Report:
    comparison = load("comparison-regression.json")
    for case in comparison["cases"]:
        case["id"] = label
    return Report(comparison=comparison, head=None, label=label, run_url=RUN_URL)


@pytest.mark.parametrize("limit", [*range(200, 400, 9), *range(3_000, 3_400, 37)])
def test_no_size_limit_leaves_a_code_span_open(limit: int) -> None:
    """Labels that are almost all code span, at many limits: a byte cut lands inside the first one's span."""
    reports = [_label_report(f"<img src=x>@octocat{'z' * 180}-{i}") for i in range(40)]
    body = render_comment(reports, limit=limit)
    assert len(body) <= limit
    assert live_constructs(body, own_links=[RUN_URL]) == []


def test_an_attackers_marker_comment_is_never_edited(reporter: Path, fake_github: FakeGitHub) -> None:
    planted = fake_github.add_comment(f"{MARKER}\nPosted by someone else, waiting for the bot to edit it",
                                      login="attacker")
    artifact(reporter, "pytest-mlperf")
    assert main(["report"]) == 0
    assert main(["report"]) == 0
    assert fake_github.comments[0] == planted  # untouched
    assert len(fake_github.comments) == 2 and len(posted(fake_github)) == 1
    ours = fake_github.comments[1]
    assert ours["user"] == {"login": "github-actions[bot]", "type": "Bot"}
    # The job's token cannot read /user: the reporter asked once and took the Actions bot.
    assert fake_github.calls.count("GET /user") >= 1


def test_a_personal_token_updates_the_comment_of_its_own_user(
    reporter: Path, runner: Runner, fake_github: FakeGitHub
) -> None:
    runner.inputs(github_token="pat-token")
    fake_github.add_comment(f"{MARKER}\nforged", login="github-actions[bot]", user_type="User")
    mine = fake_github.add_comment(f"{MARKER}\nold report", login="bench-owner")
    artifact(reporter, "pytest-mlperf")
    assert main(["report"]) == 0
    assert len(fake_github.comments) == 2
    assert fake_github.comments[0]["body"] == f"{MARKER}\nforged"
    assert mine["body"].startswith(f"{MARKER}\n## pytest-mlperf on `pytest-mlperf`")


def test_comment_author_names_an_apps_bot(reporter: Path, runner: Runner, fake_github: FakeGitHub) -> None:
    runner.inputs(comment_author="bench-app[bot]")
    fake_github.add_comment(f"{MARKER}\nby a person", login="bench-app")
    app = fake_github.add_comment(f"{MARKER}\nold", login="bench-app[bot]")
    artifact(reporter, "pytest-mlperf")
    assert main(["report"]) == 0
    assert app["body"] != f"{MARKER}\nold" and len(fake_github.comments) == 2
    assert "GET /user" not in fake_github.calls  # named: nothing to ask


def test_a_bad_comment_author_is_an_input_error(
    reporter: Path, runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    runner.inputs(comment_author="x\n::error::y")
    assert main(["report"]) == 2
    assert "input `comment-author`: 'x\\n::error::y' is not a GitHub login" in capfd.readouterr().out


@pytest.mark.parametrize("name", ["comparison.json", "results.json", "report-meta.json"])
def test_deeply_nested_json_in_an_artifact_is_an_error_not_a_crash(
    reporter: Path, fake_github: FakeGitHub, capfd: pytest.CaptureFixture[str], name: str
) -> None:
    folder = artifact(reporter, "pytest-mlperf")
    (folder / name).write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["report"]) == 1
    out = capfd.readouterr().out
    assert f"{folder / name}: JSON nested too deeply to read" in out
    assert fake_github.comments == []


def test_overflowing_and_impossible_numbers_render_without_crashing(reporter: Path, fake_github: FakeGitHub) -> None:
    folder = artifact(reporter, "pytest-mlperf")
    comparison: dict[str, Any] = load("comparison-regression.json")
    for case in comparison["cases"]:
        case.update(base=1e-308, head=1e308, change=1e308, ci=[-1e308, 1e308], n_base=10**30, unit="ns")
    comparison["counts"] = {"regressions": 1e308, "improvements": -5, "unchanged": "x", "missing": None}
    comparison["policy"] = {"alpha": 1e308, "floor": 1e308}
    (folder / "comparison.json").write_text(json.dumps(comparison))
    for name in ("results.json", "base.json"):
        doc = load("results-head.json")
        for run in doc["runs"]:
            run["mode"] = "performance"
            run["latency_samples_ns"] = [1e308, -1e308, 5.0, 7.0] * 10
        (folder / name).write_text(json.dumps(doc))
    assert main(["report"]) == 0
    (body,) = posted(fake_github)
    assert "🔴 Regression" in body


def test_the_reporter_imports_without_numpy_or_scipy() -> None:
    """Its virtualenv holds `requests` alone (action/install.py REPORT_REQUIREMENTS)."""
    code = ("import sys; sys.modules.update(numpy=None, scipy=None)\n"
            "import action.report, action.summary, action.comment, action.github_io")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_merging_sessions_whose_repeat_is_garbage_numbers_them_anyway(tmp_path: Path) -> None:
    """A session's code writes its results file: a repeat of "x" or -3 must not stop the A/B merge."""
    from action.abrun import merge_results

    paths = []
    for i, repeat in enumerate(["x", -3, None, 1.5]):
        doc = load("results-head.json")
        doc["runs"] = doc["runs"][:1]
        doc["runs"][0]["repeat"] = repeat
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(doc))
    assert [run["repeat"] for run in merge_results(paths)["runs"]] == [0, 1, 2, 3]
