"""Renders a comparison and its results documents as GitHub Markdown: verdict, table, chart, fingerprint, details.

Every string that comes from a results or comparison document is escaped: the reporter renders artifacts made by
PR code, so a test id must not be able to inject links, HTML or @-mentions into the PR comment.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Only modules without numpy or scipy: the reporter's virtualenv holds `requests` alone (action/install.py).
from pytest_mlperf.gate.limits import MAX_LATENCY_NS
from pytest_mlperf.gate.markdown import md_code, md_text

MARKER = "<!-- pytest-mlperf:report -->"
# GitHub rejects comment bodies over 65,536 characters and step summaries over 1 MiB.
COMMENT_LIMIT = 65_000
SUMMARY_LIMIT = 1_000_000

Doc = Mapping[str, Any]

_HEADERS = {
    "regression": "🔴 Regression",
    "improvement": "🟢 Improvement",
    "no-change": "✅ No significant change",
    "refused": "⚠️ Comparison refused",
    "not-compared": "ℹ️ Not compared",  # noqa: RUF001 - the information emoji is intended
}
_CASE_VERDICTS = {
    "regression": "🔴 regression",
    "improvement": "🟢 improvement",
    "no-change": "⚪ no change",
    "missing-in-base": "🆕 new",
    "missing-in-head": "❔ missing",
}
_ORDER = {"regression": 0, "improvement": 1, "missing-in-head": 2, "missing-in-base": 3, "no-change": 4}
# Which verdict heads a comment that covers several runners.
_SEVERITY = ("regression", "refused", "improvement", "no-change", "not-compared")
_MAX_CHART_BARS = 25
_MAX_DISTRIBUTIONS = 3
# Lists from a document are shown up to these lengths: an artifact decides their size, not the renderer.
_MAX_NOTES = 5
_MAX_DIFFERENCES = 20
_MAX_REASONS = 10
# A bar beyond 100x base says all there is to say; larger values (1e308) would overflow the axis arithmetic.
_MAX_REL = 10_000.0
_BINS = 16


@dataclass(frozen=True)
class Report:
    """One comparison to render: one runner's results, its base, and how they were measured."""

    comparison: Doc | None
    head: Doc | None
    base: Doc | None = None
    label: str = ""
    compare: str = "none"
    base_sha: str = ""
    head_sha: str = ""
    rounds: int = 0
    run_url: str | None = None
    notes: tuple[str, ...] = ()


def verdict_of(report: Report) -> str:
    """The comparison's verdict, or ``not-compared`` when nothing was compared."""
    if report.comparison is None:
        return "not-compared"
    verdict = report.comparison.get("verdict")
    return verdict if isinstance(verdict, str) and verdict in _HEADERS else "not-compared"


def failed_runs(results: Doc | None) -> list[Doc]:
    """Runs of a results document that missed their own thresholds (``passed: false``)."""
    return [r for r in _runs(results) if r.get("passed") is False]


# --- escaping -------------------------------------------------------------------------------------------------


#: Free text and code spans for the comment: the escaper ``pytest-mlperf compare --format md`` uses too.
text = md_text
code = md_code


def _mermaid_label(value: str, limit: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9 _.,:=+\-\[\]/]", "", value)
    return s[:limit]


# --- accessors: documents may come from an untrusted artifact, so every field is checked -----------------------


def _runs(results: Doc | None) -> list[Doc]:
    runs = results.get("runs") if results else None
    return [r for r in runs if isinstance(r, Mapping)] if isinstance(runs, list) else []


def _cases(comparison: Doc | None) -> list[Doc]:
    cases = comparison.get("cases") if comparison else None
    return [c for c in cases if isinstance(c, Mapping)] if isinstance(cases, list) else []


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _map(value: object) -> Doc:
    return value if isinstance(value, Mapping) else {}


# --- formatting ------------------------------------------------------------------------------------------------


