"""The results dashboard: a static HTML site from the history or results files, working from file:// offline.

The site is four files and a licence: ``index.html``, ``data.js`` (the figures, as a script so that a page opened
from disk can load it: browsers refuse ``fetch`` on ``file://``), ``dashboard.js`` (draws the charts) and the
bundled uPlot (``uPlot.iife.min.js``, ``uPlot.min.css``, ``uPlot-LICENSE.txt``). Per case it charts throughput
and latency over the sessions (each point's commit in its table), the latency distribution of the latest run
that recorded per-query latencies, for a swept case of the latest session its Pareto front, and, when given,
head against base as ``pytest-mlperf compare`` decides it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_mlperf.errors import MLPerfError

UPLOT_VERSION = "1.6.32"
#: Files copied unchanged from the package's ``web`` folder.
ASSETS = ("uPlot.iife.min.js", "uPlot.min.css", "uPlot-LICENSE.txt", "dashboard.js")
#: Bins of each latency histogram.
HISTOGRAM_BINS = 30


class ReportError(MLPerfError, ValueError):
    """The site cannot be written; the message names the path and the fix."""


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _histogram(samples: Sequence[int], bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
    """Bin centres (ms) and counts over the samples' range."""
    low, high = min(samples), max(samples)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for value in samples:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return {"x": [(low + (i + 0.5) * width) / 1e6 for i in range(bins)], "y": [float(c) for c in counts]}


def _comparison(comparison: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The comparison's verdict and, per case and metric, base, head, relative change with its interval, verdict."""
    if comparison is None:
        return None
    keys = ("id", "metric", "unit", "base", "head", "change", "ci", "verdict", "message")
    return {
        "verdict": comparison.get("verdict"),
        "refused_reason": comparison.get("refused_reason"),
        "cases": [{key: case.get(key) for key in keys} for case in comparison.get("cases") or []],
    }


def site_data(
    documents: Sequence[Mapping[str, Any]], comparison: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the page draws, from results documents in any order (sorted here by their datetime)."""
    from pytest_mlperf.export import bencher_metric_format
    from pytest_mlperf.rules import LATENCY_PERCENTILE
    from pytest_mlperf.sweep import points

    ordered = sorted(
        (d for d in documents if _timestamp(d.get("datetime")) is not None),
        key=lambda d: _timestamp(d.get("datetime")) or 0.0,
    )
    cases: dict[str, dict[str, Any]] = {}
    for document in ordered:
        when = _timestamp(document.get("datetime"))
        commit: Mapping[str, Any] = document["commit"] if isinstance(document.get("commit"), Mapping) else {}
        sha = commit.get("sha") if isinstance(commit.get("sha"), str) else None
        for name, measures in bencher_metric_format(document).items():
            case = cases.setdefault(name, {"trend": {}, "distribution": None})
            for measure in ("throughput", "latency"):
                if measure in measures:
                    value = measures[measure]["value"]
                    shown = value / 1e6 if measure == "latency" else value
                    case["trend"].setdefault(measure, []).append(
                        {"t": when, "value": shown, "commit": sha, "datetime": document.get("datetime")}
                    )
        for run in document.get("runs") or []:
            samples = run.get("latency_samples_ns")
            if isinstance(samples, list) and samples and all(isinstance(s, int) for s in samples):
                name = str(run.get("id"))
                # Named as the trend names it: a case with both modes carries its mode.
                name = name if name in cases or f"{name} (performance)" not in cases else f"{name} (performance)"
                case = cases.setdefault(name, {"trend": {}, "distribution": None})
                case["distribution"] = {
                    "commit": sha,
                    "datetime": document.get("datetime"),
                    "percentile": LATENCY_PERCENTILE.get(str(run.get("scenario"))),
                    **_histogram(samples),
                }
    pareto = points(ordered[-1].get("runs") or []) if ordered else {}
    return {
        "generated_from": len(ordered),
        "cases": cases,
        "pareto": pareto,
        "comparison": _comparison(comparison),
        "uplot_version": UPLOT_VERSION,
    }


def _index(data: Mapping[str, Any]) -> str:
    title = f"pytest-mlperf results ({data['generated_from']} session(s))"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="uPlot.min.css">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
h2 {{ font-size: 1.1rem; margin-top: 2rem; word-break: break-all; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; }}
figcaption {{ font-size: .85rem; color: #555; }}
table {{ border-collapse: collapse; font-size: .8rem; margin-top: .5rem; }}
td, th {{ border: 1px solid #ddd; padding: .15rem .4rem; text-align: right; }}
footer {{ margin-top: 2rem; font-size: .75rem; color: #777; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<main id="cases"></main>
<footer>Charts by uPlot {html.escape(UPLOT_VERSION)} (MIT, uPlot-LICENSE.txt).
Generated by pytest-mlperf report.</footer>
<script src="uPlot.iife.min.js"></script>
<script src="data.js"></script>
<script src="dashboard.js"></script>
</body>
</html>
"""


def write_site(
    documents: Sequence[Mapping[str, Any]], out: Path, comparison: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write the site into *out* (created), with *comparison* (``compare``'s JSON) charted; returns the files."""
    from pytest_mlperf.fileio import atomic_write

    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: exists and is not a directory; give --out a directory for the site")
    data = site_data(documents, comparison)
    # "</" never appears raw, so no value can close the script element it is read into.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    files = {
        "index.html": _index(data).encode("utf-8"),
        "data.js": f"window.MLPERF_DATA = {payload};\n".encode(),
    }
    web = resources.files("pytest_mlperf").joinpath("web")
    for name in ASSETS:
        files[name] = web.joinpath(name).read_bytes()
    written = []
    try:
        for name, content in files.items():
            atomic_write(out / name, content)
            written.append(out / name)
    except OSError as exc:
        raise ReportError(f"{out}: cannot write the site ({exc.strerror})") from None
    return written
