"""A/B orchestration in a real git repository, with a fake pytest session as the runner."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from action.abrun import AbError, load_results, merge_results, run_ab
from action.github_io import Context, GitHubIO

from .conftest import FAKE_SESSION, bench, git

MakeRepo = Callable[[list[dict[str, str]]], tuple[Path, list[str]]]
COMMAND = (sys.executable, str(FAKE_SESSION))


def argv_for(results: Path, logs: Path) -> list[str]:
    return ["suites", "--mlperf-results", str(results), "--mlperf-log-dir", str(logs)]


def sessions(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def session_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "sessions.jsonl"
    monkeypatch.setenv("FAKE_SESSION_LOG", str(log))
    return log


def test_base_and_head_alternate_and_each_side_is_merged(
    make_repo: MakeRepo, tmp_path: Path, session_log: Path
) -> None:
    repo, (base_sha, head_sha) = make_repo([{"bench.json": bench()}, {"bench.json": bench(latency_ms=2.0)}])
    out = tmp_path / "out"
    io = GitHubIO(Context(workspace=repo))
    result = run_ab(io=io, workspace=repo, base_ref=base_sha, rounds=3, command=COMMAND, argv_for=argv_for,
                    out_dir=out, temp_dir=tmp_path)

    assert (result.base_sha, result.head_sha) == (base_sha, head_sha)
    calls = sessions(session_log)
    sides = ["head" if c["cwd"] == str(repo) else "base" for c in calls]
    assert sides == ["base", "head"] * 3
    base_dirs = {c["cwd"] for c in calls if c["cwd"] != str(repo)}
    assert len(base_dirs) == 1
    # The base worktree lives outside the workspace (the head's pytest must not collect it) and is gone after.
    base_dir = Path(str(base_dirs.pop()))
    assert not base_dir.is_relative_to(repo) and not base_dir.exists()
    assert git(repo, "worktree", "list").count("\n") == 0
    assert [c["argv"][2] for c in calls] == [str(out / "runs" / f"{s}-{r}.json") for r in range(3)
                                             for s in ("base", "head")]

    head = load_results(result.head_results)
    assert result.base_results is not None
    base = load_results(result.base_results)
    assert sorted({r["repeat"] for r in head["runs"]}) == [0, 1, 2]
    assert len(head["runs"]) == len(base["runs"]) == 6
    assert head["runs"][0]["metrics"]["latency_ns"]["mean"] == 2e6
    assert base["runs"][0]["metrics"]["latency_ns"]["mean"] == 1e6
    assert result.exit_codes("head") == [0, 0, 0]


def test_a_decided_comparison_stops_the_rounds(make_repo: MakeRepo, tmp_path: Path, session_log: Path) -> None:
    repo, (base_sha, _) = make_repo([{"bench.json": bench()}, {"bench.json": bench(latency_ms=2.0)}])
    asked: list[tuple[int, int, int]] = []

    def decided(rnd: int, base: list[Path], head: list[Path]) -> bool:
        asked.append((rnd, len(base), len(head)))
        return rnd >= 2

    result = run_ab(io=GitHubIO(Context(workspace=repo)), workspace=repo, base_ref=base_sha, rounds=10,
                    command=COMMAND, argv_for=argv_for, out_dir=tmp_path / "out", temp_dir=tmp_path, decided=decided)
    assert asked == [(1, 1, 1), (2, 2, 2)]
    assert result.rounds == 2
    assert len(sessions(session_log)) == 4
    assert len(load_results(result.head_results)["runs"]) == 4  # two cases, two rounds


def test_every_session_after_the_first_reuses_the_loads_calibrated_so_far(
    make_repo: MakeRepo, tmp_path: Path, session_log: Path
) -> None:
    repo, (base_sha, _) = make_repo([{"bench.json": bench()}, {"bench.json": bench(latency_ms=2.0)}])
    out = tmp_path / "out"
    run_ab(io=GitHubIO(Context(workspace=repo)), workspace=repo, base_ref=base_sha, rounds=2, command=COMMAND,
           argv_for=argv_for, out_dir=out, temp_dir=tmp_path, load_flag="--mlperf-reuse-load")
    flags = [[a for a in c["argv"] if a.startswith("--mlperf-reuse-load")] for c in sessions(session_log)]
    # The first session calibrates; the others run under the loads it (and later sessions, for new cases) chose.
    assert flags == [[]] + [[f"--mlperf-reuse-load={out / 'loads.json'}"]] * 3
    assert all(c["argv"][0].startswith("--mlperf-reuse-load") for c in sessions(session_log)[1:])
    loads = load_results(out / "loads.json")
    first = load_results(out / "runs" / "base-0.json")
    assert loads["runs"][: len(first["runs"])] == first["runs"]  # earliest first: the plugin takes the first match
    assert len(loads["runs"]) == 4 * len(first["runs"])


def test_a_case_only_the_head_has_is_pinned_from_its_first_head_run(
    make_repo: MakeRepo, tmp_path: Path, session_log: Path
) -> None:
    repo, (base_sha, _) = make_repo([{"bench.json": bench(write=False, exit=5)}, {"bench.json": bench()}])
    out = tmp_path / "out"
    run_ab(io=GitHubIO(Context(workspace=repo)), workspace=repo, base_ref=base_sha, rounds=2, command=COMMAND,
           argv_for=argv_for, out_dir=out, load_flag="--mlperf-reuse-load")
    flags = [any(a.startswith("--mlperf-reuse-load") for a in c["argv"]) for c in sessions(session_log)]
    assert flags == [False, False, True, True]
    assert load_results(out / "loads.json")["runs"][0] == load_results(out / "runs" / "head-0.json")["runs"][0]


def test_missing_base_ref_says_to_fetch_the_history(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo, _ = make_repo([{"bench.json": bench()}])
    with pytest.raises(AbError) as info:
        run_ab(io=GitHubIO(Context(workspace=repo)), workspace=repo, base_ref="f" * 40, rounds=1, command=COMMAND,
               argv_for=argv_for, out_dir=tmp_path / "out")
    assert f"base ref '{'f' * 40}' is not in the checkout" in str(info.value)
    assert "`fetch-depth: 0`" in str(info.value)


def test_a_base_without_results_is_recorded_not_fatal(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo, (base_sha, _) = make_repo([{"bench.json": bench(write=False, exit=5)}, {"bench.json": bench()}])
    result = run_ab(io=GitHubIO(Context(workspace=repo)), workspace=repo, base_ref=base_sha, rounds=2,
                    command=COMMAND, argv_for=argv_for, out_dir=tmp_path / "out")
    assert result.base_results is None
    assert result.exit_codes("base") == [5, 5]
    assert len(load_results(result.head_results)["runs"]) == 4


def test_a_head_that_cannot_run_stops_with_its_exit_code(make_repo: MakeRepo, tmp_path: Path) -> None:
    repo, (base_sha, _) = make_repo([{"bench.json": bench()}, {"bench.json": bench(write=False, exit=3)}])
    with pytest.raises(AbError, match=r"the head run of round 1 ended with pytest exit code 3 and no results file"):
        run_ab(io=GitHubIO(Context(workspace=repo)), workspace=repo, base_ref=base_sha, rounds=2,
               command=COMMAND, argv_for=argv_for, out_dir=tmp_path / "out")
    assert git(repo, "worktree", "list").count("\n") == 0


def test_merge_renumbers_repeats_across_sessions(tmp_path: Path) -> None:
    paths = []
    for i in range(2):
        doc = {"schema_version": 1, "status": "complete" if i == 0 else "partial",
               "runs": [{"id": "t::a", "repeat": 0}, {"id": "t::a", "repeat": 1}]}
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(doc))
    merged = merge_results(paths)
    assert [r["repeat"] for r in merged["runs"]] == [0, 1, 2, 3]
    assert merged["status"] == "partial"


def test_results_of_another_schema_version_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 3, "runs": []}))
    with pytest.raises(AbError, match=r"schema_version 3; this pytest-mlperf reads versions 1 and 2.*newer Action"):
        load_results(path)