def _sig(value: float, digits: int = 4) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _latency(ns: float) -> str:
    if ns >= 1e6:
        return f"{_sig(ns / 1e6)} ms"
    if ns >= 1e3:
        return f"{_sig(ns / 1e3)} \u00b5s"
    return f"{_sig(ns)} ns"


def fmt_value(value: object, unit: str) -> str:
    v = _num(value)
    if v is None:
        return "—"
    if unit == "ns":
        return _latency(v)
    if unit == "samples/s":
        return f"{_sig(v)} samples/s"
    if unit == "ratio":
        return f"{v * 100:.2f} %"
    return _sig(v)


def _fmt_delta(v: float, unit: str) -> str:
    # Accuracy changes are absolute differences of a ratio (percentage points); the rest are relative changes.
    return f"{v * 100:+.2f} pt" if unit == "ratio" else f"{v * 100:+.1f} %"


def fmt_change(case: Doc) -> str:
    unit = _str(case.get("unit"))
    change = _num(case.get("change"))
    if change is None:
        return "—"
    out = _fmt_delta(change, unit)
    ci = case.get("ci")
    if isinstance(ci, list) and len(ci) == 2:
        lo, hi = _num(ci[0]), _num(ci[1])
        if lo is not None and hi is not None:
            suffix = " pt" if unit == "ratio" else " %"
            out += f" [{_fmt_delta(lo, unit).removesuffix(suffix)}, {_fmt_delta(hi, unit).removesuffix(suffix)}]"
    return out


def metric_name(metric: str) -> str:
    if metric.endswith("_latency"):
        return f"{metric.removesuffix('_latency')} latency"
    return {"qps": "throughput", "accuracy": "accuracy"}.get(metric, metric)


def _short_id(case_id: str) -> str:
    return case_id.rsplit("::", 1)[-1]


def _short_sha(sha: str) -> str:
    return sha[:10] if re.fullmatch(r"[0-9a-fA-F]{7,64}", sha) else sha[:40]


def _percent(value: float) -> str:
    return f"{value * 100:g} %"


# --- sections --------------------------------------------------------------------------------------------------


def _header(report: Report, level: int) -> list[str]:
    verdict = verdict_of(report)
    title = _HEADERS[verdict]
    failed = failed_runs(report.head)
    if failed:
        title += f" · ❌ {len(failed)} run{'s' if len(failed) != 1 else ''} missed their thresholds"
    label = f" on {code(report.label, cell=False)}" if report.label else ""
    lines = [f"{'#' * level} pytest-mlperf{label}: {title}", ""]

    comparison = report.comparison
    if comparison is not None and verdict != "refused":
        counts = _map(comparison.get("counts"))

        def count(key: str, word: str, plural: str) -> str:
            n = int(_num(counts.get(key)) or 0)
            phrase = f"{n} {word if n == 1 else plural}"
            # Only what moved deserves bold; "unchanged" and "missing" stay plain.
            return f"**{phrase}**" if n and key in ("regressions", "improvements") else phrase

        lines.append(
            ", ".join(
                [
                    count("regressions", "regression", "regressions"),
                    count("improvements", "improvement", "improvements"),
                    count("unchanged", "unchanged", "unchanged"),
                    count("missing", "missing", "missing"),
                ]
            )
            + "."
        )
    how = {
        "ab": "base and head measured on this runner, interleaved (A/B)",
        "baseline-file": "head measured on this runner, compared with a stored baseline",
        "none": "head measured on this runner, no comparison requested",
    }.get(report.compare, "")
    parts = [how] if how else []
    if report.base_sha:
        parts.append(f"base {code(_short_sha(report.base_sha))}")
    if report.head_sha:
        parts.append(f"head {code(_short_sha(report.head_sha))}")
    if report.compare == "ab" and report.rounds:
        parts.append(f"{report.rounds} round{'s' if report.rounds != 1 else ''}")
    policy = _map(comparison.get("policy")) if comparison else {}
    alpha, floor = _num(policy.get("alpha")), _num(policy.get("floor"))
    if alpha is not None and floor is not None:
        parts.append(f"alpha {alpha:g}, floor {_percent(floor)}")
    if parts:
        lines.append("<sub>" + " · ".join(parts) + "</sub>")
    lines.append("")
    if verdict == "refused":
        reason = comparison.get("refused_reason") if comparison else None
        lines += ["> [!WARNING]", f"> Nothing was compared: {text(reason or 'no reason given')}", ""]
    status = _str(report.head.get("status")) if report.head else ""
    if status and status != "complete":
        lines += ["> [!WARNING]", f"> The head results are {text(status)}: some cases did not run to the end.", ""]
    for note in report.notes[:_MAX_NOTES]:
        lines += ["> [!NOTE]", f"> {text(note, 1000)}", ""]
    return lines


