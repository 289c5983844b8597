"""The job summary and PR comment Markdown, rendered from hand-made comparison and results documents."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest

from action.summary import COMMENT_LIMIT, MARKER, Report, render_comment, render_summary, verdict_of

from .conftest import REPO_ROOT, load

SCHEMA = REPO_ROOT / "pytest_mlperf" / "schema" / "comparison.schema.json"


def regression_report(**changes: Any) -> Report:
    fields: dict[str, Any] = {
        "comparison": load("comparison-regression.json"), "head": load("results-head.json"),
        "base": load("results-base.json"), "label": "gpu-h100", "compare": "ab",
        "base_sha": "1" * 40, "head_sha": "2" * 40, "rounds": 3,
        "run_url": "https://github.com/acme/vision/actions/runs/4242",
    }
    return Report(**{**fields, **changes})


def table_rows(markdown: str) -> list[list[str]]:
    """The case table's body rows, split on unescaped pipes as GitHub does."""
    lines = markdown.split("| Case | Metric |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


@pytest.mark.parametrize("name", ["comparison-regression.json", "comparison-no-change.json", "comparison-refused.json"])
def test_hand_made_comparisons_follow_the_schema(name: str) -> None:
    import json

    jsonschema.validate(load(name), json.loads(SCHEMA.read_text()))


def test_the_comparison_schema_rejects_a_document_without_its_fields() -> None:
    import json

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cases": "none"}, json.loads(SCHEMA.read_text()))


def test_regression_summary_has_verdict_rows_chart_fingerprint_and_details() -> None:
    md = render_summary(regression_report())
    assert md.startswith("## pytest-mlperf on `gpu-h100`: 🔴 Regression · ❌ 2 runs missed their thresholds\n")
    assert "**2 regressions**, 0 improvements, 1 unchanged, 1 missing." in md
    assert "base `1111111111` · head `2222222222` · 3 rounds · alpha 0.01, floor 5 %" in md
    rows = table_rows(md)
    # One row per case and metric, regressions first.
    assert [r[-1] for r in rows] == ["🔴 regression", "🔴 regression", "🆕 new", "⚪ no change"]
    assert rows[0] == ["`test_digits[SingleStream-performance]`", "p90 latency", "1.076 ms", "1.209 ms",
                       "+12.4 % [+8.1, +16.9]", "🔴 regression"]
    assert rows[1][2:5] == ["2,400 samples/s", "2,143 samples/s", "-10.7 % [-12.1, -9.3]"]
    assert rows[3][2:5] == ["97.50 %", "97.50 %", "+0.00 pt"]
    assert "| CPU | `AMD EPYC 7B13` | `AMD EPYC 7B13` |" in md
    assert "<details><summary>Details: every case, every run</summary>" in md
    assert "p90 latency 12.4 ms &gt; bound 10.0 ms" in md
    assert md.rstrip().endswith("(https://github.com/acme/vision/actions/runs/4242)</sub>")


def test_chart_orients_every_bar_so_that_higher_is_worse() -> None:
    md = render_summary(regression_report())
    chart = md.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert chart.startswith("xychart-beta horizontal\n")
    # +12.4 % latency stays 112.4; a 10.7 % throughput drop is 12 % more time per sample: also above 100.
    assert "bar [112.4, 112.0]" in chart
    assert "line [105.0, 105.0]" in chart  # the 5 % floor
    # Accuracy (absolute points) and the new case (no base) have no bar.
    assert chart.count('", "') == 1


def test_latency_distribution_needs_samples_on_both_sides() -> None:
    with_base = render_summary(regression_report())
    assert "<details><summary>Latency distributions</summary>" in with_base
    assert "bars = base, line = head" in with_base
    assert "Latency distributions" not in render_summary(regression_report(base=None))


def test_no_change_and_refused_and_not_compared_headers() -> None:
    assert "✅ No significant change" in render_summary(regression_report(comparison=load("comparison-no-change.json")))
    refused = render_summary(regression_report(comparison=load("comparison-refused.json")))
    assert "⚠️ Comparison refused" in refused
    assert "> Nothing was compared: fingerprints differ: cpu 'AMD EPYC 7B13' != 'Intel Xeon 8480+'" in refused
    assert "| CPU ⚠️ | `AMD EPYC 7B13` | `Intel Xeon 8480+` |" in refused
    assert "| Case |" not in refused
    plain = render_summary(Report(comparison=None, head=load("results-head.json"), compare="none"))
    assert verdict_of(Report(comparison=None, head=None)) == "not-compared"
    assert "ℹ️ Not compared" in plain  # noqa: RUF001
    assert "| | Head |" in plain and "| CPU | `AMD EPYC 7B13` |" in plain


def test_strings_from_artifacts_cannot_inject_markdown_html_or_mentions() -> None:
    comparison = load("comparison-regression.json")
    comparison["cases"][0]["id"] = "t.py::test_x[a|b`c]"
    comparison["cases"][0]["message"] = "<img src=x onerror=alert(1)> [click](https://evil.example) @octocat | x"
    md = render_comment([regression_report(comparison=comparison, label="<b>lab</b>")])
    assert "<img" not in md
    # Inside a code span HTML is shown, not rendered.
    assert md.count("<b>") == 1 and "on `<b>lab</b>`:" in md
    assert "[click](" not in md
    assert "@octocat" not in md and "@\u200boctocat" in md
    # The table keeps six cells: the pipe in the id is escaped.
    assert all(len(row) == 6 for row in table_rows(md))
    assert table_rows(md)[0][0] == "`test_x[a\\|b'c]`"


def test_malformed_documents_render_without_crashing() -> None:
    bad: dict[str, Any] = {"verdict": "regression", "counts": [], "policy": "x", "fingerprint": {"base": 3},
                           "cases": ["x", {"id": 5, "unit": "ns", "base": "abc", "head": True, "ci": [1],
                                           "verdict": {"a": 1}, "metric": None}]}
    md = render_summary(Report(comparison=bad, head={"runs": [{"valid": ["x"], "reasons": "no"}, 7]},
                               base={"runs": "no"}))
    assert "🔴 Regression" in md


def test_comment_fits_githubs_limit_by_dropping_details_then_rows() -> None:
    comparison = load("comparison-regression.json")
    many = copy.deepcopy(comparison["cases"][2])
    comparison["cases"] += [{**many, "id": f"suites/test_big.py::test_big[case-{i:04d}]"} for i in range(3000)]
    md = render_comment([regression_report(comparison=comparison)])
    assert len(md) <= COMMENT_LIMIT
    assert md.startswith(MARKER + "\n")
    assert "<details>" not in md
    assert [r[-1] for r in table_rows(md)][:2] == ["🔴 regression", "🔴 regression"]
    assert "more unchanged rows are in the artifact's comparison.json" in md


def test_comment_for_several_runners_has_one_section_each_under_the_worst_verdict() -> None:
    md = render_comment([
        regression_report(label="cpu-epyc", comparison=load("comparison-no-change.json")),
        regression_report(label="gpu-h100"),
    ])
    assert md.splitlines()[1] == "## 🔴 Regression — pytest-mlperf on 2 runners"
    assert "### pytest-mlperf on `cpu-epyc`: ✅ No significant change" in md
    assert "### pytest-mlperf on `gpu-h100`: 🔴 Regression" in md
    assert md.count(MARKER) == 1


def test_notes_and_partial_results_are_called_out() -> None:
    head = load("results-head.json")
    head["status"] = "partial"
    md = render_summary(Report(comparison=None, head=head, notes=("The base commit produced no results.",)))
    assert "> The head results are partial" in md
    assert "> [!NOTE]\n> The base commit produced no results." in md


def test_profile_overrides_are_rounded_and_calibrated_ones_shown_as_a_range() -> None:
    head = copy.deepcopy(load("results-head.json"))
    head["runs"] = head["runs"][:2]
    head["runs"][0]["overrides"] = {"min_duration_ms": 500, "offline_expected_qps": 937115.6376011008}
    head["runs"][1]["overrides"] = {"min_duration_ms": 500, "offline_expected_qps": 90210.25}
    summary = render_summary(regression_report(head=head))
    expected = "min\\_duration\\_ms = 500, offline\\_expected\\_qps = 90210.2 to 937116\n"
    assert f"Settings changed by the profile: {expected}" in summary
