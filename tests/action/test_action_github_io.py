"""The runner files and workflow commands, written the way the GitHub runner reads them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from action.github_io import Context, GitHubIO, pull_request, workflow_run

from .conftest import load, read_outputs


def make_io(tmp_path: Path, **env: str) -> tuple[GitHubIO, io.StringIO]:
    stream = io.StringIO()
    base = {"GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "GITHUB_WORKSPACE": str(tmp_path)}
    return GitHubIO(Context.from_env({**base, **env}), stream=stream), stream


def test_outputs_survive_newlines_and_equals_signs(tmp_path: Path) -> None:
    gh, _ = make_io(tmp_path)
    gh.set_output("verdict", "regression")
    gh.set_output("note", "line one\nline=two")
    assert read_outputs(tmp_path / "out") == {"verdict": "regression", "note": "line one\nline=two"}


def test_without_github_output_the_outputs_are_logged(tmp_path: Path) -> None:
    stream = io.StringIO()
    GitHubIO(Context.from_env({}), stream=stream).set_output("verdict", "no-change")
    assert stream.getvalue() == "output verdict=no-change\n"


def test_summary_is_appended_not_overwritten(tmp_path: Path) -> None:
    gh, _ = make_io(tmp_path)
    gh.append_summary("## first")
    gh.append_summary("## second\n")
    assert (tmp_path / "summary.md").read_text() == "## first\n## second\n"


def test_annotations_escape_data_and_properties(tmp_path: Path) -> None:
    gh, stream = make_io(tmp_path)
    gh.error("p90 +12 %\nsecond line", title="Regression: test_x[a,b]")
    gh.notice("plain")
    assert stream.getvalue().splitlines() == [
        "::error title=Regression%3A test_x[a%2Cb]::p90 +12 %25%0Asecond line",
        "::notice::plain",
    ]


def test_group_folds_even_when_the_body_raises(tmp_path: Path) -> None:
    gh, stream = make_io(tmp_path)
    with pytest.raises(RuntimeError), gh.group("round 1"):
        raise RuntimeError("boom")
    assert stream.getvalue().splitlines() == ["::group::round 1", "::endgroup::"]


def test_events_give_the_pull_request_and_the_workflow_run(tmp_path: Path) -> None:
    same = pull_request(load("event-pull-request.json"))
    fork = pull_request(load("event-pull-request-fork.json"))
    assert same is not None and fork is not None
    assert (same.number, same.base_sha[:4], same.is_fork) == (17, "1111", False)
    assert fork.is_fork
    run = workflow_run(load("event-workflow-run.json"))
    assert run is not None and (run.id, run.head_sha[:4], run.pull_numbers) == (987654321, "2222", ())
    assert pull_request({"ref": "refs/heads/main"}) is None
    assert workflow_run(load("event-pull-request.json")) is None


def test_event_file_is_read_and_a_broken_one_is_named(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 3}}))
    gh, _ = make_io(tmp_path, GITHUB_EVENT_PATH=str(event))
    assert gh.event() == {"pull_request": {"number": 3}}
    event.write_text("{not json")
    with pytest.raises(ValueError, match=r"GITHUB_EVENT_PATH .*event\.json is not readable JSON"):
        gh.event()
    assert make_io(tmp_path)[0].event() == {}


def test_context_defaults_and_run_url() -> None:
    ctx = Context.from_env({"GITHUB_REPOSITORY": "acme/vision", "GITHUB_RUN_ID": "7",
                            "GITHUB_API_URL": "http://127.0.0.1:9/"})
    assert ctx.api_url == "http://127.0.0.1:9"
    assert ctx.run_url == "https://github.com/acme/vision/actions/runs/7"
    assert Context.from_env({}).run_url is None