def _sorted_cases(comparison: Doc | None) -> list[Doc]:
    cases = _cases(comparison)
    return sorted(cases, key=lambda c: _ORDER.get(_str(c.get("verdict")), 5))


def _table(report: Report, max_rows: int | None) -> list[str]:
    cases = _sorted_cases(report.comparison)
    if not cases:
        return []
    lines = [
        "| Case | Metric | Base | Head | Change [CI] | Verdict |",
        "|---|---|--:|--:|--:|---|",
    ]
    shown = cases if max_rows is None else cases[:max_rows]
    for case in shown:
        unit = _str(case.get("unit"))
        verdict = _str(case.get("verdict"))
        lines.append(
            "| "
            + " | ".join(
                [
                    code(_short_id(_str(case.get("id")))),
                    text(metric_name(_str(case.get("metric")))),
                    fmt_value(case.get("base"), unit),
                    fmt_value(case.get("head"), unit),
                    fmt_change(case),
                    _CASE_VERDICTS.get(verdict, text(verdict)),
                ]
            )
            + " |"
        )
    if len(shown) < len(cases):
        lines.append(f"\n_{len(cases) - len(shown)} more unchanged rows are in the artifact's comparison.json._")
    return [*lines, ""]


def _chart_label(case: Doc, functions: set[str]) -> str:
    """``SingleStream-performance p90 latency``: the parameters say enough unless several tests share the chart."""
    name = _short_id(_str(case.get("id")))
    params = name.partition("[")[2]
    short = params.rstrip("]") if params and len(functions) == 1 else name
    return _mermaid_label(f"{short} {metric_name(_str(case.get('metric')))}", 64)


def _chart(report: Report) -> list[str]:
    """Head relative to base per case, all oriented so that a higher bar is worse, with the floor as a line."""
    policy = _map(report.comparison.get("policy")) if report.comparison else {}
    # A floor beyond 1000 % is no floor a policy sets; clamped so that the axis arithmetic stays finite.
    floor = min(max(_num(policy.get("floor")) or 0.0, 0.0), 10.0)
    points: list[tuple[str, float, int]] = []
    functions = {_short_id(_str(c.get("id"))).split("[", 1)[0] for c in _cases(report.comparison)}
    for case in _sorted_cases(report.comparison):
        base, head = _num(case.get("base")), _num(case.get("head"))
        if _str(case.get("unit")) == "ratio" or not base or not head or base <= 0 or head <= 0:
            continue
        # Throughput is inverted into time per sample so that every bar reads "higher = slower".
        rel = 100 * (base / head if case.get("higher_is_better") is True else head / base)
        if not math.isfinite(rel):
            continue
        rel = min(rel, _MAX_REL)
        points.append((_chart_label(case, functions), rel, _ORDER.get(_str(case.get("verdict")), 5)))
    if not points:
        return []
    points.sort(key=lambda p: (p[2], -abs(p[1] - 100)))
    points = points[:_MAX_CHART_BARS]
    limit = 100 * (1 + floor)
    values = [p[1] for p in points]
    lo = math.floor(min(*values, 100.0) * 0.95 / 5) * 5
    hi = math.ceil(max(*values, limit) * 1.05 / 5) * 5
    labels = ", ".join(f'"{p[0]}"' for p in points)

    def series(vs: Iterable[float]) -> str:
        return "[" + ", ".join(f"{v:.1f}" for v in vs) + "]"

    return [
        "```mermaid",
        "xychart-beta horizontal",
        f'    title "Head vs base, % (100 = base, higher = worse; lines: base and {limit:g} floor)"',
        f"    x-axis [{labels}]",
        f'    y-axis "% of base" {max(lo, 0)} --> {hi}',
        f"    bar {series(values)}",
        f"    line {series([100.0] * len(points))}",
        f"    line {series([limit] * len(points))}",
        "```",
        "",
    ]


