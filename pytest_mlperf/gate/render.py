"""Renders a comparison document as a Markdown table (job summaries, PR comments) or as terminal text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_mlperf.gate.markdown import md_code, md_text
from pytest_mlperf.redact import redact

# A terminal or Markdown report is read whole: fields are shortened only far beyond any real id or message.
_LONG = 2000


def format_value(value: float | None, unit: str) -> str:
    """A metric value with a unit people read: ms/µs for ns, samples/s, percent for ratios."""
    if value is None:
        return "-"
    if unit == "ns":
        if value >= 1e6:
            return f"{value / 1e6:.3f} ms"
        return f"{value / 1e3:.1f} µs"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    return f"{value:,.1f}/s"


def _change_cell(case: Mapping[str, Any]) -> str:
    change, ci = case["change"], case["ci"]
    if case["verdict"].startswith("missing"):
        return str(case["verdict"]).replace("-", " ")
    if case["metric"] == "accuracy" and change is not None:
        below = "; below target" if "below target" in str(case["message"]) else ""
        return f"{change * 100:+.2f} points{below}"
    if ci is None and case.get("noise") == "none" and change is not None:
        # One run per side: the change is shown but was not judged; the message says how many runs to add.
        return f"{change * 100:+.1f} %, not decided (1 run per side)"
    if ci is None:
        # Undecided: the message carries the reason (insufficient samples, no per-query latencies).
        label_end = str(case["message"]).find(": ")
        message = str(case["message"])
        return message[label_end + 2 :] if label_end >= 0 else message
    return f"{change * 100:+.1f} % [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]"


def _p_cell(case: Mapping[str, Any]) -> str:
    p = case["p_value"]
    if p is None:
        return "-"
    return "<0.0001" if p < 0.0001 else f"{p:.4f}"


_MD_VERDICT = {
    "regression": ":red_circle: regression",
    "improvement": ":green_circle: improvement",
    "no-change": ":white_circle: no change",
    "missing-in-base": ":heavy_minus_sign: only in head",
    "missing-in-head": ":heavy_minus_sign: only in base",
}


def _policy_line(comparison: Mapping[str, Any]) -> str:
    policy = comparison["policy"]
    line = f"alpha {policy['alpha']:g}, floor {policy['floor'] * 100:g} %"
    if "accuracy_tolerance" in policy:
        line += f", accuracy tolerance {policy['accuracy_tolerance'] * 100:.1f} points"
    return line


def _counts_line(comparison: Mapping[str, Any]) -> str:
    c = comparison["counts"]
    return (
        f"{c['regressions']} regressed, {c['improvements']} improved, {c['unchanged']} unchanged, "
        f"{c['missing']} missing"
    )


def _n_cell(case: Mapping[str, Any]) -> str:
    """Samples per side, and for latency (where samples are queries) the runs they came from."""
    cell = f"{case['n_base']}/{case['n_head']}"
    if case["unit"] == "ns" and "runs_base" in case:
        cell += f" ({case['runs_base']}/{case['runs_head']} runs)"
    return cell


def _rows(comparison: Mapping[str, Any]) -> list[tuple[str, ...]]:
    return [
        (
            case["id"],
            case["metric"],
            format_value(case["base"], case["unit"]),
            format_value(case["head"], case["unit"]),
            _change_cell(case),
            _p_cell(case),
            _n_cell(case),
            case["verdict"],
        )
        for case in comparison["cases"]
    ]


def _notable(comparison: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(id, message) of every regression and improvement, regressions first: the lines people act on."""
    cases = [c for c in comparison["cases"] if c["verdict"] in ("regression", "improvement")]
    cases.sort(key=lambda c: c["verdict"] != "regression")
    return [(str(c["id"]), str(c["message"])) for c in cases]


_HEADER = ("case", "metric", "base", "head", "change [CI]", "p", "n base/head", "verdict")


def render_markdown(comparison: Mapping[str, Any]) -> str:
    """A Markdown report: verdict, policy, fingerprint warnings, one table row per case and metric.

    Every string from the results files (case ids, messages, fingerprint values) goes through the escaper of the
    PR comment (:mod:`pytest_mlperf.gate.markdown`): a results file can come from PR code.
    """
    lines = [f"### pytest-mlperf comparison: {md_text(comparison['verdict'])}", ""]
    if comparison["verdict"] == "refused":
        lines += [f"**Refused:** {md_text(comparison['refused_reason'], _LONG)}", ""]
        return "\n".join(lines)
    lines += [f"{_counts_line(comparison)} ({_policy_line(comparison)})", ""]
    differences = comparison["fingerprint"]["differences"]
    if differences:
        lines += ["> [!WARNING]", "> Compared with --force despite these differences:"]
        lines += [f"> - {md_text(d, _LONG)}" for d in differences]
        lines.append("")
    if not comparison["cases"]:
        return "\n".join([*lines, "No cases to compare."])
    lines += ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for row in _rows(comparison):
        # Metric names and numbers are the gate's own words; the change cell can quote a message.
        metric, base, head, _, p, n = (cell.replace("|", "\\|") for cell in row[1:-1])
        cells = [md_code(row[0], _LONG), metric, base, head, md_text(row[4], _LONG), p, n, _MD_VERDICT[row[-1]]]
        lines.append("| " + " | ".join(cells) + " |")
    notable = _notable(comparison)
    if notable:
        lines += ["", "<details><summary>Changes beyond the floor</summary>", ""]
        lines += [f"- {md_code(case_id, _LONG, cell=False)}: {md_text(message, _LONG)}" for case_id, message in notable]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render_text(comparison: Mapping[str, Any]) -> str:
    """A terminal report: the same content as the Markdown one, as aligned plain-text columns."""
    lines = [f"pytest-mlperf comparison: {comparison['verdict'].upper()}"]
    if comparison["verdict"] == "refused":
        return "\n".join([*lines, f"refused: {comparison['refused_reason']}"]) + "\n"
    lines.append(f"{_counts_line(comparison)} ({_policy_line(comparison)})")
    for diff in comparison["fingerprint"]["differences"]:
        lines.append(f"WARNING: compared with --force despite: {diff}")
    rows = [_HEADER, *_rows(comparison)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    lines += [f"{case_id}: {message}" for case_id, message in _notable(comparison)]
    # Plain text, but still one line per row and no credentials: ids and messages come from the files.
    return "\n".join(redact(_one_line(line)) for line in lines) + "\n"


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
