"""Result + thresholds -> pass/fail with every unmet condition spelled out with its numbers (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_mlperf.config import Thresholds
from pytest_mlperf.rules import LATENCY_PERCENTILE

#: How metric keys read in a sentence.
_METRIC_LABELS = {"top1": "top-1", "top5": "top-5"}


@dataclass(frozen=True)
class Verdict:
    """Whether a run passed, and why not."""

    passed: bool
    reasons: tuple[str, ...]


def judge(
    *,
    scenario: str,
    mode: str,
    thresholds: Thresholds,
    valid: bool | None,
    validity_reasons: Sequence[str] = (),
    recommendation: str | None = None,
    qps: float | None = None,
    latency_ns: Mapping[str, float] | None = None,
    accuracy: Mapping[str, float] | None = None,
    latency_percentile: str | None = None,
    accuracy_metric: str = "top1",
    higher_is_better: bool = True,
    loadgen_errors: Sequence[str] = (),
) -> Verdict:
    """Collect every failed condition; a run passes only when the list is empty."""
    reasons: list[str] = []
    if mode == "performance":
        if valid is False:
            detail = "; ".join(validity_reasons) or "LoadGen reported INVALID"
            rec = f" (LoadGen recommends: {recommendation.strip()})" if recommendation else ""
            reasons.append(f"INVALID: {detail}{rec}")
        elif valid is None:
            reasons.append("INVALID: LoadGen wrote no result_validity; the run did not finish")
        pct = latency_percentile or LATENCY_PERCENTILE.get(scenario)
        if thresholds.latency_ms is not None and pct is not None:
            measured = (latency_ns or {}).get(pct)
            if measured is None:
                reasons.append(
                    f"{pct} latency missing from the detail log; cannot check bound {thresholds.latency_ms:g} ms"
                )
            elif measured / 1e6 > thresholds.latency_ms:
                reasons.append(f"{pct} latency {measured / 1e6:.3f} ms > bound {thresholds.latency_ms:g} ms")
        if thresholds.min_qps is not None and scenario != "MultiStream":
            if qps is None:
                reasons.append(f"throughput missing from the detail log; cannot check floor {thresholds.min_qps:g}/s")
            elif qps < thresholds.min_qps:
                reasons.append(f"throughput {qps:,.1f} samples/s < floor {thresholds.min_qps:,.1f} samples/s")
    else:
        if accuracy is None:
            reasons.append("accuracy was not measured: mlperf_log_accuracy.json was not scored")
        elif thresholds.accuracy is not None:
            value = accuracy.get(accuracy_metric)
            label = _METRIC_LABELS.get(accuracy_metric, accuracy_metric)
            count = int(accuracy.get("count", 0))
            on = f" (on {count} samples)" if count else ""
            if value is None:
                reasons.append(
                    f"accuracy has no {accuracy_metric!r} value (it has {', '.join(sorted(accuracy)) or 'nothing'}); "
                    "cannot check the target"
                )
            elif higher_is_better and value < thresholds.accuracy:
                reasons.append(
                    f"{label} accuracy {value * 100:.2f} % < target {thresholds.accuracy * 100:.2f} %{on}"
                )
            elif not higher_is_better and value > thresholds.accuracy:
                reasons.append(
                    f"{label} {value * 100:.2f} % > target {thresholds.accuracy * 100:.2f} % (lower is "
                    f"better){on}"
                )
    if valid is not False:  # an INVALID run's errors restate its validity reasons
        reasons.extend(f"LoadGen error: {error}" for error in loadgen_errors)
    return Verdict(passed=not reasons, reasons=tuple(reasons))