def _samples(results: Doc | None) -> dict[str, list[float]]:
    by_id: dict[str, list[float]] = {}
    for run in _runs(results):
        samples = run.get("latency_samples_ns")
        if run.get("mode") != "performance" or not isinstance(samples, list):
            continue
        values = [v for v in (_num(s) for s in samples) if v is not None and 0.0 <= v <= MAX_LATENCY_NS]
        by_id.setdefault(_str(run.get("id")), []).extend(values)
    return by_id


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, max(0, int(q * (len(sorted_values) - 1))))]


def _distributions(report: Report) -> list[str]:
    """Latency histograms, base as bars and head as a line, for the cases that matter most."""
    base, head = _samples(report.base), _samples(report.head)
    ids: list[str] = []
    for case in _sorted_cases(report.comparison):
        cid = _str(case.get("id"))
        if _str(case.get("metric")).endswith("_latency") and base.get(cid) and head.get(cid) and cid not in ids:
            ids.append(cid)
    out: list[str] = []
    for cid in ids[:_MAX_DISTRIBUTIONS]:
        both = sorted(base[cid] + head[cid])
        # Latency tails are long: linear bins over the body (1st to 95th percentile) and one last bin for the
        # tail keep the shape of the body visible, where one bin per 1/16 of the full range would not.
        lo, hi = _quantile(both, 0.01), _quantile(both, 0.95)
        width = (hi - lo) / (_BINS - 1) or 1.0

        def hist(values: list[float], lo: float = lo, width: float = width) -> list[float]:
            counts = [0] * _BINS
            for v in values:
                counts[min(_BINS - 1, max(0, int((v - lo) / width)))] += 1
            return [100 * c / len(values) for c in counts]

        hb, hh = hist(base[cid]), hist(head[cid])
        top = math.ceil(max(*hb, *hh) * 1.1) or 1
        labels = [_latency(lo + (i + 0.5) * width) for i in range(_BINS - 1)] + [f">= {_latency(hi)}"]
        centres = ", ".join(f'"{label}"' for label in labels)
        title = _mermaid_label(_short_id(cid), 50)
        out += [
            "```mermaid",
            "xychart-beta",
            f'    title "{title}: % of queries per latency bin (bars = base, line = head)"',
            f'    x-axis "latency (last bin: the tail)" [{centres}]',
            f'    y-axis "% of queries" 0 --> {top}',
            "    bar [" + ", ".join(f"{v:.2f}" for v in hb) + "]",
            "    line [" + ", ".join(f"{v:.2f}" for v in hh) + "]",
            "```",
            "",
        ]
    return out


def _fingerprint_of_results(results: Doc | None) -> Doc:
    if not results:
        return {}
    machine = _map(results.get("machine"))
    return {
        "cpu": machine.get("cpu"),
        "cores": machine.get("cores"),
        "gpus": machine.get("gpus"),
        "os": machine.get("os"),
        "versions": results.get("versions"),
    }


