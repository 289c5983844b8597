"""``pytest-mlperf report``: the site opens from disk in a real headless Chromium, draws every chart with the points
it should, logs no console error, stays light, and leaves a screenshot behind."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.cli import main
from tests.browser import Chromium, find_chromium

DATA = Path(__file__).resolve().parent.parent / "data" / "results"
#: uPlot (51 kB) and its CSS, the page, its script and the figures of a few sessions: well under this.
MAX_SITE_BYTES = 100_000
CHART_POINTS = """
Object.fromEntries(Object.entries(window.mlperfCharts).map(
  ([id, u]) => [id, u.data.slice(1).map((s) => s.filter((v) => v !== null && v !== undefined).length)]))
"""


def _sessions(tmp_path: Path) -> list[Path]:
    """Three sessions of the recorded digits results; the last one also sweeps a Server case over 4 settings."""
    base: dict[str, Any] = json.loads((DATA / "base.json").read_text(encoding="utf-8"))
    paths = []
    for i in range(3):
        document = copy.deepcopy(base)
        document["datetime"] = f"2026-11-0{i + 1}T10:00:00+00:00"
        document["commit"]["sha"] = str(i) * 40
        if i == 2:
            template = next(r for r in base["runs"] if r["scenario"] == "SingleStream")
            for config, qps, p99_ms, valid in (("1", 100.0, 5.0, True), ("2", 200.0, 10.0, True),
                                               ("3", 150.0, 12.0, True), ("4", 300.0, 4.0, False)):
                run = copy.deepcopy(template)
                run.update(id=f"suites/test_digits.py::test_digits[Server-performance-threads={config}]",
                           scenario="Server", valid=valid, sweep={"threads": config}, latency_samples_ns=None)
                run["metrics"] = {"qps": qps, "latency_ns": {"p99": int(p99_ms * 1e6)}, "accuracy": None}
                run["thresholds"] = {"latency_ms": None, "latency_percentile": "p99", "accuracy": None, "min_qps": None}
                document["runs"].append(run)
        path = tmp_path / f"s{i}.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture
def chromium(tmp_path: Path) -> Any:
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("chromium is not installed here (Debian: apt-get install -y chromium)")
    browser = Chromium(executable, tmp_path / "profile")
    yield browser
    browser.close()


def test_dashboard_in_a_real_browser(tmp_path: Path, chromium: Chromium, capsys: pytest.CaptureFixture[str]) -> None:
    db, site = tmp_path / "history.sqlite", tmp_path / "site"
    assert main(["history", "add", *map(str, _sessions(tmp_path)), "--db", str(db)]) == 0
    base, head = DATA / "base.json", DATA / "head_slow.json"
    assert main(["report", "--db", str(db), "--out", str(site), "--base", str(base), "--head", str(head)]) == 0
    assert "3 session(s)" in capsys.readouterr().out

    files = sorted(p.name for p in site.iterdir())
    assert files == ["dashboard.js", "data.js", "index.html", "uPlot-LICENSE.txt", "uPlot.iife.min.js",
                     "uPlot.min.css"]
    weight = sum(p.stat().st_size for p in site.iterdir())
    assert weight < MAX_SITE_BYTES, weight
    assert "http" not in (site / "index.html").read_text(encoding="utf-8")  # nothing is fetched from a network

    chromium.open((site / "index.html").as_uri())
    drawn = chromium.evaluate(CHART_POINTS)
    screenshot = Path(os.environ.get("MLPERF_TEST_ARTIFACTS", tmp_path)) / "dashboard.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    chromium.screenshot(screenshot)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chromium.errors == []

    # Per case: one point per session on each trend (the swept configurations ran in one session), the
    # histogram's 30 bins, and the sweep's Pareto chart with the 3 configurations that have VALID figures, 2 of
    # them on the front (threads=1 and threads=2).
    swept = {f"case{i}-{m}": [1] for i in (2, 3, 4, 5) for m in ("throughput", "latency")}
    assert drawn == {
        # head_slow against base: the two performance cases' changes, each with both ends of its interval.
        "comparison-change": [2, 2, 2],
        "case0-latency": [3],
        "case0-distribution": [30],
        "case1-throughput": [3],
        **swept,
        "sweep0-pareto": [3, 2],
    }
    assert chromium.evaluate("document.body.dataset.rendered") == str(len(drawn))
    commits = chromium.evaluate(
        "[...document.querySelectorAll('#case0-latency > table td:nth-child(3)')].map(c => c.textContent)"
    )
    assert commits == ["0" * 10, "1" * 10, "2" * 10]
    front = chromium.evaluate(
        "[...document.querySelectorAll('#sweep0-pareto > table tr')].slice(1)"
        ".map(r => r.cells[0].textContent + r.cells[1].textContent)"
    )
    assert sorted(front) == ["*threads=1", "*threads=2", "threads=3", "threads=4"]
    assert chromium.evaluate("document.querySelector('#comparison h2').textContent") == "head against base: regression"
    verdicts = chromium.evaluate(
        "[...document.querySelectorAll('#comparison-change > table tr')].slice(1).map(r => r.cells[5].textContent)"
    )
    assert verdicts == ["regression", "regression", "no-change"]


def test_report_needs_base_and_head_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = str(DATA / "base.json")
    argv = ["report", "--results", base, "--out", str(tmp_path / "s"), "--base", base]
    assert main(argv) == 2
    assert "give --base and --head together" in capsys.readouterr().err


def test_report_refuses_a_file_as_the_site_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site"
    out.write_text("not a directory", encoding="utf-8")
    assert main(["report", "--results", str(DATA / "base.json"), "--out", str(out)]) == 2
    assert f"{out}: exists and is not a directory" in capsys.readouterr().err