def _fp_rows(fp: Doc) -> dict[str, str]:
    rows: dict[str, str] = {}
    for key, name in (("cpu", "CPU"), ("cores", "cores"), ("os", "OS")):
        if fp.get(key) is not None:
            rows[name] = code(fp.get(key))
    gpus = fp.get("gpus")
    if isinstance(gpus, list):
        names = [
            f"{_str(g.get('name'))} (driver {_str(g.get('driver'))})" if g.get("driver") else _str(g.get("name"))
            for g in gpus
            if isinstance(g, Mapping)
        ]
        rows["GPUs"] = code(", ".join(names)) if names else "none"
    for key, value in sorted(_map(fp.get("versions")).items()):
        rows[str(key)] = code(value)
    return rows


def _fingerprint(report: Report) -> list[str]:
    comparison = report.comparison
    fp = _map(comparison.get("fingerprint")) if comparison else {}
    head = _fp_rows(_map(fp.get("head")) or _fingerprint_of_results(report.head))
    base = _fp_rows(_map(fp.get("base")) or _fingerprint_of_results(report.base))
    if not head and not base:
        return []
    lines = ["**Machine and software fingerprint**", ""]
    if base:
        lines += ["| | Base | Head |", "|---|---|---|"]
        for key in dict.fromkeys([*base, *head]):
            mark = " ⚠️" if base.get(key) != head.get(key) else ""
            lines.append(f"| {text(key)}{mark} | {base.get(key, '—')} | {head.get(key, '—')} |")
    else:
        lines += ["| | Head |", "|---|---|"]
        lines += [f"| {text(key)} | {value} |" for key, value in head.items()]
    differences = fp.get("differences")
    if isinstance(differences, list) and differences:
        shown = "; ".join(text(d) for d in differences[:_MAX_DIFFERENCES])
        more = f"; and {len(differences) - _MAX_DIFFERENCES} more" if len(differences) > _MAX_DIFFERENCES else ""
        lines += ["", f"Differences: {shown}{more}"]
    return [*lines, ""]


def _setting(value: object) -> str:
    number = _num(value)
    if number is None or isinstance(value, bool):
        return text(value)
    return text(int(number) if number == int(number) else f"{number:.6g}")


def _overrides(runs: Sequence[Doc]) -> dict[str, str]:
    """Each override the profile made, over all runs: one value, or the range of the values calibrated per run."""
    values: dict[str, list[object]] = {}
    for run in runs:
        for key, value in _map(run.get("overrides")).items():
            values.setdefault(text(key), []).append(value)
    out: dict[str, str] = {}
    for key, seen in values.items():
        numbers = [n for n in map(_num, seen) if n is not None]
        if len(numbers) == len(seen) and min(numbers) != max(numbers):
            out[key] = f"{_setting(min(numbers))} to {_setting(max(numbers))}"
        else:
            out[key] = _setting(seen[-1])
    return out


def _details(report: Report) -> list[str]:
    lines = ["<details><summary>Details: every case, every run</summary>", ""]
    cases = _sorted_cases(report.comparison)
    if cases:
        lines += ["**Cases**", ""]
        for case in cases:
            n = f" (n = {text(case.get('n_base'))} base, {text(case.get('n_head'))} head)"
            lines.append(f"- {code(case.get('id'), cell=False)} {text(metric_name(_str(case.get('metric'))))}: "
                         f"{text(case.get('message'))}{n}")
        lines.append("")
    runs = _runs(report.head)
    if runs:
        lines += [
            "**Head runs**",
            "",
            "| Run | Repeat | Scenario | Mode | Profile | Valid | Passed | Reasons |",
            "|---|--:|---|---|---|---|---|---|",
        ]
        for run in runs:
            reasons = run.get("reasons")
            why = "; ".join(text(r) for r in reasons[:_MAX_REASONS]) if isinstance(reasons, list) else ""
            valid = run.get("valid")
            cells = [
                code(run.get("id")), text(run.get("repeat")), text(run.get("scenario")), text(run.get("mode")),
                text(run.get("profile")), "yes" if valid is True else "**no**" if valid is False else "—",
                "✅" if run.get("passed") else "❌", why,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        overrides = _overrides(runs)
        if overrides:
            lines += ["Settings changed by the profile: " + ", ".join(f"{k} = {v}" for k, v in overrides.items()), ""]
    lines += ["</details>", ""]
    return lines


def render_section(
    report: Report, *, level: int = 2, details: bool = True, max_rows: int | None = None, brief: bool = False
) -> str:
    """One report: header verdict, case table, chart, fingerprint and (optionally) the collapsible details.

    ``brief`` keeps the header alone (the verdict, counts and notes): the shortest form that still says something.
    """
    lines = _header(report, level)
    if not brief:
        lines += _table(report, max_rows)
        lines += _chart(report)
        lines += _fingerprint(report)
    if details and not brief:
        dist = _distributions(report)
        if dist:
            lines += ["<details><summary>Latency distributions</summary>", "", *dist, "</details>", ""]
        lines += _details(report)
    if report.run_url:
        lines.append(f"<sub>[Logs, results JSON and LoadGen logs]({html.escape(report.run_url)})</sub>")
    return "\n".join(lines).rstrip() + "\n"


# Each rendering the next one tries: the details go first, then unchanged rows, then everything but the header.
_LEVELS: tuple[tuple[bool, int | None, bool], ...] = (
    (True, None, False), (False, None, False), (False, 100, False), (False, 30, False), (False, 10, False),
    (False, 0, False), (False, 0, True),
)
_TOO_BIG = "_The report is too large for GitHub here; the full report is in the artifact's `summary.md`._\n"


def _fit(render: Callable[[bool, int | None, bool], str], fallback: str, limit: int) -> str:
    """The fullest rendering under ``limit`` characters, shortened by whole sections and rows, never cut inside.

    Cutting the Markdown text could end it inside a code span or an HTML tag and turn escaped text live, so
    the last resort is ``fallback``: fixed text that holds nothing from the documents.
    """
    for details, rows, brief in _LEVELS:
        out = render(details, rows, brief)
        if len(out) <= limit:
            return out
    return fallback


def _fallback(reports: Sequence[Report], level: int) -> str:
    verdicts = [verdict_of(r) for r in reports]
    worst = min(verdicts, key=_SEVERITY.index) if verdicts else "not-compared"
    runners = f" on {len(reports)} runners" if len(reports) > 1 else ""
    return f"{'#' * level} pytest-mlperf{runners}: {_HEADERS[worst]}\n\n{_TOO_BIG}"


def render_summary(report: Report, limit: int = SUMMARY_LIMIT) -> str:
    """The job summary for one run of the Action."""
    return _fit(lambda d, r, b: render_section(report, level=2, details=d, max_rows=r, brief=b),
                _fallback([report], 2), limit)


def render_comment(reports: Sequence[Report], limit: int = COMMENT_LIMIT) -> str:
    """The PR comment: the hidden marker, then one section per runner (one per matrix entry)."""

    def render(details: bool, rows: int | None, brief: bool) -> str:
        if len(reports) == 1:
            body = render_section(reports[0], level=2, details=details, max_rows=rows, brief=brief)
        else:
            verdicts = [verdict_of(r) for r in reports]
            worst = min(verdicts, key=_SEVERITY.index)
            head = [f"## {_HEADERS[worst]} — pytest-mlperf on {len(reports)} runners", ""]
            body = "\n".join(head) + "\n".join(
                render_section(r, level=3, details=details, max_rows=rows, brief=brief) for r in reports
            )
        return f"{MARKER}\n{body}"

    return _fit(render, f"{MARKER}\n{_fallback(reports, 2)}", limit)
